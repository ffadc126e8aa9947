"""Checks, from result lines, that the headline's worst case over attacks is a real attack: for
every model, ε, targeting and set of attacked images, its worst-case defense rate is at most
the defense rate of every single attack line of that model there (as the line tables print it).

The lines are grouped here independently of :mod:`hrsbench.report.worstcase` (every evasion line
of the model whose strength is an ε, no white-box copies standing for other settings), so a
grouping mistake there shows as a violation. For each budget it also prints how far the
printed best line may flatter the attack: the best line chosen on the first half of the draws
and scored on the others, both ways round (``cross_fitted_best``), against the printed one,
which is chosen on the draws that score it. Prints one JSON object per budget and a summary
last; exits 1 on a violation::

    python benchmarks/headline_floor.py leaderboards/mnist-paper/results.jsonl \\
        leaderboards/mnist-paper/headline/results.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hrsbench.report.des import attach_des
from hrsbench.report.merge import merge_results
from hrsbench.report.stats import counts_of
from hrsbench.report.worstcase import worst_case

#: Where the worst case and its lines must agree: the model and the threat budget.
KEY = ("model_key", "dataset", "attack_strength", "targeted", "n_test")
#: Slack for floating point only: the floor is the lines' own recorded rate.
TOLERANCE = 1e-9


def _attack_lines(scored: pd.DataFrame) -> pd.DataFrame:
    lines = scored[(scored["attack"] != "none") & (scored["kind"] == "evasion")]
    lines = lines[~lines["via_whitebox"].fillna(False).astype(bool)]
    param = lines["attack_strength_param"]
    return lines[param.isna() | (param == "eps")]


def _cross_fitted_best(lines: pd.DataFrame) -> float | None:
    """The best line's defense rate, chosen on one half of the draws and scored on the other,
    both ways round (targeted lines with both halves only)."""
    wins = [counts_of(v) for v in lines["successes"]]
    picks = [counts_of(v) for v in lines.get("successes_pick", pd.Series([None] * len(lines)))]
    repeats = {int(r) for r in lines["repeats"]}
    if (any(w is None for w in wins) or any(p is None for p in picks) or len(repeats) != 1
            or not bool(lines["targeted"].all())):
        return None
    r = repeats.pop()
    half = r // 2
    if half < 1:
        return None
    w, p = np.stack(wins), np.stack(picks)
    rest = w - p
    by_pick = rest[int(np.argmax(p.sum(axis=1)))].mean() / (r - half)
    by_rest = p[int(np.argmax(rest.sum(axis=1)))].mean() / half
    return 1.0 - float(by_pick + by_rest) / 2


def check(paths: list[str | Path]) -> list[dict[str, Any]]:
    """One record per headline row: its worst case, the strongest single line's rate and
    label, the cross-fitted best line, and whether the worst case exceeds any line."""
    merged = merge_results(*paths)
    scored = attach_des(pd.DataFrame([r for r in merged.records
                                      if r["kind"] in ("clean", "evasion")]))
    worst = worst_case(scored)
    lines = _attack_lines(scored)
    groups = {tuple(None if pd.isna(v) else v for v in key): g
              for key, g in lines.groupby(list(KEY), dropna=False)}
    out = []
    for row in worst.to_dict("records"):
        key = (row["model"], row["dataset"], row["attack_strength"], row["targeted"],
               row["n_test"])
        group = groups[tuple(None if pd.isna(v) else v for v in key)]
        rates = pd.to_numeric(group["defense_rate"])
        best = group.loc[rates.idxmin()]
        headline = row["worst_defense_rate"]
        out.append({
            "defense": row["defense"], "params": row["params"], "eps": row["attack_strength"],
            "n_test": row["n_test"], "lines": len(group), "worst_case": headline,
            "best_line": float(rates.min()), "best": f"{best['attack']} ({best['setting']})",
            "cross_fitted_best": _cross_fitted_best(group),
            "violation": bool(headline is not None and not pd.isna(headline)
                              and headline > float(rates.min()) + TOLERANCE),
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    found = check(args.results)
    for record in found:
        print(json.dumps(record, default=str))
    floored = [r for r in found if r["worst_case"] == r["best_line"] and r["lines"] > 1
               and r["cross_fitted_best"] is not None]
    gaps = [100 * (r["cross_fitted_best"] - r["best_line"]) for r in floored]
    bad = [r for r in found if r["violation"]]
    print(json.dumps({
        "rows": len(found), "violations": len(bad),
        "at_the_floor": len(floored),
        "floor_selection_pp": {"mean": round(float(np.mean(gaps)), 2) if gaps else None,
                               "max": round(float(np.max(gaps)), 2) if gaps else None},
    }))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
