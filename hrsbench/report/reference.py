"""A paper's published numbers beside ours: the "against the paper" section of a leaderboard.

A reproduction is only readable next to what it reproduces. A reference file (TOML) lists the
values a paper reports, each keyed by the fields our result lines carry (defense, parameters,
attack, ε, setting), so the leaderboard can look up the measured value for every one of them
and print both, with the difference. Entries that nothing in the results matches say so rather
than vanish: a missing cell is a finding too.

A value is only comparable with ours where it was made the same way. The file's ``protocol``
says how the paper made its numbers; a row whose lines were made otherwise (fewer epochs, another
optimiser, a narrower sweep), whose ε the paper counts differently, or that rests on an
assumption (an unnamed setting) is "not comparable" and names what differs, and only the other
rows say whether the paper's value lies inside our interval.

Format (every table optional; ``params`` and ``attack_params`` match as subsets)::

    title = "Wang et al., IJCAI 2019"

    [protocol]                     # how the paper made its numbers
    epochs = 40                    # training epochs (our lines' ``epochs``)
    eps_convention = "…"           # how its ε differs from ours, where it does
    optimiser = { pgd = "pgd-adam" }   # attack → the plugin that steps as the paper did
    [protocol.sweeps]              # per family, the ends of its strength sweep (mean DES)
    dropout = { test_rate = [0.1, 0.9] }

    [[entries]]
    metric = "clean_accuracy"      # or attack_success_rate, defense_rate, mean_des, grad_std
    source = "Table A2"
    defense = "dropout"            # a family name for mean_des
    params = { test_rate = 0.1 }
    paper = 0.9898                 # fractions for rates, like every rate in hrsbench
    # attack, attack_strength, setting, attack_params: the threat, for all but clean_accuracy;
    # leaving one out averages over it (Table 1's "mean defense rate over PGD strengths")
    # assumed = "…"                # what the lookup had to assume (the paper is silent)
    # note = "…"                   # a caveat printed with the row
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from hrsbench.errors import HrsbenchError
from hrsbench.report.frame import MODEL
from hrsbench.report.tables import isnum, markdown_table, pct, value

#: What an entry can compare, and whether it is a rate (printed as a percentage).
METRICS = {"clean_accuracy": True, "attack_success_rate": True, "defense_rate": True,
           "mean_des": False, "grad_std": False}
#: A paper's ε is printed to a few digits (64/255 = 0.2509804); this tolerance matches it.
EPS_TOL = 1e-6


@dataclass(frozen=True)
class Entry:
    metric: str
    paper: float
    source: str = ""
    defense: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    attack: str | None = None
    attack_strength: float | None = None
    setting: str | None = None
    attack_params: dict[str, Any] = field(default_factory=dict)
    #: What matching this value with our lines had to assume (the paper's silence on a
    #: setting, say): the row is then not comparable.
    assumed: str = ""
    note: str = ""

    def label(self) -> str:
        what = " ".join([self.defense,
                         *(f"{k}={value(v)}" for k, v in sorted(self.params.items()))])
        if self.attack:
            what += f" · {self.attack}"
            if self.attack_strength is not None:
                what += f" ε={self.attack_strength:.4g}"
            what += f" {self.setting or ''}".rstrip()
            what += "".join(f" {k}={value(v)}" for k, v in sorted(self.attack_params.items()))
        return what


@dataclass(frozen=True)
class Protocol:
    """How the paper made its numbers, for what our lines can do otherwise."""

    #: Training epochs of every model; compared with the lines' ``epochs``.
    epochs: int | None = None
    #: How the paper's ε differs from ours (our lines cannot show it); every row with a threat.
    eps_convention: str = ""
    #: Per attack, the plugin that steps as the paper's did; a line of another plugin differs.
    optimiser: dict[str, str] = field(default_factory=dict)
    #: Per family, per parameter, the ends of the paper's strength sweep: a family's mean DES
    #: over other ends averages other defenses.
    sweeps: dict[str, dict[str, list[Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Reference:
    title: str
    entries: list[Entry]
    protocol: Protocol = field(default_factory=Protocol)


def builtin_references() -> list[str]:
    """The names of the references shipped with hrsbench (``mnist-paper`` …)."""
    folder = resources.files("hrsbench") / "references"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _reference_text(path: Path) -> str:
    """A reference file's text, or a built-in reference's of that name."""
    if path.is_file():
        return path.read_text(encoding="utf-8")
    builtin = resources.files("hrsbench") / "references" / f"{path.name}.toml"
    if path.suffix == "" and builtin.is_file():
        return builtin.read_text(encoding="utf-8")
    raise HrsbenchError(f"{path}: no such reference file, nor a built-in reference "
                        f"({', '.join(builtin_references())})")


def load_reference(path: str | Path) -> Reference:
    """Read a reference file (or a built-in reference by name); an unknown metric or key is an
    error naming the entry."""
    path = Path(path)
    try:
        data = tomllib.loads(_reference_text(path))
    except tomllib.TOMLDecodeError as e:
        raise HrsbenchError(f"{path}: not valid TOML ({e})") from None
    unknown = set(data) - {"title", "entries", "protocol"}
    if unknown:
        raise HrsbenchError(f"{path}: unknown key(s) {sorted(unknown)}; use title, protocol, "
                            "entries")
    protocol = data.get("protocol", {})
    bad = set(protocol) - set(Protocol.__dataclass_fields__)
    if bad:
        raise HrsbenchError(f"{path}: protocol has unknown key(s) {sorted(bad)}; valid: "
                            f"{', '.join(Protocol.__dataclass_fields__)}")
    keys = set(Entry.__dataclass_fields__)
    entries = []
    for i, raw in enumerate(data.get("entries", []), start=1):
        bad = set(raw) - keys
        if bad:
            raise HrsbenchError(f"{path}: entry {i} has unknown key(s) {sorted(bad)}; valid: "
                                f"{', '.join(sorted(keys))}")
        if raw.get("metric") not in METRICS:
            raise HrsbenchError(f"{path}: entry {i} has metric {raw.get('metric')!r}; use one "
                                f"of {', '.join(METRICS)}")
        if "paper" not in raw:
            raise HrsbenchError(f"{path}: entry {i} lacks the paper's value (key 'paper')")
        entries.append(Entry(**raw))
    return Reference(str(data.get("title", path.stem)), entries, Protocol(**protocol))


def _subset(want: dict[str, Any], have: Any) -> bool:
    have = have if isinstance(have, dict) else {}
    return all(k in have and have[k] == v for k, v in want.items())


def _threat_mask(e: Entry, df: pd.DataFrame) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    if e.attack is not None:
        mask &= df["attack"] == e.attack
    if e.attack_strength is not None:
        mask &= (pd.to_numeric(df["attack_strength"]) - e.attack_strength).abs() <= EPS_TOL
    if e.setting is not None:
        mask &= df["setting"] == e.setting
    if e.attack_params:
        # Result lines carry the dict; family summaries only its canonical JSON key.
        params = (df["attack_params"] if "attack_params" in df.columns
                  else df["attack_params_key"].map(json.loads))
        mask &= params.map(lambda p: _subset(e.attack_params, p))
    return mask


def matching(e: Entry, scored: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The rows ``e`` is measured on: family summaries for a mean DES, else result lines (one
    per trained model for clean accuracy)."""
    if e.metric == "mean_des":
        if summary.empty:
            return summary
        return most_images(summary[(summary["defense"] == e.defense)
                                   & _threat_mask(e, summary)])
    lines = scored[(scored["defense"] == e.defense)
                   & scored["params"].map(lambda p: _subset(e.params, p))]
    if e.metric == "clean_accuracy":
        # One value per trained model: the clean line where there is one.
        lines = lines.sort_values("attack", key=lambda a: a != "none", kind="stable")
        return lines.drop_duplicates(subset=[MODEL])
    return most_images(lines[_threat_mask(e, lines) & ~lines["via_whitebox"].astype(bool)])


def most_images(rows: pd.DataFrame) -> pd.DataFrame:
    """Of rows measuring one cell on several sets of attacked images (merged runs), those on the
    largest: the same quantity, most precisely estimated."""
    if rows.empty or "n_test" not in rows.columns:
        return rows
    n = pd.to_numeric(rows["n_test"], errors="coerce")
    return rows[n == n.max()] if n.notna().any() else rows


def measured(e: Entry, scored: pd.DataFrame, summary: pd.DataFrame) -> float | None:
    """Our value for ``e``: the mean over matching lines (several seeds or runs), or None."""
    rows = matching(e, scored, summary)
    values = rows[e.metric].dropna() if e.metric in rows else pd.Series(dtype=float)
    return float(values.astype(float).mean()) if len(values) else None


def measured_interval(e: Entry, scored: pd.DataFrame, summary: pd.DataFrame
                      ) -> tuple[float, float] | None:
    """The 95 % interval of our value where one row measures it and carries one."""
    rows = matching(e, scored, summary)
    lo, hi = f"{e.metric}_lo", f"{e.metric}_hi"
    if len(rows) != 1 or lo not in rows or not isnum(rows[lo].iloc[0]):
        return None
    return float(rows[lo].iloc[0]), float(rows[hi].iloc[0])


def why_missing(e: Entry, scored: pd.DataFrame, summary: pd.DataFrame) -> str:
    """Why we have no value for ``e``: not run, or run without a DES because Δt + η ≤ 0 (a
    defense at least η more accurate than the base)."""
    if e.metric not in ("mean_des", "des"):
        return "not run" if matching(e, scored, summary).empty else "not measured"
    lines = scored[(scored["defense"] == e.defense) & _threat_mask(e, scored)
                   & (scored["attack"] != "none")]
    if lines.empty:
        return "not run"
    notes = " ".join(str(n) for n in lines["des_note"] if isnum(n))
    return "no DES: Δt + η ≤ 0" if "Δt + η ≤ 0" in notes else "no DES"


def measured_lines(e: Entry, scored: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The lines our value for ``e`` rests on: a family's points under the threat for a mean
    DES, else the matching lines."""
    if e.metric != "mean_des":
        return matching(e, scored, summary)
    lines = scored[(scored["defense"] == e.defense) & _threat_mask(e, scored)
                   & (scored["attack"] != "none") & ~scored["via_whitebox"].astype(bool)]
    return most_images(lines)


def differences(e: Entry, protocol: Protocol, lines: pd.DataFrame) -> list[str]:
    """What makes our value for ``e``, measured on ``lines``, not comparable with the paper's:
    each difference named, with both sides where the lines show ours."""
    out = []
    epochs = sorted({int(v) for v in lines.get("epochs", []) if isnum(v)})
    if protocol.epochs is not None and epochs and epochs != [protocol.epochs]:
        out.append(f"epochs (paper {protocol.epochs}, ours {', '.join(map(str, epochs))})")
    if e.metric != "clean_accuracy" and protocol.eps_convention:
        out.append(f"ε convention ({protocol.eps_convention})")
    paper_attack = protocol.optimiser.get(e.attack or "")
    ours = sorted({str(a) for a in lines.get("attack", [])})
    if paper_attack and ours and ours != [paper_attack]:
        out.append(f"optimiser (the paper's {e.attack} steps as {paper_attack} does; ours ran "
                   f"{', '.join(ours)})")
    if e.metric == "mean_des":
        out += _sweep_differences(protocol.sweeps.get(e.defense, {}), lines)
    if e.assumed:
        out.append(f"assumed {e.assumed}")
    return out


def _sweep_differences(sweep: dict[str, list[Any]], lines: pd.DataFrame) -> list[str]:
    """Where a family's points span other ends of a parameter than the paper's sweep."""
    out = []
    for name, (lo, hi) in sorted(sweep.items()):
        values = [p[name] for p in lines.get("params", []) if isinstance(p, dict) and name in p]
        if not values:
            continue
        ends = (min(values), max(values))
        if ends != (lo, hi):
            out.append(f"sweep ({name} from {value(lo)} to {value(hi)} in the paper, from "
                       f"{value(ends[0])} to {value(ends[1])} here)")
    return out


def _fmt(value: float | None, rate: bool) -> str:
    """Rates as the leaderboard prints them; other metrics (DES, deviations) to 4 digits; an
    unbounded interval's end as ∞."""
    if isnum(value) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if rate or not isnum(value):
        return pct(value)
    return f"{value:.4g}"


def reference_markdown(ref: Reference, scored: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """The comparison as markdown lines: one table per metric, in the file's order."""
    out = ["", f"## Against the paper: {ref.title}", "",
           "Each row is a value the paper reports and ours for the same cell (mean over "
           "matching lines; of a cell attacked on several image sets, the largest set's); "
           "differences are ours minus the paper's, in percentage points for rates; brackets "
           "are our 95 % interval where the lines carry per-example outcomes, which covers the "
           "sampling of images and prediction draws only (not training seeds). A row whose "
           "lines were made otherwise than the paper's (epochs, ε convention, optimiser, "
           "sweep) or that rests on an assumption reads \"not comparable\" and names what "
           "differs; only the other rows say whether the paper's value lies inside our "
           "interval, and only where it is bounded. \"not run\" marks a cell this "
           "leaderboard's results do not contain, \"no DES: Δt + η ≤ 0\" a family attacked "
           "there whose every point is at least η more accurate than the base."]
    for metric, rate in METRICS.items():
        entries = [e for e in ref.entries if e.metric == metric]
        if not entries:
            continue
        rows = [_row(e, ref.protocol, scored, summary, rate) for e in entries]
        out += ["", f"### {metric.replace('_', ' ')}", ""]
        out += markdown_table(["source", "cell", "paper", "hrsbench", "difference", "note"], rows)
    return out


def _row(e: Entry, protocol: Protocol, scored: pd.DataFrame, summary: pd.DataFrame,
         rate: bool) -> list[str]:
    ours = measured(e, scored, summary)
    if ours is None:
        return [e.source, e.label(), _fmt(e.paper, rate), "—", why_missing(e, scored, summary),
                e.note]
    d = ours - e.paper
    diff = f"{100 * d:+.2f} pp" if rate else f"{d:+.4g}"
    text, verdict = _fmt(ours, rate), ""
    found = measured_interval(e, scored, summary)
    if found is not None:
        lo, hi = found
        text += f" [{_fmt(lo, rate)}, {_fmt(hi, rate)}]"
        if not (math.isfinite(lo) and math.isfinite(hi)):
            verdict = "our interval is unbounded: no verdict"
        else:
            verdict = ("paper's value inside our 95 % interval" if lo <= e.paper <= hi else
                       "paper's value outside our 95 % interval")
    differs = differences(e, protocol, measured_lines(e, scored, summary))
    if differs:
        diff, verdict = "not comparable", "differs: " + "; ".join(differs)
    return [e.source, e.label(), _fmt(e.paper, rate), text, diff,
            "; ".join(filter(None, [verdict, e.note]))]
