"""Two processes on one output folder or one model cache never do the same work twice, and a
run writing to a file shows its progress while it works."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hrsbench.cli import app
from hrsbench.errors import HrsbenchError
from hrsbench.locks import run_lock
from hrsbench.progress import LogProgress

TINY = """n_train = 1000
n_test = 1
n_clean = 50
epochs = 1
repeats = 1
grad_samples = 0
[[defenses]]
name = "base"
[[attacks]]
name = "fgsm"
strengths = [0.1, 0.2]
"""


@contextmanager
def held_by_another_thread(folder: Path) -> Iterator[None]:
    """``folder``'s run lock held by another thread (this thread's own hold is re-entrant)."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with run_lock(folder):
            taken.set()
            done.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait(60)
    try:
        yield
    finally:
        done.set()
        holder.join()


def test_second_run_on_a_held_folder_is_refused_naming_the_holder(tmp_path, data_dir):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    with held_by_another_thread(tmp_path / "o"):
        result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o"),
                                          "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {os.getpid()}" in lines[0] and "--wait" in lines[0]
    assert not (tmp_path / "o" / "results.jsonl").exists()


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_two_runs_on_one_folder_do_everything_once_and_log_progress(tmp_path, data_dir):
    """Two `hrsbench run --wait` on one folder, started together: the second waits for the
    first, then finds every cell done; each cell's line appears once and the model is trained
    once. With stdout a file, progress goes out as plain lines."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    env = {**os.environ, "HRSBENCH_DATA": str(data_dir), "HRSBENCH_CACHE": str(tmp_path / "m")}
    cmd = [sys.executable, "-m", "hrsbench.cli", "run", str(cfg), "--out", str(tmp_path / "a"),
           "--wait"]
    with ExitStack() as files:
        logs = [files.enter_context(open(tmp_path / f"log{i}", "w")) for i in range(2)]
        procs = [subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                 for log in logs]
        codes = [p.wait(timeout=300) for p in procs]
    text = [(tmp_path / f"log{i}").read_text() for i in range(2)]
    assert codes == [0, 0], text
    lines = _lines(tmp_path / "a" / "results.jsonl")
    assert len(lines) == len({r["provenance"]["cell_key"] for r in lines}) == 3
    seconds = [r["provenance"]["train_time_s"] for r in lines]
    assert sum(s > 0 for s in seconds) == 1, seconds
    progress = [x for x in "".join(text).splitlines() if x.startswith("[0:")]
    assert any("train base" in x for x in progress), text
    assert any(x.endswith("cells 3/3") for x in progress), text


def test_the_runner_holds_the_lock_itself_and_reenters_the_callers(tmp_path):
    """Called from code (not the CLI), a run on a held folder is refused too; a caller holding
    the lock itself (as the CLI does around the run and its reports) is let through."""
    from hrsbench.engine.config import parse_config
    from hrsbench.engine.runner import run

    cfg = parse_config({"defenses": [{"name": "base"}], "n_test": 1})
    with held_by_another_thread(tmp_path), pytest.raises(HrsbenchError, match="in use"):
        run(cfg, tmp_path)
    calls = []
    with run_lock(tmp_path), run_lock(tmp_path):
        calls.append("re-entered")
    assert calls == ["re-entered"]


def test_a_model_is_trained_once_by_processes_sharing_a_cache(tmp_path):
    """Two workers wanting one uncached model: the first trains it under the model's lock, the
    second waits for the lock and then finds it in the cache."""
    from hrsbench.plugin.cache import ModelCache

    trained, waited = [], []

    def worker(name: str) -> None:
        cache = ModelCache(tmp_path)
        model = torch.nn.Linear(2, 2)
        with cache.lock("k", on_wait=lambda: waited.append(name)):
            if cache.load("k", model):
                return
            time.sleep(0.3)  # training
            trained.append(name)
            cache.save("k", model)

    first = threading.Thread(target=worker, args=("first",))
    first.start()
    time.sleep(0.1)
    worker("second")
    first.join()
    assert trained == ["first"] and waited == ["second"]


def test_log_progress_lines_are_periodic_and_plain():
    now = [0.0]
    out = io.StringIO()
    log = LogProgress(out, every=30, clock=lambda: now[0])
    log("cells", "cells", 0, 4)
    log("train", "base", 1, 100)  # a new model: a line
    for step in range(2, 100):
        now[0] += 0.5  # 49 s of steps: one more line at 30 s
        log("train", "base", step, 100)
    log("train", "base", 100, 100)  # finished: a line
    log("cells", "cells", 1, 4)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[0:00:00] cells 0/4"
    assert lines[1] == "[0:00:00] cells 0/4 · train base: 1/100 steps (1 %)"
    assert lines[2].startswith("[0:00:30] cells 0/4 · train base: 61/100")
    assert lines[3].startswith("[0:00:49] cells 0/4 · train base: 100/100")
    assert lines[4] == "[0:00:49] cells 1/4"
    assert len(lines) == 5 and "\x1b" not in out.getvalue()
