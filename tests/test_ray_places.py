"""The run's places follow the run: every Ray task reads the data folder and writes the model
cache the driver resolved (flag, else the driver's environment, else the default), whatever the
worker's own environment says; a worker that cannot use them fails in one line naming its node;
and the test session's Ray instances leave nothing in the user's home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hrsbench import Dataset, HrsbenchError
from hrsbench.api import run as run_api
from hrsbench.engine.cells import expand
from hrsbench.engine.config import parse_config
from hrsbench.engine.executors import RayExecutor, Task
from hrsbench.engine.plan import model_pieces
from hrsbench.engine.runner import Job
from hrsbench.engine.runner import run as run_engine
from hrsbench.paths import check_node_places
from tests.conftest import RAY_HOME, listing
from tests.test_executors import ParallelHRS
from tests.test_reprogram import RUN, ToySource, ToyTarget
from tests.toys import registry_with

ray = pytest.importorskip("ray")


class FileSource(ToySource):
    """ToySource's images, read from the data folder a task is given: a task that fell back on
    its worker's own ``$HRSBENCH_DATA`` would not find them."""

    name = "toy-source-files"
    load = Dataset.load

    def read(self, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        with np.load(Path(root) / self.name / f"{split}.npz") as f:
            return f["x"], f["y"]


class FileTarget(ToyTarget):
    """ToyTarget's images, read from the data folder a task is given (as :class:`FileSource`)."""

    name = "toy-target-files"
    load = Dataset.load
    read = FileSource.read


def write_toy_data(root: Path) -> Path:
    """The files :class:`FileSource` and :class:`FileTarget` read, written under ``root``."""
    for ds, toy in ((FileSource, ToySource), (FileTarget, ToyTarget)):
        (root / ds.name).mkdir(parents=True)
        for split in ("train", "test"):
            x, y = toy().load(split, 128)
            np.savez(root / ds.name / f"{split}.npz", x=x, y=y)
    return root


#: Reprogramming threat cells (they read the source task through the data folder and write
#: checkpoints into the cache) on a base model and an HRS 2×2 whose channels are piece tasks.
PLACES_RUN = {
    **RUN, "dataset": FileTarget.name, "n_test": 8,
    "defenses": [{"name": "base"}, {"name": "hrs-parallel", "params": {"channels": [2, 2]}}],
    "threats": [{**RUN["threats"][0], "params": {**RUN["threats"][0]["params"],
                                                 "source": FileSource.name},
                 "grid": {"kernel": [2]}}],
}


@pytest.fixture(scope="module")
def workers_elsewhere(tmp_path_factory):
    """A local Ray instance whose workers have their own ``HRSBENCH_CACHE`` and
    ``HRSBENCH_DATA`` (as a node with another environment would): folders no task may use."""
    root = tmp_path_factory.mktemp("worker-env")
    env = {"HRSBENCH_CACHE": str(root / "cache"), "HRSBENCH_DATA": str(root / "data")}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    yield root
    ray.shutdown()


def worker_env() -> tuple[str | None, str | None]:
    return os.environ.get("HRSBENCH_CACHE"), os.environ.get("HRSBENCH_DATA")


def test_ray_tasks_use_the_drivers_places_not_their_own(workers_elsewhere, tmp_path,
                                                        monkeypatch):
    worker_cache, worker_data = workers_elsewhere / "cache", workers_elsewhere / "data"
    assert ray.get(ray.remote(worker_env).remote()) == (str(worker_cache), str(worker_data))
    # The driver names its places only in its environment, as `HRSBENCH_CACHE=… hrsbench run`.
    driver_cache = tmp_path / "driver-cache"
    monkeypatch.setenv("HRSBENCH_CACHE", str(driver_cache))
    monkeypatch.setenv("HRSBENCH_DATA", str(write_toy_data(tmp_path / "driver-data")))
    reg = registry_with(datasets=[FileSource, FileTarget], defenses=[ParallelHRS])
    done = run_api(PLACES_RUN, out=tmp_path / "out", executor="ray", threads_per_task=1,
                   reports=False, reg=reg)
    assert sum(r["attack"] == "reprogram" for r in done.lines) == 2
    pieces = model_pieces(expand(parse_config(PLACES_RUN), reg), reg)
    expected = set(pieces) | {p for ps in pieces.values() for p in ps}
    assert len(expected) == 2 + 1 + 4  # two models, the base's training, HRS 2×2's channels
    written = {p.name.split(".")[0] for p in driver_cache.glob("*.pt")}
    assert expected <= written  # pieces, models and the threats' checkpoints
    assert len(written) > len(expected)
    assert not worker_cache.exists() and not worker_data.exists()


def cache_under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("not a folder")
    return tmp_path / "file" / "cache"  # nobody, root included, can create this folder


def read_only_cache(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    (tmp_path / "ro").mkdir(mode=0o555)
    return tmp_path / "ro"


@pytest.mark.parametrize("make_cache", [cache_under_a_file, read_only_cache])
def test_a_worker_that_cannot_write_the_cache_says_so_in_one_line(workers_elsewhere, tmp_path,
                                                                  make_cache):
    cache = make_cache(tmp_path)
    reg = registry_with(datasets=[FileSource, FileTarget])
    cfg = parse_config({**PLACES_RUN, "defenses": [{"name": "base"}], "threats": []})
    with pytest.raises(HrsbenchError) as e:
        run_engine(cfg, tmp_path / "out", data_dir=write_toy_data(tmp_path / "data"),
                   cache_dir=cache, reg=reg, executor=RayExecutor())
    message = str(e.value)
    assert "\n" not in message and message.startswith("model base")
    assert f"Ray node {ray.util.get_node_ip_address()} (id " in message
    assert f"cannot write the model cache {cache} (" in message
    assert "every node" in message and "--cache-dir" in message
    assert "possibly a bug" not in message


def test_a_worker_that_cannot_read_the_data_says_so_in_one_line(workers_elsewhere, tmp_path):
    """A node that lacks the folder the driver has (here: a folder that is gone by the time the
    task runs)."""
    cfg = parse_config({**PLACES_RUN, "threats": []})
    job = Job(cfg, None, tmp_path / "gone", tmp_path / "cache", remote=True,
              data_on_driver=True)
    failures = RayExecutor().run([Task("m", "base", "model", Job.check_places, (job,))],
                                 lambda task, result: None)
    [line] = [f.line() for f in failures]
    assert line.startswith(f"model base: Ray node {ray.util.get_node_ip_address()} (id ")
    assert f"cannot read the data folder {tmp_path / 'gone'} (No such file" in line
    assert "every node" in line and "--data-dir" in line


def test_places_are_checked_only_where_needed(tmp_path):
    """In the driver's process tasks check nothing (the run checked its places before it
    started); a dataset that reads no files, with no data folder on the driver, needs none."""
    cfg = parse_config({**PLACES_RUN, "threats": []})
    missing = tmp_path / "absent"
    Job(cfg, None, missing, cache_under_a_file(tmp_path)).check_places()
    Job(cfg, None, missing, tmp_path / "cache", remote=True).check_places()
    assert (tmp_path / "cache").is_dir() and not missing.exists()


def test_the_place_check_names_this_machine_outside_ray(tmp_path):
    with pytest.raises(HrsbenchError, match=r"^this machine cannot read the data folder .*"
                                            r"--data-dir a folder every node shares$"):
        check_node_places(tmp_path / "cache", tmp_path / "absent", "this machine")
    with pytest.raises(HrsbenchError, match=r"^this machine cannot write the model cache .*"
                                            r"--cache-dir a folder every node shares$"):
        check_node_places(cache_under_a_file(tmp_path), None, "this machine")


def test_ray_left_nothing_in_the_users_home(workers_elsewhere, session_places,
                                           ray_home_before):
    """After this module's Ray instance ran tasks: Ray's session files and token are in the
    session's temporary folder, and ``~/.ray`` is as it was before the session (Ray writes its
    default token there when it starts a local instance and finds none)."""
    assert ray.get(ray.remote(lambda: 1).remote()) == 1
    assert (session_places / "ray" / "session_latest").exists()
    assert Path(os.environ["RAY_AUTH_TOKEN_PATH"]).parent == session_places
    assert listing(RAY_HOME) == ray_home_before


def test_a_ray_instance_started_as_tests_start_it_writes_no_home(tmp_path):
    """The user's ``~/.ray`` may hold a token already (then Ray would not write one anyway), so
    the same start, in a process whose home is an empty folder, proves it: nothing appears."""
    home = tmp_path / "home"
    home.mkdir()
    script = ("import ray; ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False); "
              "assert ray.get(ray.remote(lambda: 1).remote()) == 1; ray.shutdown()")
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "HOME": str(home)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert listing(home) == {}
