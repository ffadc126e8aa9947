"""Reporting for the adversarial-reprogramming threat (paper section 7, Figure 6): a leaderboard
table of final and best reprogramming accuracy (lower is better), a reprogramming-robustness
score next to DES, and Figure 6's accuracy-per-epoch curves, one per defense.

Everything works on the DataFrame of result lines (:func:`hrsbench.load_results`); lines without
``reprogram_accuracy_per_epoch`` are ignored, so the functions take a whole results file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hrsbench.report.des import BASE, ETA, des_score, variant_labels
from hrsbench.report.frame import MATCH, choose_base, missing, prepare, row_key
from hrsbench.report.tables import markdown_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The table's columns, in order; accuracies are fractions.
COLUMNS = ("dataset", "kernel", "defense", "variant", "clean_accuracy", "delta_t",
           "final_accuracy", "best_accuracy", "best_epoch", "epochs", "base_final_accuracy",
           "score")
#: Header and number format of each column in the markdown table.
HEADERS = {
    "dataset": ("target", "{}"), "kernel": ("kernel", "{:g}×{:g}"),
    "variant": ("defense", "{}"), "clean_accuracy": ("clean acc. %", "{:.2f}"),
    "delta_t": ("Δt (pts)", "{:.2f}"), "final_accuracy": ("final reprog. acc. %", "{:.2f}"),
    "best_accuracy": ("best reprog. acc. %", "{:.2f}"), "best_epoch": ("best epoch", "{:d}"),
    "epochs": ("epochs", "{:d}"), "score": ("reprog. score", "{:.2f}"),
}
PERCENT = {"clean_accuracy", "delta_t", "final_accuracy", "best_accuracy"}


def reprogramming_score(
    acc_base: float, acc_def: float, delta_t: float, eta: float = ETA
) -> float | None:
    """Reduction of final reprogramming accuracy relative to the base model per point of clean
    accuracy lost, ``(acc_base − acc_def) / (Δt + η)``: DES with the reprogramming accuracy as
    the attack success (the defense rate gain is exactly the accuracy reduction), the same η, and
    ``None`` where ``Δt + η ≤ 0``, as :func:`hrsbench.report.des.des_score`."""
    return des_score(acc_base - acc_def, delta_t, eta)


def reprogramming_lines(df: pd.DataFrame) -> pd.DataFrame:
    """The reprogramming lines of a results DataFrame, prepared as DES lines are."""
    if df.empty or "reprogram_accuracy_per_epoch" not in df.columns:
        return prepare(df.iloc[0:0])
    mask = df["reprogram_accuracy_per_epoch"].map(lambda v: isinstance(v, list) and len(v) > 0)
    lines = prepare(df[mask])
    lines["variant"] = variant_labels(lines) if len(lines) else pd.Series(dtype=object)
    return lines


def reprogramming_table(df: pd.DataFrame, base: str = BASE, eta: float = ETA) -> pd.DataFrame:
    """One row per reprogramming line: final and best accuracy, the clean-accuracy drop Δt and
    the score against the ``base`` line of the same threat (kernel and program training) and
    evaluation (seed, n_test, n_clean), chosen among several as DES chooses
    (:func:`~hrsbench.report.frame.choose_base`). Sorted by target, kernel and final accuracy,
    best defense first."""
    lines = reprogramming_lines(df)
    if lines.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    bases = lines[lines["defense"] == base]
    rows = []
    for _, line in lines.iterrows():
        curve = list(line["reprogram_accuracy_per_epoch"])
        final = float(curve[-1])
        best = float(np.max(curve))
        ref = _base_of(line, bases)
        delta_t = None if ref is None else float(ref["clean_accuracy"] - line["clean_accuracy"])
        base_final = None if ref is None else float(ref["reprogram_accuracy_per_epoch"][-1])
        score = None
        if ref is not None and line["defense"] != base:
            score = reprogramming_score(base_final, final, delta_t, eta)
        rows.append({
            "dataset": line["dataset"], "kernel": float(line["attack_strength"]),
            "defense": line["defense"], "variant": line["variant"],
            "clean_accuracy": float(line["clean_accuracy"]), "delta_t": delta_t,
            "final_accuracy": final, "best_accuracy": best,
            "best_epoch": int(np.argmax(curve)) + 1, "epochs": len(curve),
            "base_final_accuracy": base_final, "score": score,
        })
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.sort_values(["dataset", "kernel", "final_accuracy", "variant"],
                             kind="stable").reset_index(drop=True)


def _base_of(line: pd.Series, bases: pd.DataFrame) -> Mapping[str, Any] | None:
    match = row_key(line, MATCH)
    found = [b for b in bases.to_dict("records") if row_key(b, MATCH) == match]
    return choose_base(line, found) if found else None


def _cell(column: str, value: Any) -> str:
    if missing(value):
        return "—"
    fmt = HEADERS[column][1]
    if column == "kernel":
        return fmt.format(value, value)
    if column in PERCENT:
        value = 100.0 * value
    if fmt == "{:d}":
        value = int(value)
    return fmt.format(value)


def reprogramming_markdown(table: pd.DataFrame, title: str | None = None,
                           eta: float = ETA) -> str:
    """The table as GitHub markdown: percentages and Δt in points; lower accuracy is better,
    higher score is better. ``eta`` is the η the table's scores were computed with."""
    cols = [c for c in HEADERS if c != "dataset" or table["dataset"].nunique() > 1]
    out = [f"### {title}", ""] if title else []
    if table.empty:
        return "\n".join([*out, "No reprogramming lines.", ""])
    out += markdown_table([HEADERS[c][0] for c in cols],
                          [[_cell(c, row[c]) for c in cols] for _, row in table.iterrows()],
                          [c not in ("dataset", "variant") for c in cols])
    out.append("")
    out.append("Reprogramming accuracy: share of source test images the reprogrammed target "
               "classifies correctly (lower is better). Score: (base final − final) / (Δt + η), "
               f"η = {eta:g}; — where there is no base line to compare with, or where "
               "Δt + η ≤ 0 (a defense more accurate than the base, as DES).")
    return "\n".join(out) + "\n"


def reprogramming_figure(df: pd.DataFrame) -> Figure | None:
    """Figure 6: reprogramming test accuracy per epoch, one panel per target dataset and kernel,
    one curve per defense configuration (shaded: ± one deviation over stochastic draws)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    lines = reprogramming_lines(df)
    if lines.empty:
        return None
    panels = sorted({(d, float(k)) for d, k in zip(lines["dataset"], lines["attack_strength"],
                                                  strict=True)})
    fig = Figure(figsize=(4.5 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (dataset, kernel) in zip(axes, panels, strict=True):
        panel = lines[(lines["dataset"] == dataset) & (lines["attack_strength"] == kernel)]
        for _, line in panel.sort_values("variant").iterrows():
            acc = 100.0 * np.asarray(line["reprogram_accuracy_per_epoch"], dtype=float)
            epochs = np.arange(1, len(acc) + 1)
            (curve,) = ax.plot(epochs, acc, marker="o" if len(acc) < 15 else None, ms=3,
                               label=line["variant"])
            std = line.get("reprogram_accuracy_std_per_epoch")
            if isinstance(std, list) and len(std) == len(acc):
                s = 100.0 * np.asarray(std, dtype=float)
                ax.fill_between(epochs, acc - s, acc + s, color=curve.get_color(), alpha=0.2)
        classes = panel.get("reprogram_n_classes", pd.Series(dtype=object)).dropna()
        if len(classes):
            ax.axhline(100.0 / float(classes.iloc[0]), color="grey", ls="--", lw=1,
                       label="chance")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{dataset}: {kernel:g}×{kernel:g} kernel")
        ax.set_xlabel("epoch")
        ax.set_ylabel("reprogramming test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def write_reprogramming_figure(
    df: pd.DataFrame, out_dir: str | Path, formats: Iterable[str] = ("png",)
) -> list[Path]:
    """Figure 6 as ``reprogramming.<fmt>`` in ``out_dir``; returns the files written (none when
    ``df`` has no reprogramming lines)."""
    fig = reprogramming_figure(df)
    if fig is None:
        return []
    from hrsbench.report.plots import save_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out / f"reprogramming.{fmt}"
        save_figure(fig, path)
        written.append(path)
    return written


def write_reprogramming(
    df: pd.DataFrame, out_dir: str | Path, formats: Iterable[str] = ("png",), base: str = BASE,
    eta: float = ETA,
) -> list[Path]:
    """``reprogramming.md`` (the table, scored against ``base`` with ``eta``) and Figure 6 in
    ``out_dir``; returns the files written (none when ``df`` has no reprogramming lines)."""
    table = reprogramming_table(df, base=base, eta=eta)
    if table.empty:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "reprogramming.md"
    md.write_text(reprogramming_markdown(table, "Adversarial reprogramming", eta))
    return [md, *write_reprogramming_figure(df, out, formats)]
