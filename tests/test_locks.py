"""Two processes on one output folder or one model cache never do the same work twice, and a
run writing to a file shows its progress while it works."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from typer.testing import CliRunner

from hrsbench.cli import app
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


def test_second_run_on_a_held_folder_is_refused_naming_the_holder(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    with run_lock(tmp_path / "o"):
        result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {os.getpid()}" in lines[0] and "--wait" in lines[0]
    assert not (tmp_path / "o" / "results.jsonl").exists()


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_concurrent_runs_share_work_and_log_progress(tmp_path, data_dir):
    """Two runs on one folder (the second waits) and a third on another folder, all sharing a
    model cache, started together: each cell's line appears once per folder and the one model
    is trained once; with stdout a file, progress lines are there."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    env = {**os.environ, "HRSBENCH_DATA": str(data_dir), "HRSBENCH_CACHE": str(tmp_path / "m")}
    with ExitStack() as files:
        procs = []
        for i, out in enumerate(("a", "a", "b")):
            log = files.enter_context(open(tmp_path / f"log{i}", "w"))
            cmd = [sys.executable, "-m", "hrsbench.cli", "run", str(cfg), "--out",
                   str(tmp_path / out), "--wait"]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
        codes = [p.wait(timeout=300) for p in procs]
    logs = [(tmp_path / f"log{i}").read_text() for i in range(3)]
    assert codes == [0, 0, 0], logs
    a, b = _lines(tmp_path / "a" / "results.jsonl"), _lines(tmp_path / "b" / "results.jsonl")
    assert len(a) == len({r["provenance"]["cell_key"] for r in a}) == 3
    assert len(b) == 3
    seconds = [r["provenance"]["train_time_s"] for r in a + b]
    assert sum(s > 0 for s in seconds) == 1, seconds
    progress = [x for x in "".join(logs).splitlines() if x.startswith("[0:")]
    assert any("cells 3/3" in x for x in progress), logs


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
