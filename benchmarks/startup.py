"""Start-up cost of the command line: ``hrsbench --version`` (targets ≤ 1.0 s) and a
leaderboard of the published MNIST results without figures (≤ 2.0 s): their lines carry
per-example outcomes, so every interval and the worst case over attacks are computed.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "leaderboard.md"
        commands = {
            "version": [*CLI, "--version"],
            "leaderboard": [*CLI, "leaderboard", str(RESULTS), "--out", str(out)],
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
        "targets_s": {"version": 1.0, "leaderboard": 2.0},
        "report_imports": heavy_modules("hrsbench.report"),
        "hrsbench_imports": heavy_modules("hrsbench"),
    }))


if __name__ == "__main__":
    main()
