"""Wall time of a grid of independent attack cells on a cached model: the local executor, Ray
with one worker and Ray with two (one torch thread per task throughout). Prints one JSON line:
``speedup`` (one Ray worker's time / two workers') and ``ray_overhead`` (one Ray worker's time /
the local executor's). Ray's own start-up is timed apart (``ray_start_s``): a cluster is
normally up before a run.

    HRSBENCH_DATA=/path/to/data python benchmarks/executor_scaling.py [--cells 8] [--iters 60]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from hrsbench.engine.config import parse_config
from hrsbench.engine.executors import LocalExecutor, RayExecutor
from hrsbench.engine.runner import run

#: Identity and metrics: what must agree between executors (timings and timestamps may not).
TIMING = ("time_s", "train_time_s", "finished_at")


def config(cells: int, iters: int, attacks: bool = True) -> dict[str, Any]:
    strengths = [round(0.02 * (i + 1), 4) for i in range(cells)]
    return {
        "dataset": "mnist", "n_train": 2000, "n_test": 10, "n_clean": 1000, "epochs": 1,
        "repeats": 1, "defenses": [{"name": "base"}],
        "attacks": [{"name": "pgd", "strengths": strengths, "params": {"max_iter": iters}}]
        if attacks else [],
    }


def timed(cfg: dict[str, Any], out: Path, cache: Path, executor: Any) -> tuple[float, list]:
    start = time.perf_counter()
    lines = run(parse_config(cfg), out, cache_dir=cache, executor=executor)
    return time.perf_counter() - start, lines


def comparable(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in lines]


def ray_run(cfg: dict[str, Any], out: Path, cache: Path, cpus: int) -> tuple[float, float, list]:
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter() - start
    try:
        seconds, lines = timed(cfg, out, cache, RayExecutor(threads_per_task=1))
    finally:
        ray.shutdown()
    return started, seconds, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--iters", type=int, default=60, help="PGD steps per cell")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "cache"
        run(parse_config(config(0, args.iters, attacks=False)), root / "warm", cache_dir=cache)
        cfg = config(args.cells, args.iters)
        local_s, local = timed(cfg, root / "local", cache, LocalExecutor(threads_per_task=1))
        start_1, ray1_s, ray1 = ray_run(cfg, root / "ray1", cache, 1)
        start_2, ray2_s, ray2 = ray_run(cfg, root / "ray2", cache, 2)
    print(json.dumps({
        "cells": args.cells, "pgd_steps": args.iters, "cpus": os.cpu_count(),
        "local_1_worker_s": round(local_s, 2), "ray_1_worker_s": round(ray1_s, 2),
        "ray_2_workers_s": round(ray2_s, 2), "speedup": round(ray1_s / ray2_s, 3),
        "ray_overhead": round(ray1_s / local_s, 3), "ray_start_s": round(max(start_1, start_2), 2),
        "same_lines": comparable(local) == comparable(ray1) == comparable(ray2),
    }))


if __name__ == "__main__":
    main()
