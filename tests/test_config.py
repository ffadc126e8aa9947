"""Run configs: strict keys, grids and cells."""

from __future__ import annotations

import pytest

from hrsbench import HrsbenchError
from hrsbench.cells import expand, grid
from hrsbench.config import load_config, parse_config, presets
from hrsbench.plugins import registry


def test_misspelt_key_suggests_the_right_one():
    with pytest.raises(HrsbenchError, match="unknown config key 'n_tset'.*'n_test'"):
        parse_config({"n_tset": 3, "defenses": [{"name": "base"}]}, "cfg.toml")


def test_misspelt_attack_key_names_the_entry():
    data = {"defenses": [{"name": "base"}], "attacks": [{"name": "pgd", "strenghts": [0.1]}]}
    with pytest.raises(HrsbenchError, match=r"attacks\[0\].*'strenghts'.*'strengths'"):
        parse_config(data)


def test_unknown_setting_and_plugin_parameter():
    with pytest.raises(HrsbenchError, match="unknown setting 'greybox'"):
        parse_config({"defenses": [{"name": "base"}],
                      "attacks": [{"name": "pgd", "strengths": [0.1], "settings": ["greybox"]}]})
    cfg = parse_config({"defenses": [{"name": "base"}],
                        "attacks": [{"name": "pgd", "strengths": [0.1], "params": {"iters": 3}}]})
    with pytest.raises(HrsbenchError, match="unknown parameter 'iters' for 'pgd'; valid: max_iter"):
        expand(cfg, registry())


def test_grid_is_a_product_of_list_values():
    assert grid({"a": [1, 2], "b": "x", "c": [3, 4]}) == [
        {"a": 1, "b": "x", "c": 3}, {"a": 1, "b": "x", "c": 4},
        {"a": 2, "b": "x", "c": 3}, {"a": 2, "b": "x", "c": 4},
    ]


def test_cells_cover_the_grid_and_are_serialisable():
    cfg = parse_config({
        "defenses": [{"name": "base"}],
        "attacks": [{"name": "pgd", "strengths": [0.1, 0.2], "settings": ["whitebox", "eot"],
                     "params": {"max_iter": [5, 10]}}],
    })
    cells = expand(cfg, registry())
    # One clean cell + 2 strengths × 2 iteration counts; EOT is dropped for the deterministic base.
    assert len(cells) == 1 + 4
    assert {c.setting for c in cells} == {"none", "whitebox"}
    from hrsbench.cells import Cell

    for c in cells:
        assert Cell.from_dict(c.to_dict()).key == c.key
    assert len({c.key for c in cells}) == len(cells)
    assert len({c.model_key for c in cells}) == 1


def test_quick_preset_loads():
    cfg, source = load_config(None)
    assert source == "preset quick" and cfg.dataset == "mnist"
    with pytest.raises(HrsbenchError, match="no config file or preset named 'nope'"):
        load_config("nope")


@pytest.mark.parametrize("name", presets())
def test_every_preset_expands_and_its_reference_loads(name: str) -> None:
    """A shipped preset that names an unknown plugin, parameter or reference would only fail
    when a user runs it: expand every one, and load the paper numbers it compares with."""
    from hrsbench.reference import load_reference

    cfg, _ = load_config(name)
    assert expand(cfg, registry())
    if cfg.reference is not None:
        assert load_reference(cfg.reference).entries
