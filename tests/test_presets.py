"""Every built-in preset's plugin parameters are literal values of their declared types (grid
axes under ``grid``), and every defense entry builds on the preset's dataset."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from hrsbench.engine.config import load_config, presets
from hrsbench.plugin.params import instantiate
from hrsbench.plugin.registry import load_registry

REGISTRY = load_registry()


def points(entry: Any) -> list[dict[str, Any]]:
    """The entry's parameter sets: literal params merged with each point of the grid."""
    axes = entry.grid or {}
    return [{**entry.params, **dict(zip(axes, combo, strict=True))}
            for combo in itertools.product(*axes.values())]


@pytest.mark.parametrize("name", presets())
def test_preset_parameters_validate_and_defenses_build(name):
    cfg, _ = load_config(name)
    dataset = REGISTRY.get("dataset", cfg.dataset)()
    for kind, entries in (("defense", cfg.defenses), ("attack", cfg.attacks),
                          ("threat", cfg.threats)):
        for entry in entries:
            plugins = [instantiate(REGISTRY.get(kind, entry.name), params, f"{name} {kind}")
                       for params in points(entry)]
            if kind == "defense":  # the first point builds; the rest differ in values only
                plugins[0].build(dataset)


def test_hrs_grid_sweeps_widths_as_lists():
    cfg, _ = load_config("mnist-paper-cpu")
    (hrs,) = [d for d in cfg.defenses if d.name == "hrs"]
    assert [p["channels"] for p in points(hrs)] == [[5, 5], [10, 10]]
