"""The plugin API as the engine uses it: every registered attack runs on a tiny model at the
batch size the engine sets, and an exception inside a plugin's own code stops a run with one
line naming the plugin, its package and the method."""

from __future__ import annotations

import sys
import textwrap
import types

import numpy as np
import pytest

from hrsbench import HrsbenchError
from hrsbench.engine.config import parse_config
from hrsbench.engine.runner import run
from hrsbench.plugin.params import defaults, instantiate
from hrsbench.plugin.registry import load_registry
from tests.toys import N_CLASSES, SHAPE, Prototype, one_thread, toy_data

REGISTRY = load_registry()
#: Small schedules: every attack runs in well under a second on the toy model.
FAST = {"max_iter": 3, "binary_search_steps": 1, "eot_samples": 2, "restarts": 1}


@pytest.mark.parametrize("name", REGISTRY.names("attack"))
def test_every_registered_attack_runs_once_on_a_tiny_model(name):
    """A smoke test in the style of torchattacks' suite: instantiate from parameters, set the
    batch size as the engine does, craft, and get valid images back."""
    from hrsbench import Classifier

    cls = REGISTRY.get("attack", name)
    attack = instantiate(cls, {k: v for k, v in FAST.items() if k in defaults(cls)}, name)
    attack.batch_size = 4  # the engine sets the run's batch size; 10 images make 3 batches
    x, y = toy_data(10)
    strength = 0.1 if cls.strength == "eps" else 0.0
    with one_thread():
        adv = attack.generate(Classifier(Prototype(), SHAPE, N_CLASSES), x, y, strength,
                              (y + 1) % N_CLASSES)
    assert adv.shape == x.shape and adv.dtype == np.float32
    assert np.isfinite(adv).all() and adv.min() >= 0 and adv.max() <= 1
    if cls.strength == "eps":
        assert np.abs(adv - x).max() <= strength + 1e-6


SPY = """
    from dataclasses import dataclass
    import numpy as np
    from hrsbench import Attack, Defense, base_model, hookimpl

    SEEN = []

    @dataclass
    class Spy(Attack):
        name = "spy"
        def generate(self, classifier, x, y, strength, targets=None):
            SEEN.append((self.batch_size, len(x)))
            return x

    @dataclass
    class Fragile(Defense):
        name = "fragile"
        where: str = "fit"
        def build(self, dataset):
            if self.where == "build":
                raise ValueError("cannot build")
            return base_model(dataset.arch)
        def fit(self, model, trainer, dataset):
            raise RuntimeError("diverged at epoch 1")

    FITS = []

    @dataclass
    class Counted(Defense):
        name = "counted"
        def build(self, dataset):
            return base_model(dataset.arch)
        def fit(self, model, trainer, dataset):
            FITS.append(trainer.key)
            super().fit(model, trainer, dataset)

    @hookimpl
    def register_attacks(register):
        register(Spy)

    @hookimpl
    def register_defenses(register):
        register(Fragile)
        register(Counted)
"""


def _registry_with_spy(version: str = "0.3", mod: types.ModuleType | None = None
                       ) -> tuple[object, types.ModuleType]:
    """The built-ins plus the spy module (as ``version``), importable by name as a
    dataclass's module must be."""
    if mod is None:
        mod = types.ModuleType("spy_plugin")
        sys.modules[mod.__name__] = mod
        exec(textwrap.dedent(SPY), mod.__dict__)
    reg = load_registry()
    reg.add_module(mod, "spy-pkg", version)
    return reg, mod


def _config(defense: dict, batch_size: int = 4) -> object:
    return parse_config({
        "n_train": 20, "n_test": 3, "n_clean": 20, "epochs": 1, "repeats": 1, "grad_samples": 0,
        "batch_size": batch_size, "targeted": False, "defenses": [defense],
        "attacks": [{"name": "spy", "strengths": [0.1]}],
    })


def test_the_run_batch_size_reaches_attacks_but_no_key(tmp_path, data_dir):
    reg, mod = _registry_with_spy()
    lines = run(_config({"name": "base"}, batch_size=2), tmp_path / "a", data_dir=data_dir,
                reg=reg)
    assert mod.SEEN == [(2, 2), (2, 1)]  # 3 images in batches of 2, told to the attack
    again = run(_config({"name": "base"}, batch_size=3), tmp_path / "a", data_dir=data_dir,
                reg=reg)
    assert mod.SEEN == [(2, 2), (2, 1)]  # another batch size finds the finished cells
    assert [r["cell_key"] for r in again] == [r["cell_key"] for r in lines]


@pytest.mark.parametrize("where,method,error", [("fit", "fit", "RuntimeError: diverged"),
                                                ("build", "build", "ValueError: cannot build")])
def test_exception_in_defense_code_stops_the_run_in_one_line(tmp_path, data_dir, where, method,
                                                             error):
    reg, _ = _registry_with_spy()
    cfg = _config({"name": "fragile", "params": {"where": where}})
    with pytest.raises(HrsbenchError) as e:
        run(cfg, tmp_path / "out", data_dir=data_dir, reg=reg)
    message = str(e.value)
    assert "\n" not in message
    assert f"defense 'fragile' (package 'spy-pkg 0.3') failed in {method}(): {error}" in message
    assert not (tmp_path / "out" / "results.jsonl").exists() or not any(
        line.strip() for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines())


def test_a_new_plugin_version_trains_afresh(tmp_path, data_dir):
    """What docs/plugin-reference.md tells authors: bump the version to invalidate cached
    models; the same version reuses them."""
    reg, mod = _registry_with_spy("0.3")
    cfg = _config({"name": "counted"})
    run(cfg, tmp_path / "a", data_dir=data_dir, cache_dir=tmp_path / "cache", reg=reg)
    run(cfg, tmp_path / "b", data_dir=data_dir, cache_dir=tmp_path / "cache", reg=reg)
    assert len(mod.FITS) == 1  # the second run found the model in the cache
    newer, _ = _registry_with_spy("0.4", mod)
    lines = run(cfg, tmp_path / "c", data_dir=data_dir, cache_dir=tmp_path / "cache", reg=newer)
    assert len(mod.FITS) == 2 and mod.FITS[0] != mod.FITS[1]
    assert {r["defense_version"] for r in lines} == {"0.4"}


def test_a_plugin_exception_keeps_its_traceback_behind_the_one_line(tmp_path, data_dir):
    """The one line hides the traceback; ``--debug`` prints the chained cause, which must
    reach the caller through the executor as the exception the plugin raised."""
    reg, _ = _registry_with_spy()
    cfg = _config({"name": "fragile", "params": {"where": "build"}})
    with pytest.raises(HrsbenchError) as e:
        run(cfg, tmp_path / "out", data_dir=data_dir, reg=reg)
    chain, cause = [], e.value.__cause__
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__
    assert any(isinstance(c, ValueError) and "cannot build" in str(c) for c in chain)
    assert e.value.__cause__.__traceback__ is not None
