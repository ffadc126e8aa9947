"""Start-up cost of the command line: ``hrsbench --version`` (targets ≤ 1.0 s) and a
leaderboard of the published MNIST results without figures (≤ 2.0 s).

Both are timed as a user runs them, in a fresh process each time (``python -m`` of the console
entry point, so the same imports run), over several rounds; the median is the figure, the
minimum the quiet-machine bound. The leaderboard is written to a temporary file. Also reports
which heavy modules ``import hrsbench.report`` loads (none of torch, ART, matplotlib expected).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
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


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


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
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                times[name].append(wall(cmd))
    print(json.dumps({
        "rounds": args.rounds,
        "version_s": round(statistics.median(times["version"]), 3),
        "version_min_s": round(min(times["version"]), 3),
        "leaderboard_s": round(statistics.median(times["leaderboard"]), 3),
        "leaderboard_min_s": round(min(times["leaderboard"]), 3),
        "targets_s": {"version": 1.0, "leaderboard": 2.0},
        "report_imports": heavy_modules("hrsbench.report"),
        "hrsbench_imports": heavy_modules("hrsbench"),
    }))


if __name__ == "__main__":
    main()
