"""Start-up cost of the command line: ``hrsbench --version`` (targets ≤ 1.0 s) and a
leaderboard of the published MNIST results without figures (≤ 2.0 s), also once every line
carries per-example outcomes, so that every interval and the worst case are computed.

Both are timed as a user runs them, in a fresh process each time (the console entry point's
``app()``, so the same imports run), over several rounds: the median wall time, the minimum, and
the median CPU time (user + system), which on a loaded machine stays near what a quiet machine's
wall time would be. The leaderboard is written to a temporary file. Also reports
which heavy modules ``import hrsbench.report`` loads (none of torch, ART, matplotlib expected).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "leaderboards" / "mnist-paper" / "results.jsonl"
CLI = [sys.executable, "-c", "from hrsbench.cli import app; app()"]
HEAVY = ("torch", "art", "matplotlib", "pandas")


def wall(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds of ``cmd`` and the CPU seconds (user + system) it used: on a loaded machine
    the wall time waits for other processes, the CPU time stays near a quiet machine's wall
    time for these single-threaded commands."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def heavy_modules(module: str) -> list[str]:
    code = (f"import sys, {module}; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=ROOT)
    return out.stdout.split()


def with_outcomes(src: Path, dst: Path, seed: int = 0) -> None:
    """``src``'s lines given per-example counts drawn to match their recorded rates (clean
    lines one count per clean image, attack lines one per attacked example and its picking
    half), written to ``dst``: the leaderboard then computes every interval and the worst case
    over attacks, as it will once the published grids carry outcomes."""
    import numpy as np

    from hrsbench.outcomes import encode_counts
    from hrsbench.record import Kind
    from hrsbench.results import read_lines

    rng = np.random.default_rng(seed)
    text = []
    for line in read_lines(src):
        m, e = line.metrics, line.evaluation
        if line.threat.kind == Kind.CLEAN:
            won = rng.random((e.repeats, e.clean_images)) < m.clean_accuracy
            metrics = replace(m, clean_correct=encode_counts(won.sum(axis=0)))
        else:
            won = rng.random((e.repeats, e.n_examples)) < (m.attack_success_rate or 0.0)
            metrics = replace(m, successes=encode_counts(won.sum(axis=0)),
                              successes_pick=encode_counts(won[: e.repeats // 2].sum(axis=0)),
                              clean_correct=None if line.threat.targeted else encode_counts(
                                  np.full(e.n_examples, e.repeats)))
        text.append(replace(line, metrics=metrics).to_json() + "\n")
    dst.write_text("".join(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "leaderboard.md"
        outcomes = Path(tmp) / "results.jsonl"
        with_outcomes(RESULTS, outcomes)
        commands = {
            "version": [*CLI, "--version"],
            "leaderboard": [*CLI, "leaderboard", str(RESULTS), "--out", str(out)],
            "leaderboard_intervals": [*CLI, "leaderboard", str(outcomes), "--out", str(out)],
        }
        wall(commands["version"])  # warm the file-system cache
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                times[name].append(wall(cmd))
    figures = {}
    for name, runs in times.items():
        figures[f"{name}_s"] = round(statistics.median(w for w, _ in runs), 3)
        figures[f"{name}_min_s"] = round(min(w for w, _ in runs), 3)
        figures[f"{name}_cpu_s"] = round(statistics.median(c for _, c in runs), 3)
    print(json.dumps({
        "rounds": args.rounds,
        **figures,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "targets_s": {"version": 1.0, "leaderboard": 2.0, "leaderboard_intervals": 2.0},
        "report_imports": heavy_modules("hrsbench.report"),
        "hrsbench_imports": heavy_modules("hrsbench"),
    }))


if __name__ == "__main__":
    main()
