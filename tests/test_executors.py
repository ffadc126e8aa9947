"""Executors on toy task graphs: results passed along, failures kept to their task and its
dependents, a killed Ray worker's task rerun, and the same results from ``local`` and ``ray``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hrsbench_plugins.hrs import HRS

from hrsbench import Attack, HrsbenchError
from hrsbench.engine.cells import expand
from hrsbench.engine.config import parse_config
from hrsbench.engine.executors import (
    LocalExecutor,
    RayExecutor,
    Task,
    describe,
    make_executor,
    raise_failures,
)
from hrsbench.engine.runner import run
from hrsbench.engine.schedule import model_pieces, parallel_models, piece_graph
from hrsbench.results.store import read_lines
from tests.toys import registry_with

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance of 2 CPUs for the module (starting one costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def square(x: int) -> int:
    return x * x


def plus(model: int, x: int) -> int:
    return model + x


def boom(model: int, x: int) -> int:
    raise ValueError(f"bad input {x}\nsecond line")


def die_once(model: int, marker: str) -> int:
    """Kill this worker process the first time (as an OOM killer or a lost node would)."""
    if not Path(marker).exists():
        Path(marker).write_text("killed")
        os._exit(1)
    return model + 1


def graph(cell=plus, arg=2) -> list[Task]:
    return [
        Task("m1", "m1", "model", square, (3,)),
        Task("c1", "c1", "cell", plus, (1,), input="m1"),
        Task("c2", "c2", "cell", cell, (arg,), input="m1"),
        Task("m2", "m2", "model", square, (4,), after=("m1",)),
        Task("c3", "c3", "cell", plus, (5,), input="m2"),
    ]


def collect(executor, tasks):
    done: dict[str, int] = {}
    failures = executor.run(tasks, lambda t, r: done.__setitem__(t.key, r))
    return done, failures


def test_local_runs_in_order_and_passes_models():
    order = []
    failures = LocalExecutor().run(graph(), lambda t, r: order.append((t.key, r)))
    assert failures == []
    assert order == [("m1", 9), ("c1", 10), ("c2", 11), ("m2", 16), ("c3", 21)]


def test_local_failure_keeps_the_others():
    done, failures = collect(LocalExecutor(), graph(cell=boom))
    assert set(done) == {"m1", "c1", "m2", "c3"}
    assert [f.line() for f in failures] == ["cell c2: ValueError: bad input 2"]


def test_failed_model_skips_its_cells():
    tasks = [Task("m1", "base", "model", boom, (0, 1)), *graph()[1:]]
    done, failures = collect(LocalExecutor(), tasks)
    assert set(done) == set()  # m2 waits for m1, c3 for m2
    assert failures[0].line() == "model base: ValueError: bad input 1"
    assert "skipped: model base failed" in failures[1].line()
    with pytest.raises(HrsbenchError, match=r"^model base: .* \(and 4 more tasks"):
        raise_failures(failures)


def test_interrupt_stops_local_at_once():
    def interrupt(model, x):
        raise KeyboardInterrupt

    tasks = graph(cell=interrupt)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor().run(tasks, lambda t, r: seen.append(t.key))
    assert seen == ["m1", "c1"]


def test_bad_options_fail_before_work():
    with pytest.raises(HrsbenchError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(HrsbenchError, match="--ray-address needs --executor ray"):
        make_executor("local", address="auto")
    with pytest.raises(HrsbenchError, match="at least 1"):
        make_executor("ray", threads_per_task=0)
    assert make_executor("ray", device="cuda").gpus == 1


def test_describe_is_one_line():
    assert describe(HrsbenchError("fix it")) == "fix it"
    assert describe(RuntimeError("a\nb")) == "RuntimeError: a"


def test_ray_gives_the_local_results(ray_cluster):
    local, _ = collect(LocalExecutor(), graph())
    remote, failures = collect(RayExecutor(threads_per_task=1), graph())
    assert failures == [] and remote == local


def test_ray_failure_is_one_line_and_others_finish(ray_cluster):
    done, failures = collect(RayExecutor(), graph(cell=boom))
    assert set(done) == {"m1", "c1", "m2", "c3"}
    assert [f.line() for f in failures] == ["cell c2: ValueError: bad input 2"]


def test_ray_reruns_a_killed_worker_task(ray_cluster, tmp_path):
    marker = tmp_path / "killed"
    done, failures = collect(RayExecutor(), graph(cell=die_once, arg=str(marker)))
    assert failures == [] and marker.exists()
    assert done == {"m1": 9, "c1": 10, "c2": 10, "m2": 16, "c3": 21}


def test_ray_waits_for_models_it_shares_with(ray_cluster, tmp_path):
    order = []
    RayExecutor().run(graph(), lambda t, r: order.append(t.key))
    assert order.index("m1") < order.index("m2") < order.index("c3")


# ---------------------------------------------------------------- whole runs on real data

SMALL = {
    "dataset": "mnist", "n_train": 500, "n_test": 2, "n_clean": 100, "epochs": 1, "repeats": 2,
    "defenses": [{"name": "base"}, {"name": "dropout", "params": {"test_rate": 0.1}}],
    "attacks": [{"name": "fgsm", "strengths": [0.1, 0.3]},
                {"name": "pgd", "strengths": [0.2], "params": {"max_iter": 3}}],
}
TIMING = ("time_s", "train_time_s", "finished_at")


@dataclass
class Faulty(Attack):
    """Random-sign noise that kills its worker once (``mode="die"``, a marker file remembers)
    or raises (``mode="raise"``)."""

    name = "faulty"
    mode: str = "die"
    marker: str = ""

    def generate(self, classifier, x, y, strength, targets=None):
        if self.mode == "raise":
            raise ValueError("faulty attack raised")
        if self.marker and not Path(self.marker).exists():
            Path(self.marker).write_text("killed")
            os._exit(1)
        return np.clip(x + strength * np.sign(np.random.randn(*x.shape)), 0, 1).astype(np.float32)


@pytest.fixture
def reg():
    return registry_with(attacks=[Faulty])


@pytest.fixture(scope="module")
def cached_models(ray_cluster, tmp_path_factory, data_dir):
    """The models of SMALL, trained by Ray tasks into the driver's (empty) cache."""
    cache = tmp_path_factory.mktemp("exec-cache")
    lines = run(parse_config({**SMALL, "attacks": []}), tmp_path_factory.mktemp("trained"),
                data_dir=data_dir, cache_dir=cache, executor=RayExecutor(threads_per_task=1))
    return cache, lines


def go(out, data_dir, cache, executor, reg=None, **overrides):
    cfg = parse_config({**SMALL, **overrides})
    return run(cfg, out, data_dir=data_dir, cache_dir=cache, executor=executor, reg=reg)


def without_timings(lines):
    """Lines without what may differ between two runs: timings (a threat reports its own, such
    as reprogramming's seconds per epoch) and timestamps."""
    return sorted(json.dumps({k: v for k, v in r.items() if k not in TIMING and "seconds" not in k},
                             sort_keys=True) for r in lines)


def test_ray_trains_models_into_the_driver_cache(cached_models):
    cache, lines = cached_models
    assert {r["model_key"] for r in lines} <= {p.stem for p in cache.glob("*.pt")}
    assert sum(r["train_time_s"] > 0 for r in lines) == 2  # each model charged once


def test_ray_and_local_write_the_same_lines(tmp_path, data_dir, cached_models):
    cache, _ = cached_models
    remote = go(tmp_path / "ray", data_dir, cache, RayExecutor(threads_per_task=1))
    local = go(tmp_path / "local", data_dir, cache, LocalExecutor(threads_per_task=1))
    assert len(local) == 8 and without_timings(local) == without_timings(remote)
    stored = read_lines(tmp_path / "ray" / "results.jsonl")
    assert len(stored) == 8 and {r.provenance.cell_key for r in stored} == {
        r["cell_key"] for r in local}


def test_killed_worker_leaves_complete_results(ray_cluster, tmp_path, data_dir, cached_models,
                                               reg):
    marker = tmp_path / "killed"
    attacks = [{"name": "fgsm", "strengths": [0.1]},
               {"name": "faulty", "strengths": [0.1, 0.2], "params": {"marker": str(marker)}}]
    lines = go(tmp_path / "out", data_dir, cached_models[0], RayExecutor(), reg,
               attacks=attacks)
    assert marker.exists()  # a worker did die mid-task
    stored = read_lines(tmp_path / "out" / "results.jsonl")
    keys = [r.provenance.cell_key for r in stored]
    assert len(lines) == 2 * 4 and len(keys) == len(set(keys)) == 8


def test_failing_cell_is_one_line_and_others_are_kept(ray_cluster, tmp_path, data_dir,
                                                      cached_models, reg):
    attacks = [{"name": "fgsm", "strengths": [0.1]},
               {"name": "faulty", "strengths": [0.1], "params": {"mode": "raise"}}]
    with pytest.raises(HrsbenchError) as e:
        go(tmp_path / "out", data_dir, cached_models[0], RayExecutor(), reg, attacks=attacks)
    message = str(e.value)
    assert "\n" not in message and "faulty" in message and "faulty attack raised" in message
    kept = read_lines(tmp_path / "out" / "results.jsonl")
    assert sorted(r.threat.name for r in kept) == ["fgsm", "fgsm", "none", "none"]
    # The folder a Ray run left resumes under the local executor: only new cells run.
    before = (tmp_path / "out" / "results.jsonl").read_bytes()
    again = go(tmp_path / "out", data_dir, cached_models[0], LocalExecutor(), reg,
               attacks=[{"name": "fgsm", "strengths": [0.1, 0.2]}])
    after = (tmp_path / "out" / "results.jsonl").read_bytes()
    assert len(again) == 6 and after.startswith(before) and len(after.splitlines()) == 6


@dataclass
class ParallelHRS(HRS):
    """HRS declaring what Algorithm 1 allows: channels of one block train independently."""

    name: ClassVar[str] = "hrs-parallel"
    parallel_pieces: ClassVar[bool] = True


@pytest.fixture
def hrs_reg():
    return registry_with(defenses=[ParallelHRS])


HRS_RUN = {"dataset": "mnist", "n_train": 300, "n_test": 1, "n_clean": 50, "epochs": 1,
           "repeats": 1, "defenses": [{"name": "hrs-parallel", "grid": {"channels": [[2, 2],
                                                                                    [3, 3]]}}],
           "attacks": [{"name": "fgsm", "strengths": [0.2]}]}


def test_hrs_channels_as_tasks_give_the_sequential_lines(ray_cluster, tmp_path, data_dir,
                                                         hrs_reg):
    cfg = parse_config(HRS_RUN)
    pieces, after = piece_graph(model_pieces(expand(cfg, hrs_reg), hrs_reg),
                                parallel_models(expand(cfg, hrs_reg), hrs_reg))
    assert len(pieces) == 4 + 4  # 2×2's four channels, then 3×3's third block-1 channel and
    assert all(len(a) >= 4 for a in after.values())  # its block 2; models wait for pieces
    seen: list[tuple[str, int, int]] = []
    remote = run(cfg, tmp_path / "ray", data_dir=data_dir, cache_dir=tmp_path / "c1",
                 reg=hrs_reg, executor=RayExecutor(threads_per_task=1),
                 progress=lambda task, label, done, total: seen.append((task, done, total)))
    # Each channel task says when it is done: minutes of training are not silent in a log.
    assert [(d, n) for task, d, n in seen if task == "pieces"] == [(i, 8) for i in range(1, 9)]
    local = run(cfg, tmp_path / "local", data_dir=data_dir, cache_dir=tmp_path / "c2",
                reg=hrs_reg, executor=LocalExecutor(threads_per_task=1))
    assert len(local) == 4 and without_timings(local) == without_timings(remote)
    # The channel tasks' seconds are charged to the model that owns them, once per model.
    assert sum(r["train_time_s"] > 0 for r in remote) == 2
    assert sorted(p.name for p in (tmp_path / "c1").glob("*.pt")) == sorted(
        p.name for p in (tmp_path / "c2").glob("*.pt"))


def test_threat_cells_run_on_ray(ray_cluster, tmp_path):
    from tests.test_reprogram import RUN, ToySource, ToyTarget

    registry = registry_with(datasets=[ToySource, ToyTarget])
    cfg = parse_config({**RUN, "n_test": 8})
    remote = run(cfg, tmp_path / "ray", cache_dir=tmp_path / "c1", reg=registry,
                 executor=RayExecutor(threads_per_task=1))
    local = run(cfg, tmp_path / "local", cache_dir=tmp_path / "c2", reg=registry,
                executor=LocalExecutor(threads_per_task=1))
    assert sum(r["attack"] == "reprogram" for r in remote) == 2
    assert without_timings(local) == without_timings(remote)


def test_interrupted_ray_driver_keeps_lines_and_resumes(tmp_path, data_dir, cached_models):
    cache, _ = cached_models

    def interrupt_after_three(task, label, done, total):
        if task == "cells" and done == 3:
            raise KeyboardInterrupt

    cfg = parse_config(SMALL)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path, data_dir=data_dir, cache_dir=cache, executor=RayExecutor(),
            progress=interrupt_after_three)
    kept = (tmp_path / "results.jsonl").read_bytes()
    assert len(kept.splitlines()) == 3
    lines = go(tmp_path, data_dir, cache, RayExecutor())
    after = (tmp_path / "results.jsonl").read_bytes()
    assert len(lines) == 8 and after.startswith(kept) and len(after.splitlines()) == 8
