"""hrsbench from Python: ``run`` refuses what the command line refuses, before any work, and
``evaluate`` attacks a trained ``nn.Module`` with no plugin and no training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hrsbench_plugins.datasets import MNIST
from torch import nn

import hrsbench
from hrsbench import HrsbenchError


@pytest.fixture(scope="module")
def small_model(data_dir) -> nn.Module:
    """A linear MNIST classifier fitted in a second: accurate enough to be attacked."""
    x, y = MNIST().load("train", 2000, data_dir)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval()


class Noisy(nn.Module):
    def __init__(self, inner: nn.Module, sigma: float) -> None:
        super().__init__()
        self.inner, self.sigma = inner, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + self.sigma * torch.randn_like(x))


def test_evaluate_returns_lines_with_intervals(small_model, data_dir):
    df = hrsbench.evaluate(small_model, dataset="mnist", attacks={"pgd": [0.1]}, n_test=20,
                           targeted=False, n_clean=500, data_dir=data_dir)
    attacked = df[df["attack"] == "pgd"]
    assert len(attacked) == 1 and len(df) == 2  # a clean line and the attack line
    row = attacked.iloc[0]
    for col in ("attack_success_rate", "attack_success_rate_lo", "attack_success_rate_hi"):
        assert col in df.columns
    assert row["attack_success_rate_lo"] <= row["attack_success_rate"] \
        <= row["attack_success_rate_hi"]
    assert row["attack_success_rate"] > 0.3  # ε = 0.1 breaks a linear model often
    assert 0.7 < row["clean_accuracy"] <= 1.0
    assert row["clean_accuracy_lo"] < row["clean_accuracy"] < row["clean_accuracy_hi"]
    # the model given is left as it was
    assert not small_model.training and next(small_model.parameters()).device.type == "cpu"


def test_evaluate_stochastic_model_in_adaptive_settings(small_model, data_dir):
    noisy = Noisy(small_model, 0.3)
    df = hrsbench.evaluate(noisy, dataset="mnist", attacks=[{"name": "pgd", "strengths": [0.1],
                                                             "params": {"max_iter": 5}}],
                           settings=["whitebox", "eot", "fixed"], stochastic=True,
                           surrogate=lambda m: m.inner, eot_samples=2, repeats=3, n_test=5,
                           n_clean=200, data_dir=data_dir)
    lines = df[df["attack"] == "pgd"]
    assert sorted(lines["setting"]) == ["eot", "fixed", "whitebox"]
    assert (lines["repeats"] == 3).all()
    assert np.isfinite(lines["attack_success_rate_hi"]).all()


def test_evaluate_refuses_a_setting_it_cannot_run(small_model):
    with pytest.raises(HrsbenchError, match="surrogate="):
        hrsbench.evaluate(Noisy(small_model, 0.1), dataset="mnist", attacks={"pgd": [0.1]},
                          settings=["fixed"], stochastic=True)


def test_two_models_never_share_cells(small_model, data_dir, tmp_path):
    other = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    kwargs = dict(dataset="mnist", attacks={"fgsm": [0.1]}, n_test=3, n_clean=100,
                  data_dir=data_dir, out=tmp_path)
    first = hrsbench.evaluate(small_model, **kwargs)
    second = hrsbench.evaluate(other, **kwargs)
    assert set(first["cell_key"]).isdisjoint(second["cell_key"])


def test_run_refuses_a_negative_strength_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr("hrsbench.engine.runner.obtain_model",
                        lambda *a, **k: pytest.fail("trained before refusing"))
    config = {"dataset": "mnist", "epochs": 1, "n_test": 1, "defenses": [{"name": "base"}],
              "attacks": [{"name": "pgd", "strengths": [-0.1]}]}
    with pytest.raises(HrsbenchError, match="strength"):
        hrsbench.run(config, out=tmp_path / "out")
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_run_refuses_a_bad_device_and_executor_options(tmp_path):
    config = {"dataset": "mnist", "epochs": 1, "n_test": 1, "defenses": [{"name": "base"}]}
    with pytest.raises(HrsbenchError, match="not a device"):
        hrsbench.run(config, out=tmp_path, device="gpu")
    with pytest.raises(HrsbenchError, match="needs --executor ray"):
        hrsbench.run(config, out=tmp_path, gpus_per_task=0.5, device="cuda")


# ---------------------------------------------------------------- the module defense


def small_net() -> nn.Module:
    """The factory the module-defense tests name (``tests.test_api:small_net``)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def test_module_defense_attacks_a_checkpoint_and_trains_nothing(small_model, data_dir,
                                                                 tmp_path, monkeypatch):
    checkpoint = tmp_path / "weights.pt"
    torch.save(small_model.state_dict(), checkpoint)
    monkeypatch.setattr("hrsbench.plugin.training.Trainer.fit",
                        lambda *a, **k: pytest.fail("the module defense trained"))
    config = {"dataset": "mnist", "n_test": 3, "n_clean": 200, "repeats": 1,
              "defenses": [{"name": "module", "params": {
                  "factory": "tests.test_api:small_net", "checkpoint": str(checkpoint)}}],
              "attacks": [{"name": "fgsm", "strengths": [0.1]}]}
    done = hrsbench.run(config, out=tmp_path / "out", data_dir=data_dir,
                        cache_dir=tmp_path / "cache", reports=False)
    clean = next(r for r in done.lines if r["attack"] == "none")
    direct = hrsbench.evaluate(small_model, dataset="mnist", attacks={"fgsm": [0.1]}, n_test=3,
                               n_clean=200, targeted=True, data_dir=data_dir)
    assert clean["clean_accuracy"] == direct["clean_accuracy"].iloc[0]
    assert clean["params"]["checkpoint_sha256"]  # the file's hash is part of the model
    # another checkpoint at the same path is another model
    torch.save(small_net().state_dict(), checkpoint)
    again = hrsbench.run(config, out=tmp_path / "out2", data_dir=data_dir,
                         cache_dir=tmp_path / "cache", reports=False)
    assert {r["model_key"] for r in again.lines}.isdisjoint({r["model_key"] for r in done.lines})


@pytest.mark.parametrize("params, words", [
    ({"factory": "tests.test_api:no_such_function"}, "AttributeError"),
    ({"factory": "no_such_package.nets:net"}, "ModuleNotFoundError"),
    ({"factory": "tests.test_api"}, "package.module:function"),
    ({"checkpoint": "missing.pt"}, "no such file"),
    ({"factory": "tests.test_api:wrong_net"}, "does not fit the model"),
])
def test_module_defense_mistakes_are_one_line(tmp_path, small_model, params, words):
    checkpoint = tmp_path / "weights.pt"
    torch.save(small_model.state_dict(), checkpoint)
    full = {"factory": "tests.test_api:small_net", "checkpoint": str(checkpoint), **params}
    config = {"dataset": "mnist", "n_test": 1, "defenses": [{"name": "module", "params": full}]}
    with pytest.raises(HrsbenchError, match=words) as e:
        hrsbench.run(config, out=tmp_path / "out")
    assert "\n" not in str(e.value)


def wrong_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 5))


def test_a_cluster_that_does_not_answer_is_refused_at_once_leaving_nothing(tmp_path):
    """A wrong --ray-address is one line naming it, within seconds, and no output folder."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", "from hrsbench.cli import app; app()", "run", "quick", "--out",
         str(out), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - start
    assert proc.returncode == 1 and took < 30, (took, proc.stderr)
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"127.0.0.1:{port}" in error[0] and "refused" in error[0]
    assert not out.exists()


def test_a_run_refused_after_taking_its_folder_removes_it(tmp_path, monkeypatch):
    """A refusal raised once the folder is held (here: the data check) leaves no folder or lock
    behind; a folder that existed before is left as it was."""
    def refuse(*args, **kwargs):
        raise HrsbenchError("refused for the test")

    monkeypatch.setattr("hrsbench.api.check_data", refuse)
    config = {"dataset": "mnist", "epochs": 1, "n_test": 1, "defenses": [{"name": "base"}]}
    with pytest.raises(HrsbenchError, match="refused for the test"):
        hrsbench.run(config, out=tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with pytest.raises(HrsbenchError):
        hrsbench.run(config, out=tmp_path / "old")
    assert (tmp_path / "old").is_dir()


def test_a_run_expands_its_cells_and_reads_its_test_split_once(tmp_path, data_dir, monkeypatch):
    """The checks before a run expand the cells and read the test split; the run reuses both
    instead of doing the work again."""
    from hrsbench.engine import cells as cells_module
    from hrsbench.plugin.dataset import Dataset

    reads: list[str] = []
    load = Dataset.load

    def counted_load(self, split, *args, **kwargs):
        reads.append(split)
        return load(self, split, *args, **kwargs)

    expansions = []
    expand = cells_module.expand

    def counted_expand(*args, **kwargs):
        expansions.append(1)
        return expand(*args, **kwargs)

    monkeypatch.setattr(Dataset, "load", counted_load)
    monkeypatch.setattr(cells_module, "expand", counted_expand)
    monkeypatch.setattr("hrsbench.engine.runner.expand", counted_expand)
    config = {"dataset": "mnist", "epochs": 1, "n_train": 300, "n_clean": 50, "n_test": 1,
              "repeats": 1, "defenses": [{"name": "base"}],
              "attacks": [{"name": "fgsm", "strengths": [0.1]}]}
    run = hrsbench.run(config, out=tmp_path / "out", cache_dir=tmp_path / "cache",
                       data_dir=data_dir, reports=False)
    assert len(run.lines) == 2
    assert sorted(reads) == ["test", "train"] and len(expansions) == 1
