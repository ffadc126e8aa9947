"""What the bootstrap intervals and the worst case over attacks cost a leaderboard.

The published MNIST results (``leaderboards/mnist-paper/results.jsonl``) predate per-example
outcomes, so this gives every line counts drawn to match its recorded rates (the clean-only
lines one count per clean image, the attack lines one per (image, target) pair, and the
picking half), then times DES, the resampled intervals of every line and family, and the worst
case over attacks, as a leaderboard computes them. Prints one JSON line::

    python benchmarks/interval_cost.py --replicates 2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hrsbench.outcomes import encode_counts
from hrsbench.report.des import attach_des, family_summary
from hrsbench.report.stats import Bootstrap, line_replicates, summary_intervals, with_intervals
from hrsbench.report.worstcase import worst_case

RESULTS = Path(__file__).resolve().parents[1] / "leaderboards" / "mnist-paper" / "results.jsonl"


def with_outcomes(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per-example counts drawn to match each line's recorded clean accuracy or success rate."""
    rng = np.random.default_rng(seed)
    df = df.copy()
    successes, picks, correct = [], [], []
    for _, row in df.iterrows():
        repeats = int(row.get("repeats") or 1)
        if row["attack"] == "none":
            n, p = int(row["n_clean"]), float(row["clean_accuracy"])
        else:
            n, p = int(row["n_examples"]), float(row["attack_success_rate"])
        won = rng.random((repeats, n)) < p
        counts = encode_counts(won.sum(axis=0))
        half = encode_counts(won[: repeats // 2].sum(axis=0))
        none = row["attack"] == "none"
        correct.append(counts if none else None)
        successes.append(None if none else counts)
        picks.append(None if none else half)
    return df.assign(successes=successes, successes_pick=picks, clean_correct=correct)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--replicates", type=int, default=2000)
    args = parser.parse_args()
    rows = [json.loads(s) for s in args.results.read_text().splitlines() if s.strip()]
    df = with_outcomes(pd.DataFrame(rows))
    clock = Clock()
    scored = attach_des(df)
    clock.lap("des")
    reps = line_replicates(scored, Bootstrap(replicates=args.replicates))
    with_intervals(scored, reps)
    summary_intervals(family_summary(scored), reps)
    clock.lap("intervals")
    table = worst_case(scored, reps)
    clock.lap("worst_case")
    print(json.dumps({"lines": len(df), "replicates": args.replicates,
                      "worst_case_rows": len(table), **clock.figures()}))


class Clock:
    """Wall and process (CPU) seconds per lap: on a shared machine the CPU time is the figure
    that does not depend on the other processes' load."""

    def __init__(self) -> None:
        self.laps: dict[str, tuple[float, float]] = {}
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.laps[name] = (wall - self._wall, cpu - self._cpu)
        self._wall, self._cpu = wall, cpu

    def figures(self) -> dict[str, float]:
        out = {f"{k}_s": round(w, 3) for k, (w, _) in self.laps.items()}
        out.update({f"{k}_cpu_s": round(c, 3) for k, (_, c) in self.laps.items()})
        return out


if __name__ == "__main__":
    main()
