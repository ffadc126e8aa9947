"""The paper's figures from result lines: attack success rate against ε per setting (Figure 4),
Δd against Δt with a fitted line per defense family (Figures 2 and 5), and input-gradient
deviation against defense rate (Figure A4, when lines carry ``grad_std``).

Figures are built on :class:`matplotlib.figure.Figure` directly rather than pyplot, so no GUI
backend or global state is involved (Agg renders them) and a long ``hrsbench run`` leaks no
figures. Each is written as PNG (to view, linked from the leaderboard) and SVG (to publish).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hrsbench.report.build import Report
from hrsbench.report.des import GROUP, variant_labels, varying_keys
from hrsbench.report.frame import MODEL, several_image_sets
from hrsbench.report.tables import value

FORMATS = ("png", "svg")
#: One colour map per defense family, variants of a family shaded along it by strength, so a
#: sweep reads as one hue; the base model is drawn in black.
FAMILY_MAPS = ("Blues", "Oranges", "Greens", "Reds", "Purples", "YlOrBr", "PuRd", "Greys")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def write_plots(report: Report, out_dir: str | Path, formats: Iterable[str] = FORMATS
                ) -> list[Path]:
    """Every figure the report's lines allow, written under ``out_dir``; returns the files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    formats = tuple(formats)
    styles = Styles(report.scored, report.base)
    paths: list[Path] = []
    for name, fig in [*asr_figures(report, styles), *des_figures(report, styles),
                      *gradient_figures(report, styles)]:
        for fmt in formats:
            path = out_dir / f"{name}.{fmt}"
            save_figure(fig, path)
            paths.append(path)
    return paths


def save_figure(fig: Figure, path: Path) -> None:
    """Without a creation date and with fixed SVG ids, so redrawing unchanged results writes
    the same bytes: a no-op rerun leaves published figures untouched in git."""
    meta = {"Date": None} if path.suffix in (".svg", ".pdf") else {}
    with matplotlib.rc_context({"svg.hashsalt": "hrsbench"}):
        fig.savefig(path, dpi=150, metadata=meta)


class Styles:
    """A colour and marker per defense configuration, fixed across all figures of a report."""

    def __init__(self, scored: pd.DataFrame, base: str) -> None:
        self.base = base
        self.labels = variant_labels(scored) if not scored.empty else pd.Series(dtype=object)
        families = sorted(set(scored["defense"]) - {base}) if not scored.empty else []
        self.family_index = {f: i for i, f in enumerate(families)}
        self.variant: dict[tuple[str, str], tuple[Any, str]] = {}
        for f in families:
            fam = scored[scored["defense"] == f]
            keys = (fam.assign(_s=pd.to_numeric(fam["strength"], errors="coerce"))
                    .sort_values(["_s", "params_key"])["params_key"].drop_duplicates())
            cmap = matplotlib.colormaps[FAMILY_MAPS[self.family_index[f] % len(FAMILY_MAPS)]]
            shades = np.linspace(0.45, 0.95, len(keys)) if len(keys) > 1 else [0.75]
            for j, (k, shade) in enumerate(zip(keys, shades, strict=True)):
                self.variant[(f, k)] = (cmap(shade), MARKERS[j % len(MARKERS)])

    def order(self, defense: str, params_key: str) -> int:
        """Legend position: the base, then families alphabetically, each by strength."""
        if defense == self.base:
            return -1
        keys = list(self.variant)
        return keys.index((defense, params_key)) if (defense, params_key) in keys else len(keys)

    def of(self, defense: str, params_key: str) -> tuple[Any, str]:
        if defense == self.base:
            return "black", "x"
        return self.variant.get((defense, params_key), ("grey", "o"))

    def family_colour(self, defense: str) -> Any:
        if defense == self.base:
            return "black"
        i = self.family_index.get(defense, 0)
        return matplotlib.colormaps[FAMILY_MAPS[i % len(FAMILY_MAPS)]](0.75)


def slug(*parts: Any) -> str:
    """A file name from parts (dataset, attack, ε, setting), safe on every file system."""
    text = "-".join(str(p) for p in parts if p not in (None, ""))
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)


def _attack_tag(scored: pd.DataFrame, attack: str, params_key: str) -> str:
    """Distinguishes an attack's parameter variants in titles and names, only when the lines
    hold more than one of them."""
    keys = scored.loc[scored["attack"] == attack, "attack_params_key"].unique()
    if len(keys) < 2:
        return ""
    params = json.loads(params_key)
    shown = varying_keys([json.loads(k) for k in keys])
    return " ".join(f"{k}={value(params.get(k))}" for k in shown)


#: Longest parameter tag spelt out in a file name; a longer one is replaced by a short hash.
MAX_TAG = 32


def _tag_slug(tag: str, params_key: str) -> str:
    """A file-name part for an attack's parameter variant: the tag itself (``max_iter=10``)
    when short, else a short stable hash of the parameters."""
    if not tag:
        return ""
    if len(tag) <= MAX_TAG:
        return tag.replace(" ", "_")
    return hashlib.sha256(params_key.encode()).hexdigest()[:8]


def _target(targeted: Any) -> str:
    return "targeted" if bool(targeted) else "untargeted"


def _images(scored: pd.DataFrame, dataset: Any, attack: Any, params_key: Any, n_test: Any
            ) -> str:
    """The attacked-image count in titles and names, only when the lines attack this attack
    variant on several image sets (merged runs), whose figures would otherwise collide."""
    here = scored[(scored["dataset"] == dataset) & (scored["attack"] == attack)
                  & (scored["attack_params_key"] == params_key)]
    return f"{n_test} images" if several_image_sets(here) else ""


def _asr_bars(variant: pd.DataFrame) -> np.ndarray | None:
    """The 95 % interval of each point's ASR, as error bars below and above, when the lines
    carry one (the spread of repeated predictions is not a sampling error, so it is not shown)."""
    if "defense_rate_lo" not in variant.columns:
        return None
    asr = 1.0 - variant["defense_rate"].astype(float).to_numpy()
    lo = 1.0 - pd.to_numeric(variant["defense_rate_hi"], errors="coerce").to_numpy(dtype=float)
    hi = 1.0 - pd.to_numeric(variant["defense_rate_lo"], errors="coerce").to_numpy(dtype=float)
    if np.isnan(lo).all():
        return None
    return 100 * np.nan_to_num(np.stack([asr - lo, hi - asr]), nan=0.0).clip(min=0.0)


def asr_figures(report: Report, styles: Styles) -> list[tuple[str, Figure]]:
    """Figure 4: per dataset and attack, one panel per setting, attack success rate against ε
    with one line per defense configuration (dashed: a deterministic defense's white-box line
    standing for that setting)."""
    scored = report.scored
    attacked = scored[scored["attack"] != "none"]
    settings = list(dict.fromkeys(attacked["setting"]))
    figures = []
    for (dataset, attack, params_key, targeted, n_test), lines in attacked.groupby(
        ["dataset", "attack", "attack_params_key", "targeted", "n_test"], sort=True, dropna=False
    ):
        images = _images(scored, dataset, attack, params_key, n_test)
        panels = [s for s in settings if s in set(lines["setting"])]
        fig = Figure(figsize=(4.2 * len(panels) + 2.4, 3.6), layout="constrained")
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        tag = _attack_tag(scored, attack, params_key)
        legend: dict[tuple[str, str], tuple[Any, str]] = {}
        for ax, setting in zip(axes, panels, strict=True):
            here = lines[lines["setting"] == setting]
            for (defense, pkey), variant in here.groupby(["defense", "params_key"], sort=True):
                variant = variant.sort_values("attack_strength")
                colour, marker = styles.of(defense, pkey)
                handle = ax.errorbar(
                    variant["attack_strength"], 100 * variant["attack_success_rate"].astype(float),
                    yerr=_asr_bars(variant), color=colour, marker=marker, capsize=2,
                    linestyle="--" if variant["via_whitebox"].all() else "-",
                )
                legend.setdefault((defense, pkey), (handle, styles.labels[variant.index[0]]))
            ax.set_title(setting)
            ax.set_xlabel("ε")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("attack success rate (%)")
        axes[0].set_ylim(-2, 102)
        entries = [legend[k] for k in sorted(legend, key=lambda k: styles.order(*k))]
        fig.legend([h for h, _ in entries], [lab for _, lab in entries],
                   loc="outside right upper", fontsize="small")
        fig.suptitle(f"{dataset} · {attack}{f' ({tag})' if tag else ''} · {_target(targeted)}"
                     + (f" · {images}" if images else ""))
        figures.append((slug("asr", dataset, attack, _tag_slug(tag, params_key),
                             _target(targeted), images.replace(" ", "")), fig))
    return figures


def des_figures(report: Report, styles: Styles) -> list[tuple[str, Figure]]:
    """Figures 2 and 5: per comparison group, each defense configuration's (Δt, Δd) point, the
    family's least-squares line through its in-range points, and its mean DES in the legend;
    points outside the behaviour range are hollow."""
    scored = report.scored
    points = scored[(scored["attack"] != "none") & (scored["defense"] != report.base)
                    & scored["delta_t"].notna() & scored["delta_d"].notna()]
    summary = report.summary
    figures = []
    for key, group in points.groupby(list(GROUP), sort=True, dropna=False):
        k = dict(zip(GROUP, key, strict=True))
        dataset, attack, params_key = k["dataset"], k["attack"], k["attack_params_key"]
        strength, setting, targeted = k["attack_strength"], k["setting"], k["targeted"]
        images = _images(scored, dataset, attack, params_key, k["n_test"])
        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        ax = fig.subplots()
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        ax.scatter([0], [0], color="black", marker="x", label=f"{report.base} (reference)")
        fam_rows = summary
        for col, val in k.items():
            if col in fam_rows.columns:
                fam_rows = fam_rows[fam_rows[col] == val]
        means = dict(zip(fam_rows["defense"], fam_rows["mean_des"], strict=True))
        fits = {r["defense"]: r for _, r in fam_rows.iterrows()}
        for defense, fam in group.groupby("defense", sort=True):
            inside = np.array([report.behaviour.contains(t, r) for t, r in
                               zip(fam["delta_t"], fam["defense_rate"], strict=True)])
            colours = [styles.of(defense, k)[0] for k in fam["params_key"]]
            x = 100 * fam["delta_t"].astype(float).to_numpy()
            y = 100 * fam["delta_d"].astype(float).to_numpy()
            mean = means.get(defense)
            label = defense + (f" (mean DES {mean:.2f})" if mean is not None and mean == mean
                               else "")
            ax.scatter(x[inside], y[inside], c=[c for c, i in zip(colours, inside, strict=True)
                                                if i], edgecolors="black", linewidths=0.4,
                       label=label)
            if (~inside).any():
                ax.scatter(x[~inside], y[~inside], facecolors="none",
                           edgecolors=[c for c, i in zip(colours, inside, strict=True) if not i])
            row = fits.get(defense)
            if row is not None and row["slope"] == row["slope"] and row["slope"] is not None:
                xs = np.array([row["delta_t_min"], row["delta_t_max"]], dtype=float)
                ax.plot(100 * xs, 100 * (row["slope"] * xs + row["intercept"]),
                        color=styles.family_colour(defense))
        lo, hi = report.behaviour.delta_t
        if (lo, hi) != (None, None):  # after the points, so an open side reaches the axis edge
            xlim = ax.get_xlim()
            ax.axvspan(xlim[0] if lo is None else 100 * lo, xlim[1] if hi is None else 100 * hi,
                       color="gold", alpha=0.15, label="behaviour range (Δt)")
            ax.set_xlim(xlim)
        tag = _attack_tag(scored, attack, params_key)
        ax.set_xlabel("test accuracy drop Δt (pp)")
        ax.set_ylabel("defense rate gain Δd (pp)")
        ax.set_title(f"{dataset} · {attack}{f' ({tag})' if tag else ''} ε={strength:g} · "
                     f"{setting} · {_target(targeted)}" + (f" · {images}" if images else ""),
                     fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        figures.append((slug("des", dataset, attack, _tag_slug(tag, params_key),
                             f"eps{strength:g}", setting, _target(targeted),
                             images.replace(" ", "")), fig))
    return figures


#: Gradient-deviation fields the runner may write (metrics.gradient_deviation): the raw one the
#: paper names, and that of the gradient's sign, which compares across models.
GRADIENT_FIELDS = {"grad_std": "input-gradient standard deviation",
                   "grad_sign_std": "input-gradient sign standard deviation"}


def gradient_deviation(scored: pd.DataFrame, field: str = "grad_std") -> pd.Series:
    """Each line's gradient deviation ``field``, or where it has none, that of its model's
    clean-only line: the deviation may be measured once per model rather than per attack."""
    own = pd.to_numeric(scored[field], errors="coerce")
    model = scored[MODEL].astype(str)
    clean = scored["attack"] == "none"
    per_model = own[clean].groupby(model[clean]).first()
    return own.fillna(model.map(per_model))


def gradient_figures(report: Report, styles: Styles) -> list[tuple[str, Figure]]:
    """Figure A4: input-gradient deviation against defense rate per comparison group, one panel
    per deviation field the lines carry, one colour per family. Groups with fewer than two
    defense configurations are skipped: one point shows no relation."""
    scored = report.scored
    fields = [f for f in GRADIENT_FIELDS if f in scored.columns]
    if not fields:
        return []
    lines = scored.assign(**{f"_{f}": gradient_deviation(scored, f) for f in fields})
    lines = lines[(lines["attack"] != "none") & lines["defense_rate"].notna()
                  & lines[[f"_{f}" for f in fields]].notna().any(axis=1)]
    figures = []
    for key, group in lines.groupby(list(GROUP), sort=True, dropna=False):
        if len(group.drop_duplicates(["defense", "params_key"])) < 2:
            continue
        k = dict(zip(GROUP, key, strict=True))
        dataset, attack, params_key = k["dataset"], k["attack"], k["attack_params_key"]
        strength, setting, targeted = k["attack_strength"], k["setting"], k["targeted"]
        images = _images(scored, dataset, attack, params_key, k["n_test"])
        shown = [f for f in fields if group[f"_{f}"].notna().any()]
        fig = Figure(figsize=(5.2 * len(shown) + 1.2, 4.4), layout="constrained")
        axes = fig.subplots(1, len(shown), sharey=True, squeeze=False)[0]
        for ax, field in zip(axes, shown, strict=True):
            for defense, fam in group[group[f"_{field}"].notna()].groupby("defense", sort=True):
                colours = [styles.of(defense, k)[0] for k in fam["params_key"]]
                ax.scatter(fam[f"_{field}"].astype(float),
                           100 * fam["defense_rate"].astype(float), c=colours,
                           marker="x" if defense == report.base else "o", label=defense)
            values = group[f"_{field}"].dropna().astype(float)
            if (values > 0).all() and values.max() / values.min() > 100:
                ax.set_xscale("log")
            ax.set_xlabel(GRADIENT_FIELDS[field])
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("defense rate (%)")
        axes[-1].legend(fontsize="small")
        tag = _attack_tag(scored, attack, params_key)
        fig.suptitle(f"{dataset} · {attack}{f' ({tag})' if tag else ''} ε={strength:g} · "
                     f"{setting} · {_target(targeted)}" + (f" · {images}" if images else ""),
                     fontsize="medium")
        figures.append((slug("gradstd", dataset, attack, _tag_slug(tag, params_key),
                             f"eps{strength:g}", setting, _target(targeted),
                             images.replace(" ", "")), fig))
    return figures
