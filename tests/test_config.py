"""Run configs: strict keys, grids and cells."""

from __future__ import annotations

import pytest

from hrsbench import HrsbenchError
from hrsbench.engine.cells import expand, grid
from hrsbench.engine.config import load_config, parse_config, presets
from hrsbench.plugin.registry import registry


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
                     "grid": {"max_iter": [5, 10]}}],
    })
    cells = expand(cfg, registry())
    # One clean cell + 2 strengths × 2 iteration counts; EOT is dropped for the deterministic base.
    assert len(cells) == 1 + 4
    assert {c.setting for c in cells} == {"none", "whitebox"}
    from hrsbench.engine.cells import Cell

    for c in cells:
        assert Cell.from_dict(c.to_dict()).key == c.key
    assert len({c.key for c in cells}) == len(cells)
    assert len({c.model_key for c in cells}) == 1


def test_a_deterministic_defense_asked_only_for_adaptive_settings_gets_its_whitebox_cell():
    """EOT on the base is its white-box attack: with only "eot" asked for, the white-box cell
    runs, so its line can stand in and the stochastic defenses' Δd has a base to compare with."""
    cfg = parse_config({
        "defenses": [{"name": "base"}, {"name": "gaussian"}],
        "attacks": [{"name": "pgd", "strengths": [0.1], "settings": ["eot"]}],
    })
    by_defense = {}
    for c in expand(cfg, registry()):
        by_defense.setdefault(c.defense, set()).add(c.setting)
    assert by_defense == {"base": {"none", "whitebox"}, "gaussian": {"none", "eot"}}


def test_quick_preset_loads():
    cfg, source = load_config(None)
    assert source == "preset quick" and cfg.dataset == "mnist"
    with pytest.raises(HrsbenchError, match="no config file or preset named 'nope'"):
        load_config("nope")


@pytest.mark.parametrize("name", presets())
def test_every_preset_expands_and_its_reference_loads(name: str) -> None:
    """A shipped preset that names an unknown plugin, parameter or reference would only fail
    when a user runs it: expand every one, and load the paper numbers it compares with."""
    from hrsbench.report.reference import load_reference

    cfg, _ = load_config(name)
    assert expand(cfg, registry())
    if cfg.reference is not None:
        assert load_reference(cfg.reference).entries


BASE = [{"name": "base"}]
PGD = {"name": "pgd", "strengths": [0.1]}


@pytest.mark.parametrize(("data", "message"), [
    ({"n_test": -3}, "n_test must be ≥ 1, not -3"),
    ({"n_test": 0}, "n_test must be ≥ 1, not 0"),
    ({"n_test": "5"}, 'n_test must be an integer, not "5"'),
    ({"n_test": 2.0}, "n_test must be an integer, not 2.0"),
    ({"n_train": 0}, "n_train must be ≥ 1, not 0"),
    ({"epochs": -1}, "epochs must be ≥ 1, not -1"),
    ({"epochs": "two"}, 'epochs must be an integer, not "two"'),
    ({"repeats": 0}, "repeats must be ≥ 1, not 0"),
    ({"batch_size": 0}, "batch_size must be ≥ 1, not 0"),
    ({"targeted": 1}, "targeted must be true or false, not 1"),
    ({"n_test": 30, "n_clean": 20, "attacks": [PGD]}, r"n_test \(30\) exceeds n_clean \(20\)"),
    ({"attacks": [{**PGD, "strengths": 0.25}]},
     r"attacks\[0\] \(pgd\)\.strengths must be a list, e\.g\. strengths = \[0\.25\]"),
    ({"attacks": [{**PGD, "strengths": ["big"]}]}, r"strengths\[0\] must be a number, not \"big\""),
    ({"attacks": [{**PGD, "strengths": [-0.25]}]}, r"strengths\[0\] must be ≥ 0, not -0\.25"),
    ({"attacks": [{**PGD, "strengths": [float("nan")]}]}, "must be a finite number, not nan"),
    ({"attacks": [{**PGD, "strengths": [float("inf")]}]}, "must be a finite number, not inf"),
    ({"attacks": [{"name": "pgd"}]}, r"attacks\[0\] \(pgd\)\.strengths is empty"),
    ({"attacks": [{**PGD, "settings": "whitebox"}]},
     r'settings must be a list, e\.g\. settings = \["whitebox"\]'),
    ({"attacks": [{**PGD, "params": {"max_iter": float("inf")}}]}, "max_iter must be a finite"),
    ({"defenses": "base"}, r"defenses must be a list of tables: write \[\[defenses\]\]"),
    ({"defenses": {"name": "base"}}, r"defenses must be a list of tables"),
    ({"defenses": []}, r"no \[\[defenses\]\] listed"),
    ({"defenses": [{"name": "hrs", "grid": {"channels": [4, 4]}, "params": {"channels": 4}}]},
     "'channels' is in both params and grid"),
    ({"defenses": [{"name": "dropout", "grid": {"test_rate": 0.1}}]},
     r"grid\.test_rate must be a list"),
    ({"defenses": [{"name": "dropout", "grid": {"test_rate": []}}]}, r"grid\.test_rate is empty"),
])
def test_bad_configs_are_one_line_errors(data: dict, message: str) -> None:
    with pytest.raises(HrsbenchError, match=message) as info:
        parse_config({"defenses": BASE, **data}, "cfg.toml")
    assert str(info.value).startswith("cfg.toml: ") and "\n" not in str(info.value)


def test_no_defenses_at_all():
    with pytest.raises(HrsbenchError, match=r"no \[\[defenses\]\] listed"):
        parse_config({"n_test": 3}, "cfg.toml")


def test_unreadable_config_files_are_one_line(tmp_path):
    with pytest.raises(HrsbenchError, match="is a directory"):
        load_config(tmp_path)
    latin = tmp_path / "latin.toml"
    latin.write_bytes('dataset = "mnïst"'.encode("latin-1"))
    with pytest.raises(HrsbenchError, match="is not UTF-8 text"):
        load_config(latin)
    broken = tmp_path / "broken.toml"
    broken.write_text("n_test = \n")
    with pytest.raises(HrsbenchError, match="invalid TOML"):
        load_config(broken)


def test_schema_describes_every_key():
    from hrsbench.engine.config import schema

    s = schema()
    assert {"n_test", "grad_samples", "batch_size", "threats", "defenses"} <= set(s["properties"])
    assert s["properties"]["n_test"]["minimum"] == 1
    assert "grid" in s["$defs"]["DefenseEntry"]["properties"]


def test_readme_config_parses_and_expands():
    """The README's config example is a working config, every key of RunConfig in it."""
    import re
    import tomllib
    from pathlib import Path

    from hrsbench.engine.config import RunConfig

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"## A run config.*?```toml\n(.*?)```", readme, re.S).group(1)
    data = tomllib.loads(block)
    # seed and seeds exclude each other: the example sets one and names the other in a comment
    assert set(data) - {"seed"} | {"seeds"} == set(RunConfig.__dataclass_fields__)
    assert "seeds = [" in block
    assert expand(parse_config(data, "README"), registry())


def test_threat_only_config_may_leave_n_test_above_n_clean():
    """n_test counts attacked images: with no [[attacks]] it is unused and not checked."""
    cfg = parse_config({"n_clean": 32, "defenses": BASE, "threats": [{"name": "reprogram"}]})
    assert cfg.n_test == 100


BASE_ONLY = {"defenses": [{"name": "base"}]}


def test_seed_is_a_one_seed_list_with_the_same_hash():
    one = parse_config({**BASE_ONLY, "seed": 3})
    listed = parse_config({**BASE_ONLY, "seeds": [3]})
    assert one.seeds == listed.seeds == [3] and listed.seed == 3
    assert one.hash == listed.hash
    assert parse_config(BASE_ONLY).seeds == [0]
    several = parse_config({**BASE_ONLY, "seeds": [0, 1, 2]})
    assert several.seed == 0 and several.hash != parse_config(BASE_ONLY).hash


@pytest.mark.parametrize(("preset", "expected"), [
    ("quick", "d7ff85943dd1fb1b"), ("mnist-paper-cpu", "43458794b03311bd"),
])
def test_hash_of_a_seed_config_is_pinned(preset: str, expected: str) -> None:
    """Configs written with ``seed`` keep the hash they had before ``seeds`` existed (in fp32,
    which the hash leaves out, as it was before ``precision`` existed)."""
    from hrsbench.api import with_precision

    assert with_precision(load_config(preset)[0], "fp32").hash == expected


@pytest.mark.parametrize(("seeds", "message"), [
    ({"seed": 1, "seeds": [1, 2]}, "give seed or seeds, not both"),
    ({"seeds": []}, "seeds is empty"),
    ({"seeds": [0, 2, 0]}, "seeds lists 0 more than once"),
    ({"seeds": [1, -1]}, r"seeds\[1\] must be ≥ 0, not -1"),
    ({"seeds": 3}, "seeds must be a list"),
    ({"seeds": [1.5]}, r"seeds\[0\] must be an integer"),
    ({"seed": -1}, "seed must be ≥ 0, not -1"),
    ({"seed": "3"}, 'seed must be an integer, not "3"'),
])
def test_bad_seeds_are_one_line_errors(seeds: dict, message: str) -> None:
    with pytest.raises(HrsbenchError, match=message) as e:
        parse_config({**BASE_ONLY, **seeds})
    assert "\n" not in str(e.value)


def test_seed_in_code_is_one_seed_and_replace_cannot_disagree():
    """``RunConfig(seed=N)`` reads as ``seeds = [N]``; ``seed`` is not a second field that
    ``dataclasses.replace`` could set apart from ``seeds``."""
    import dataclasses

    from hrsbench.engine.config import RunConfig, schema

    cfg = RunConfig(seed=4, defenses=parse_config(BASE_ONLY).defenses)
    assert cfg.seeds == [4] and cfg.seed == 4
    assert dataclasses.replace(cfg, seeds=[5]).seed == 5
    with pytest.raises(ValueError, match="give seed or seeds, not both"):
        dataclasses.replace(cfg, seed=5)
    assert schema()["properties"]["seed"]["minimum"] == 0


def test_cells_are_made_once_per_seed():
    attacks = [{"name": "pgd", "strengths": [0.1, 0.2]}]
    one = expand(parse_config({**BASE_ONLY, "attacks": attacks, "seed": 1}), registry())
    three = expand(parse_config({**BASE_ONLY, "attacks": attacks, "seeds": [1, 0, 2]}),
                   registry())
    assert len(three) == 3 * len(one) == 9
    assert {c.seed for c in three} == {0, 1, 2}
    assert len({c.model_key for c in three}) == 3 and len({c.key for c in three}) == 9
    # the seed-1 cells of the list are the cells of ``seed = 1``, keys included
    assert [c.key for c in three if c.seed == 1] == [c.key for c in one]
