"""The pipeline end to end on a small MNIST subset: lines, resume, interruption, corruption."""

from __future__ import annotations

import json
import shutil
import types
from dataclasses import dataclass

import numpy as np
import pytest

from hrsbench import Attack, HrsbenchError, hookimpl
from hrsbench.engine.config import parse_config
from hrsbench.engine.runner import run
from hrsbench.plugin.registry import load_registry
from hrsbench.results.migrate import V1_REQUIRED as REQUIRED
from hrsbench.results.store import ResultsWarning, read_lines

SMALL = {
    "dataset": "mnist", "n_train": 2000, "n_test": 2, "n_clean": 200, "epochs": 2, "repeats": 2,
    "defenses": [{"name": "base"}],
    "attacks": [{"name": "fgsm", "strengths": [0.1, 0.3]},
                {"name": "flaky", "strengths": [0.1, 0.2]}],
}


@dataclass
class Flaky(Attack):
    """A random-sign attack that can be made to raise, to simulate a kill mid-run."""

    name = "flaky"
    def generate(self, classifier, x, y, strength, targets=None):
        if strength == FLAKY.fail_at:
            raise KeyboardInterrupt
        return np.clip(x + strength * np.sign(np.random.randn(*x.shape)), 0, 1).astype(np.float32)


FLAKY = types.SimpleNamespace(fail_at=None)


@pytest.fixture
def reg():
    registry = load_registry()
    mod = types.ModuleType("flaky_plugin")

    @hookimpl
    def register_attacks(register):
        register(Flaky)

    mod.register_attacks = register_attacks
    registry.add_module(mod, "test-plugins", "0")
    FLAKY.fail_at = None
    return registry


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory, data_dir):
    """One trained model serves the module's tests; training is what they would repeat."""
    cache = tmp_path_factory.mktemp("runner-cache")
    cfg = parse_config({**SMALL, "attacks": []})
    run(cfg, tmp_path_factory.mktemp("warm"), data_dir=data_dir, cache_dir=cache)
    return cache


def go(reg, out, data_dir, cache=None, **overrides):
    cfg = parse_config({**SMALL, **overrides})
    return run(cfg, out, data_dir=data_dir, reg=reg, cache_dir=cache)


def test_lines_carry_the_schema(reg, tmp_path, data_dir, shared_cache):
    lines = go(reg, tmp_path, data_dir, shared_cache)
    assert len(lines) == 5  # clean + 2 fgsm + 2 flaky
    for line in lines:
        assert all(k in line for k in REQUIRED)
        assert line["config_hash"] and line["hrsbench_version"]
    attacked = [r for r in lines if r["attack"] == "fgsm"]
    assert all(r["n_examples"] == 2 * 9 for r in attacked)  # each image towards 9 targets
    assert all(r["linf"] <= r["attack_strength"] + 1e-6 for r in attacked)
    assert 0.3 < lines[0]["clean_accuracy"] <= 1.0  # well above chance after 32 steps
    assert [r.row() for r in read_lines(tmp_path / "results.jsonl")] == lines


def test_rerun_recomputes_nothing(reg, tmp_path, data_dir, shared_cache, monkeypatch):
    first = go(reg, tmp_path, data_dir, shared_cache)
    from hrsbench.plugin.dataset import Dataset

    monkeypatch.setattr(Dataset, "load", lambda *a, **k: pytest.fail("rerun loaded data"))
    monkeypatch.setattr("hrsbench.engine.runner.obtain_model",
                        lambda *a: pytest.fail("rerun trained"))
    assert go(reg, tmp_path, data_dir, shared_cache) == first


def test_interrupted_run_keeps_finished_lines_and_resumes(reg, tmp_path, data_dir, shared_cache):
    FLAKY.fail_at = 0.2
    with pytest.raises(KeyboardInterrupt):
        go(reg, tmp_path, data_dir, shared_cache)
    kept = read_lines(tmp_path / "results.jsonl")
    assert [r.threat.name for r in kept] == ["none", "fgsm", "fgsm", "flaky"]
    FLAKY.fail_at = None
    lines = go(reg, tmp_path, data_dir, shared_cache)
    assert len(lines) == 5
    assert read_lines(tmp_path / "results.jsonl")[:4] == kept  # nothing redone


def test_torn_last_line_is_dropped_and_redone(reg, tmp_path, data_dir, shared_cache):
    lines = go(reg, tmp_path, data_dir, shared_cache)
    path = tmp_path / "results.jsonl"
    text = path.read_text().splitlines(keepends=True)
    path.write_text("".join(text[:-1]) + text[-1][:20])  # a write killed half way
    with pytest.warns(ResultsWarning, match="last line is incomplete"):
        again = go(reg, tmp_path, data_dir, shared_cache)
    assert [r["cell_key"] for r in again] == [r["cell_key"] for r in lines]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_corrupt_checkpoint_fails_without_losing_results(reg, tmp_path, data_dir,
                                                         shared_cache, isolated_cache):
    shutil.copytree(shared_cache, isolated_cache)
    go(reg, tmp_path, data_dir, attacks=[])
    before = (tmp_path / "results.jsonl").read_bytes()
    for ckpt in isolated_cache.glob("*.pt"):
        ckpt.write_bytes(b"garbage")
    with pytest.raises(HrsbenchError, match="corrupt checkpoint"):
        go(reg, tmp_path, data_dir, attacks=[{"name": "fgsm", "strengths": [0.05]}])
    assert (tmp_path / "results.jsonl").read_bytes() == before


def test_model_is_obtained_once_for_all_cells(reg, tmp_path, data_dir, shared_cache,
                                              monkeypatch):
    import hrsbench.engine.runner as runner

    calls = []
    real = runner.obtain_model
    monkeypatch.setattr(runner, "obtain_model", lambda *a: calls.append(1) or real(*a))
    lines = go(reg, tmp_path, data_dir, shared_cache)
    assert len(calls) == 1 and len({r["model_key"] for r in lines}) == 1
    # The model's file, and the base's standard training that SAP would share.
    assert len(list(shared_cache.glob("*.pt"))) == 2
    assert not list(shared_cache.glob("*.partial.pt"))


@pytest.mark.parametrize("targeted", [True, False])
def test_lines_carry_per_example_outcomes(reg, tmp_path, data_dir, shared_cache, targeted):
    from hrsbench.results.outcomes import decode_counts

    lines = go(reg, tmp_path, data_dir, shared_cache, targeted=targeted,
               attacks=[{"name": "fgsm", "strengths": [0.3]}], repeats=3)
    clean, attacked = lines
    correct = decode_counts(clean["clean_correct"])
    assert len(correct) == clean["n_clean"] and correct.max() <= 3
    assert correct.mean() / 3 == pytest.approx(clean["clean_accuracy"])
    wins = decode_counts(attacked["successes"])
    pick = decode_counts(attacked["successes_pick"])
    assert len(wins) == attacked["n_examples"] == (18 if targeted else 2)
    assert (pick <= wins).all() and (wins - pick <= 2).all() and pick.max() <= 1  # 1 + 2 draws
    if targeted:
        assert wins.mean() / 3 == pytest.approx(attacked["attack_success_rate"])
    else:  # a deterministic model: every draw has the same denominator
        denominator = decode_counts(attacked["clean_correct"]).sum()
        assert wins.sum() / max(denominator, 1) == pytest.approx(attacked["attack_success_rate"])
