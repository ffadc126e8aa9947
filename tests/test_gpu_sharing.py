"""``--gpus-per-task``: Ray grants fractions of a GPU, so several small tasks hold one GPU at
once. Shown on a CPU-only Ray instance that declares a GPU (Ray schedules declared resources
without touching CUDA)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from hrsbench import HrsbenchError
from hrsbench.engine.executors import RayExecutor, Task, make_executor

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def one_gpu_cluster():
    """2 CPUs and 1 declared GPU."""
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def hold(folder: str, me: str, other: str, wait_s: float) -> tuple[bool, list[str]]:
    """Hold the granted resources until the other task is seen holding its own (or ``wait_s``
    passes): whether it was seen, and which GPU Ray gave. A rendezvous, not a timing: a loaded
    machine may start the second worker late, but two tasks that hold the GPU at once meet."""
    (Path(folder) / me).write_text("holding")
    deadline = time.time() + wait_s
    seen = False
    while time.time() < deadline and not seen:
        seen = (Path(folder) / other).exists()
        time.sleep(0.05)
    time.sleep(0.2)  # still holding when the other looks
    (Path(folder) / me).unlink()
    return seen, [str(g) for g in ray.get_gpu_ids()]


def meetings(gpus: float, folder: Path, wait_s: float) -> list[tuple[bool, list[str]]]:
    tasks = [Task("a", "a", "cell", hold, (str(folder), "a", "b", wait_s)),
             Task("b", "b", "cell", hold, (str(folder), "b", "a", wait_s))]
    done: dict[str, tuple[bool, list[str]]] = {}
    failures = RayExecutor(gpus_per_task=gpus).run(tasks, lambda t, r: done.__setitem__(t.key, r))
    assert not failures
    return [done["a"], done["b"]]


def test_half_a_gpu_each_lets_two_tasks_hold_one_gpu_at_once(one_gpu_cluster, tmp_path):
    (a_seen, a_gpu), (b_seen, b_gpu) = meetings(0.5, tmp_path, wait_s=60)
    assert a_gpu == b_gpu == ["0"]  # both were granted the one GPU
    assert a_seen and b_seen  # and each saw the other holding it


def test_a_whole_gpu_each_runs_them_one_after_another(one_gpu_cluster, tmp_path):
    (a_seen, _), (b_seen, _) = meetings(1, tmp_path, wait_s=2)
    assert not a_seen and not b_seen


@pytest.mark.parametrize("executor, device, gpus, words", [
    ("local", "cuda", 0.5, "needs --executor ray"),
    ("ray", "cpu", 0.5, "needs --device cuda"),
    ("ray", "cuda", 0.0, "fraction in (0, 1]"),
    ("ray", "cuda", 1.5, "fraction in (0, 1]"),
])
def test_bad_gpus_per_task_is_one_line(executor, device, gpus, words):
    with pytest.raises(HrsbenchError, match=re.escape(words)):
        make_executor(executor, device=device, gpus_per_task=gpus)


def test_default_is_one_gpu_per_task_on_cuda():
    assert make_executor("ray", device="cuda").gpus == 1
    assert make_executor("ray", device="cuda", gpus_per_task=0.25).gpus == 0.25
    assert make_executor("ray", device="cpu").gpus == 0
