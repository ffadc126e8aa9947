"""What the bootstrap intervals and the worst case over attacks cost a leaderboard.

On the published MNIST results (``leaderboards/mnist-paper/results.jsonl``, whose lines carry
per-example outcomes) it times DES, the resampled intervals of every line and family, and the
worst case over attacks, as a leaderboard computes them. Prints one JSON line::

    python benchmarks/interval_cost.py --replicates 2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hrsbench import load_results
from hrsbench.report.des import attach_des, family_summary
from hrsbench.report.stats import Bootstrap, line_replicates, summary_intervals, with_intervals
from hrsbench.report.worstcase import worst_case

RESULTS = Path(__file__).resolve().parents[1] / "leaderboards" / "mnist-paper" / "results.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--replicates", type=int, default=2000)
    args = parser.parse_args()
    df = load_results(args.results)
    if df["successes"].isna().all():
        parser.error(f"{args.results} has no per-example outcomes: nothing to resample")
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
