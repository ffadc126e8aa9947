"""The documented third-party plugin works end to end through the engine."""

from __future__ import annotations

import numpy as np

from hrsbench import Classifier
from hrsbench.engine.config import parse_config
from hrsbench.engine.runner import run
from hrsbench.plugin.registry import load_registry
from tests.test_plugins import install_example


def test_example_defense_runs_end_to_end(tmp_path, monkeypatch, data_dir):
    install_example(tmp_path, monkeypatch)
    reg = load_registry()
    cfg = parse_config({
        "n_train": 500, "n_test": 1, "n_clean": 100, "epochs": 1, "repeats": 3,
        "defenses": [{"name": "noisy-input", "grid": {"width": [0.1, 0.3]}}],
        "attacks": [{"name": "fgsm", "strengths": [0.2], "settings": ["whitebox", "fixed"]}],
    })
    lines = run(cfg, tmp_path / "out", data_dir=data_dir, reg=reg)
    assert {(r["strength"], r["setting"]) for r in lines if r["attack"] == "fgsm"} == {
        (0.1, "whitebox"), (0.1, "fixed"), (0.3, "whitebox"), (0.3, "fixed")}
    assert all(r["clean_accuracy_std"] >= 0 for r in lines)


def test_example_is_stochastic_and_its_surrogate_is_not(tmp_path, monkeypatch):
    install_example(tmp_path, monkeypatch)
    reg = load_registry()
    defense = reg.get("defense", "noisy-input")(width=0.2)
    dataset = reg.get("dataset", "mnist")()
    model = defense.build(dataset)
    x = np.random.rand(4, 1, 28, 28).astype(np.float32)
    noisy = Classifier(model, x.shape[1:])
    fixed = Classifier(defense.surrogate(model), x.shape[1:])
    assert not np.allclose(noisy.predict(x), noisy.predict(x))
    np.testing.assert_array_equal(fixed.predict(x), fixed.predict(x))
