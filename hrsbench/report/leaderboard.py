"""Leaderboards: result files from any number of runs and machines merged into one markdown
report, defenses ranked by mean DES for every dataset, attack, strength and setting.

Merging is deterministic: a cell (same ``cell_key``) found more than once keeps its most recently
finished line, ties broken by a hash of the line's content, so the same files give the same
report in any order; every resolved duplicate is listed in the report.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from hrsbench.cache import atomic_write
from hrsbench.des import (
    BASE,
    ETA,
    GROUP,
    BehaviourRange,
    attach_des,
    family_summary,
    varying_keys,
)
from hrsbench.errors import HrsbenchError
from hrsbench.reprogramming import (
    reprogramming_markdown,
    reprogramming_table,
    write_reprogramming,
)
from hrsbench.results import read_lines

#: Fields another part of the benchmark may add to flag a suspicious result (e.g. gradient
#: masking); shown in a column when present, in this order of preference.
FLAG_FIELDS = ("sanity", "flags", "sanity_flags")


@dataclass(frozen=True)
class Origin:
    """Where a result line came from, for the duplicate report."""

    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Duplicate:
    """One cell found on several lines, and which line was kept and why."""

    cell_key: str
    kept: Origin
    dropped: list[Origin]
    reason: str
    record: dict[str, Any]


@dataclass
class Merged:
    """The deduplicated result lines of several files, with what merging them involved."""

    records: list[dict[str, Any]]
    sources: list[tuple[Path, int]] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)

    @property
    def lines(self) -> pd.DataFrame:
        return pd.DataFrame(self.records)


def content_hash(record: dict[str, Any]) -> str:
    """A hash of a line's content, independent of key order: the tie-breaker between two lines
    for one cell finished in the same second."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _line_numbers(path: Path) -> list[int]:
    """The file line of each record :func:`read_lines` returns (it skips blank lines and a torn
    last line), so duplicates can be reported by file and line."""
    lines = path.read_bytes().split(b"\n")
    return [i for i, line in enumerate(lines[:-1], start=1) if line.strip()]


def _finished(record: dict[str, Any]) -> datetime:
    value = record.get("finished_at")
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def merge_results(*paths: str | Path) -> Merged:
    """Read and merge result files; a missing file, a malformed line or a line lacking a
    required field is an :class:`HrsbenchError` naming the file (and line)."""
    if not paths:
        raise HrsbenchError("no result files given")
    found: dict[str, list[tuple[dict[str, Any], Origin]]] = {}
    sources = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise HrsbenchError(f"{path}: no such results file")
        records = read_lines(path)
        numbers = _line_numbers(path)
        sources.append((path, len(records)))
        for record, number in zip(records, numbers, strict=False):
            key = record.get("cell_key") or content_hash(record)
            found.setdefault(key, []).append((record, Origin(path, number)))
    kept, duplicates = [], []
    for key, versions in found.items():
        ranked = sorted(versions, key=lambda v: (_finished(v[0]), content_hash(v[0])),
                        reverse=True)
        kept.append(ranked[0][0])
        if len(ranked) > 1:
            winner = ranked[0][0]
            hashes = {content_hash(r) for r, _ in ranked}
            if len(hashes) == 1:
                reason = "identical lines"
            elif _finished(ranked[1][0]) < _finished(winner):
                reason = "most recent finished_at"
            else:
                reason = "same finished_at; highest content hash"
            duplicates.append(Duplicate(key, ranked[0][1], [o for _, o in ranked[1:]], reason,
                                        winner))
    return Merged(kept, sources, duplicates)


# --- formatting -----------------------------------------------------------------------------


def _isnum(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and x != x)


def _pct(x: Any, std: Any = None) -> str:
    if not _isnum(x):
        return "—"
    return f"{100 * x:.2f}%" + (f" ± {100 * std:.2f}" if _isnum(std) else "")


def _pp(x: Any) -> str:
    """A difference of two rates in percentage points, signed."""
    return f"{100 * x:+.2f}" if _isnum(x) else "—"


def _num(x: Any, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if _isnum(x) else "—"


def _params(params: dict[str, Any] | None, keys: list[str] | None = None) -> str:
    params = params or {}
    keys = sorted(params) if keys is None else keys
    return " ".join(f"{k}={params.get(k)}" for k in keys) or "—"


def _flags(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple | set):
        return ", ".join(str(v) for v in value)
    return "" if not _isnum(value) else str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _first_seen(values: pd.Series) -> list[Any]:
    return list(dict.fromkeys(values))


# --- report -----------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything a leaderboard shows, computed once so the markdown and the plots agree."""

    merged: Merged
    scored: pd.DataFrame
    summary: pd.DataFrame
    base: str = BASE
    eta: float = ETA
    behaviour: BehaviourRange = field(default_factory=BehaviourRange)

    @property
    def flag_field(self) -> str | None:
        return next((f for f in FLAG_FIELDS if f in self.scored.columns
                     and self.scored[f].map(lambda v: _flags(v) != "").any()), None)


def with_sanity(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with the gradient-masking verdict of their model (:mod:`hrsbench.sanity`),
    computed on the merged lines, since its checks compare attacks that different runs may
    hold; records already carrying a flag field are left as they are."""
    if any(f in r for r in records for f in FLAG_FIELDS):
        return records
    try:
        from hrsbench.sanity import annotate
    except ImportError:  # a build without the sanity checks: no flags column
        return records
    return annotate(records)


def build_report(
    merged: Merged, base: str = BASE, eta: float = ETA, behaviour: BehaviourRange | None = None
) -> Report:
    """DES of every line and the family summaries, computed once for the markdown and plots."""
    behaviour = behaviour or BehaviourRange()
    # Threat lines (reprogramming) have no ε: they get their own section, not DES tables.
    attacks = [r for r in merged.records if r.get("kind", "attack") == "attack"]
    scored = attach_des(pd.DataFrame(with_sanity(attacks)), base=base, eta=eta)
    return Report(merged, scored, family_summary(scored, behaviour, base=base), base, eta,
                  behaviour)


def last_finished(records: list[dict[str, Any]]) -> datetime | None:
    """When the newest line was written: a leaderboard dated by its data, not by the clock, is
    byte-identical when rewritten from unchanged results (a resumed run that had nothing to
    do leaves the published file untouched)."""
    times = [_finished(r) for r in records if r.get("finished_at")]
    return max(times) if times else None


def render_markdown(
    report: Report,
    generated: datetime | None = None,
    figures: list[str] | None = None,
    summary: list[str] | None = None,
) -> str:
    """The leaderboard as markdown: provenance header, duplicates, ``summary`` (markdown lines,
    e.g. the comparison with a paper, shown before the long per-attack tables), and per dataset
    a clean accuracy table and one ranked table per attack, strength and setting."""
    generated = (generated or last_finished(report.merged.records)
                 or datetime.now(UTC))
    scored = report.scored
    out = ["# hrsbench leaderboard", ""]
    out += _header(report, generated)
    if report.merged.duplicates:
        out += ["", "## Duplicate cells", "",
                f"{len(report.merged.duplicates)} cell(s) found on more than one line; the most "
                "recently finished line is kept, ties broken by the highest content hash.", ""]
        for d in sorted(report.merged.duplicates, key=lambda d: d.cell_key):
            r = d.record
            what = " ".join(filter(None, [r["defense"], _params(r.get("params")).strip("—")]))
            what += f", {r['attack']}"
            if r["attack"] != "none":
                what += f" ε={r['attack_strength']:g} {r['setting']}"
            dropped = ", ".join(f"`{o}`" for o in d.dropped)
            out.append(f"- `{d.cell_key}` ({what}): kept `{d.kept}`, dropped {dropped} — "
                       f"{d.reason}")
    out += summary or []
    if scored.empty:
        out += ["", "No result lines."]
        return "\n".join(out) + "\n"
    for dataset in sorted(scored["dataset"].unique()):
        data = scored[scored["dataset"] == dataset]
        out += ["", f"## {dataset}", "", "### Clean accuracy", ""]
        out += _clean_table(report, data)
        out += _attack_sections(report, data)
    if figures:
        out += ["", "## Figures", ""]
        out += [f"- [{Path(f).name}]({f})" for f in figures]
    return "\n".join(out) + "\n"


def _header(report: Report, generated: datetime) -> list[str]:
    lines = report.scored

    def values(col: str) -> str:
        if col not in lines.columns:
            return "—"
        vals = sorted({str(v) for v in lines[col] if _isnum(v)})
        return ", ".join(f"`{v}`" for v in vals) or "—"

    sources = ", ".join(f"`{p}` ({n} lines)" for p, n in report.merged.sources)
    rows = [
        ["data as of", generated.isoformat(timespec="seconds")],
        ["sources", sources],
        ["cells", str(len(report.merged.records))],
        ["hrsbench version(s)", values("hrsbench_version")],
        ["config hashes", values("config_hash")],
        ["seeds", values("seed")],
        ["torch / ART", f"{values('torch_version')} / {values('art_version')}"],
        ["compute", _compute(report.merged.records)],
        ["base defense", f"`{report.base}`"],
        ["η", f"{report.eta:g}"],
        ["behaviour range", report.behaviour.describe()],
    ]
    legend = ("Rates are percentages, Δt (clean-accuracy drop) and Δd (defense-rate gain) are "
              f"percentage points against `{report.base}` under the same attack; "
              "DES = Δd / (Δt + η) (docs/des.md). Families (a defense over its strength sweep) "
              "are ranked by mean DES; *via white-box* marks a deterministic defense's white-box "
              "line standing for another setting.")
    return _table(["", ""], rows) + ["", legend]


def _compute(records: list[dict[str, Any]]) -> str:
    """Where the time went, summed over result lines (so a resumed run counts each cell once,
    whatever its wall clock): model training against everything else (attacks, threats,
    clean evaluation)."""
    train = sum(float(r.get("train_time_s") or 0) for r in records)
    rest = sum(float(r.get("time_s") or 0) for r in records)
    total = train + rest
    if total <= 0:
        return "—"
    return (f"{total / 60:.1f} min: training {train / 60:.1f} min ({100 * train / total:.0f}%), "
            f"attacks and evaluation {rest / 60:.1f} min ({100 * rest / total:.0f}%)")


def _clean_table(report: Report, data: pd.DataFrame) -> list[str]:
    """One row per trained model (and clean evaluation), best clean accuracy first; the
    clean-only line is used where a model has one."""
    own = data[~data["via_whitebox"].astype(bool)]
    model_cols = ["defense", "params_key", "seed", "n_train", "epochs", "n_clean"]
    models = own.assign(_clean=(own["attack"] != "none"),
                        **{c: own[c].map(lambda v: v if _isnum(v) else None)
                           for c in ("n_train", "epochs", "n_clean")})
    models = models.sort_values("_clean", kind="stable")
    models = models.drop_duplicates(subset=model_cols, keep="first")
    models = models.sort_values(["clean_accuracy", "defense", "params_key"],
                                ascending=[False, True, True], kind="stable")
    rows = []
    for _, m in models.iterrows():
        keys = sorted((m["params"] or {}).keys())
        rows.append([
            m["defense"], _params(m["params"], keys), _pct(m["clean_accuracy"],
                                                           m["clean_accuracy_std"]),
            _pp(m["delta_t"]), _opt(m["n_clean"]), _opt(m["seed"]),
            _opt(m["epochs"]), "all" if m["n_train"] is None else str(m["n_train"]),
            "" if _isnum(m["delta_t"]) or not _isnum(m["des_note"]) else m["des_note"],
        ])
    return _table(["defense", "params", "clean accuracy", "Δt", "n_clean", "seed", "epochs",
                   "n_train", "note"], rows)


def _opt(x: Any) -> str:
    if not _isnum(x):
        return "—"
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _attack_sections(report: Report, data: pd.DataFrame) -> list[str]:
    attacked = data[data["attack"] != "none"]
    out: list[str] = []
    settings = _first_seen(attacked["setting"])
    for attack in sorted(attacked["attack"].unique()):
        of_attack = attacked[attacked["attack"] == attack]
        shown_keys = varying_keys(
            [json.loads(k) for k in _first_seen(of_attack["attack_params_key"])])
        order = of_attack.assign(_s=of_attack["setting"].map(settings.index)).sort_values(
            ["attack_params_key", "targeted", "attack_strength", "_s"], kind="stable")
        for key, group in order.groupby(
            ["attack_params_key", "targeted", "attack_strength", "setting"], sort=False
        ):
            params_key, targeted, strength, setting = key
            shown = _params(json.loads(params_key), shown_keys) if shown_keys else ""
            title = f"### {attack}{f' ({shown})' if shown else ''} · ε={strength:g} · {setting}"
            title += " · targeted" if targeted else " · untargeted"
            group_key = (data["dataset"].iloc[0], attack, params_key, strength, setting,
                         targeted)
            out += ["", title, ""]
            out += _group_tables(report, group, group_key)
    return out


def _group_tables(report: Report, group: pd.DataFrame, key: tuple[Any, ...]) -> list[str]:
    s = report.summary
    if not s.empty:
        mask = pd.Series(True, index=s.index)
        for col, val in zip(GROUP, key, strict=True):
            mask &= s[col] == val
        s = s[mask]
    ranks = {name: i for i, name in enumerate(s["defense"], start=1)} if not s.empty else {}
    rows = []
    for _, f in s.iterrows():
        total = int(((group["defense"] == f["defense"]) & group["des"].notna()).sum())
        fit = "—"
        if _isnum(f["slope"]):
            b = 100 * f["intercept"]
            fit = f"{f['slope']:.2f}·Δt {'−' if b < 0 else '+'} {abs(b):.2f}"
        rows.append([
            str(ranks[f["defense"]]), f["defense"], f"{int(f['n_des'])}/{total}",
            _num(f["mean_des"]), _num(f["std_des"]), fit,
            _span(f["delta_t_min"], f["delta_t_max"], _pp),
            _span(f["rate_min"], f["rate_max"], _pct),
        ])
    if rows:
        out = _table(["rank", "family", "points", "mean DES", "DES std", "fit Δd (pp)",
                      "Δt range", "defense-rate range"], rows)
    elif (group["defense"] != report.base).any():
        out = [f"No DES: no defended line here has a matching `{report.base}` line."]
    else:
        out = [f"Only `{report.base}` was attacked here: no defense to score."]
    out += [""]
    flag = report.flag_field
    ordered = group.assign(
        _rank=group["defense"].map(lambda d: 0 if d == report.base else ranks.get(d, 10**6)),
        _strength=pd.to_numeric(group["strength"], errors="coerce"),
    ).sort_values(["_rank", "defense", "_strength", "params_key"], kind="stable")
    varying = {name: varying_keys(fam["params"]) for name, fam in
               report.scored[report.scored["defense"].isin(group["defense"])].groupby("defense")}
    header = ["rank", "defense", "params", "clean acc", "Δt", "defense rate", "Δd", "DES",
              "family mean DES"]
    header += [flag] if flag else []
    header += ["note"]
    details = []
    mean = dict(zip(s["defense"], s["mean_des"], strict=True)) if not s.empty else {}
    for _, r in ordered.iterrows():
        note = "" if r["defense"] == report.base or not _isnum(r["des_note"]) else r["des_note"]
        if r["via_whitebox"]:
            note = "; ".join(filter(None, ["via white-box", note]))
        row = [
            "ref" if r["defense"] == report.base else str(ranks.get(r["defense"], "—")),
            r["defense"], _params(r["params"], varying[r["defense"]]),
            _pct(r["clean_accuracy"], r["clean_accuracy_std"]), _pp(r["delta_t"]),
            _pct(r["defense_rate"], r["attack_success_rate_std"]), _pp(r["delta_d"]),
            _num(r["des"]), _num(mean.get(r["defense"])),
        ]
        row += [_flags(r[flag])] if flag else []
        details.append(row + [note])
    return out + _table(header, details)


def _span(lo: Any, hi: Any, fmt: Any) -> str:
    if not _isnum(lo):
        return "—"
    return fmt(lo) if lo == hi else f"{fmt(lo)} … {fmt(hi)}"


def write_leaderboard(
    paths: list[str | Path],
    out: str | Path,
    plots: str | Path | None = None,
    base: str = BASE,
    eta: float = ETA,
    behaviour: BehaviourRange | None = None,
    generated: datetime | None = None,
    reference: str | Path | None = None,
) -> tuple[Path, list[Path]]:
    """Merge ``paths``, write the markdown leaderboard to ``out`` and, if ``plots`` is given, the
    figures there (linked from the markdown); with ``reference``, a paper's numbers beside ours
    (:mod:`hrsbench.reference`). Returns the markdown path and the figure paths."""
    report = build_report(merge_results(*paths), base=base, eta=eta, behaviour=behaviour)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figures: list[Path] = []
    if plots is not None:
        from hrsbench.plots import write_plots  # matplotlib only when figures are asked for

        figures = write_plots(report, plots)
    threats = pd.DataFrame([r for r in report.merged.records if r.get("kind") == "threat"])
    if not threats.empty and plots is not None:
        figures += [f for f in write_reprogramming(threats, plots, ("png", "svg"))
                    if f.suffix != ".md"]
    links = [Path(os.path.relpath(f, out.parent)).as_posix() for f in figures
             if f.suffix == ".png"]
    summary = None
    if reference is not None:
        from hrsbench.reference import load_reference, reference_markdown

        summary = reference_markdown(load_reference(reference), report.scored, report.summary)
    text = render_markdown(report, generated, links, summary)
    table = reprogramming_table(threats, base=base, eta=eta) if not threats.empty else None
    if table is not None and not table.empty:
        text += "\n" + reprogramming_markdown(table, "Adversarial reprogramming") + "\n"
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out, figures


def write_run_reports(
    out_dir: str | Path,
    base: str = BASE,
    eta: float = ETA,
    reference: str | Path | None = None,
    leaderboard: str | Path | None = None,
) -> Path | None:
    """What ``hrsbench run`` leaves beside its ``results.jsonl``: ``leaderboard.md`` (or the
    ``leaderboard`` path asked for) and its figures under ``plots/``; nothing if the run wrote
    no results."""
    out_dir = Path(out_dir)
    results = out_dir / "results.jsonl"
    if not results.is_file():
        return None
    path, _ = write_leaderboard([results], leaderboard or out_dir / "leaderboard.md",
                                plots=out_dir / "plots", base=base, eta=eta, reference=reference)
    return path

