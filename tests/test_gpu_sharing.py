"""``--gpus-per-task``: Ray grants fractions of a GPU, so several small tasks hold one GPU at
once. Shown on a CPU-only Ray instance that declares a GPU (Ray schedules declared resources
without touching CUDA)."""

from __future__ import annotations

import re
import time

import pytest

from hrsbench import HrsbenchError
from hrsbench.executors import RayExecutor, Task, make_executor

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def one_gpu_cluster():
    """2 CPUs and 1 declared GPU."""
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def hold(seconds: float) -> tuple[float, float, list[str]]:
    """Hold the granted resources for ``seconds``; returns when, and which GPU Ray gave."""
    start = time.time()
    time.sleep(seconds)
    return start, time.time(), [str(g) for g in ray.get_gpu_ids()]


def spans(gpus: float) -> list[tuple[float, float, list[str]]]:
    tasks = [Task(f"t{i}", f"t{i}", "cell", hold, (1.5,)) for i in range(2)]
    done: dict[str, tuple[float, float, list[str]]] = {}
    failures = RayExecutor(gpus_per_task=gpus).run(tasks, lambda t, r: done.__setitem__(t.key, r))
    assert not failures
    return [done["t0"], done["t1"]]


def overlap(a: tuple[float, float, list[str]], b: tuple[float, float, list[str]]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


def test_half_a_gpu_each_lets_two_tasks_hold_one_gpu_at_once(one_gpu_cluster):
    a, b = spans(0.5)
    assert a[2] == b[2] == ["0"]  # both were granted the one GPU
    assert overlap(a, b) > 1.0  # and held it together


def test_a_whole_gpu_each_runs_them_one_after_another(one_gpu_cluster):
    a, b = spans(1)
    assert overlap(a, b) <= 0


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
