"""One vocabulary of attack settings: the built-in four, and a toy setting a test plugin adds that
then appears in cells, lines, the leaderboard, ``hrsbench plugins`` and the sanity checks with no
engine change."""

from __future__ import annotations

import pytest

from hrsbench import HrsbenchError
from hrsbench.engine.cells import expand
from hrsbench.engine.config import parse_config
from hrsbench.engine.runner import run
from hrsbench.plugin.catalog import defense_settings, setting_help
from hrsbench.report.frame import adaptive
from hrsbench.report.leaderboard import write_run_reports
from hrsbench.report.sanity import annotate
from hrsbench.results.vocabulary import (
    BUILTIN_NAMES,
    Crafts,
    SettingSpec,
    is_adaptive,
    register_setting,
    setting,
    settings,
    unregister_setting,
)

from .toys import registry_with

TOY = SettingSpec("surrogate-eot", "the surrogate, gradients averaged over eot_samples draws",
                  crafts=Crafts.SURROGATE, eot=True)


@pytest.fixture
def toy_registry():
    reg = registry_with(settings=[TOY])
    yield reg
    unregister_setting(TOY.name)


def test_the_builtin_settings_and_what_each_means():
    assert BUILTIN_NAMES == ("whitebox", "eot", "fixed", "expectation")
    assert [setting(n).crafts for n in BUILTIN_NAMES] == [
        Crafts.DEPLOYED, Crafts.DEPLOYED, Crafts.SURROGATE, Crafts.EXPECTATION]
    assert [n for n in BUILTIN_NAMES if setting(n).eot] == ["eot"]
    assert [is_adaptive(n) for n in (*BUILTIN_NAMES, "none")] == [False, True, True, True, False]
    assert is_adaptive("a-plugin-setting-not-installed-here")
    assert setting("expectation").applies(True, True) and not setting("expectation").applies(
        True, False)
    assert setting("whitebox").applies(False, False) and not setting("eot").applies(False, False)


def test_an_unknown_setting_is_one_line_naming_the_choices():
    with pytest.raises(HrsbenchError, match="unknown attack setting 'greybox'; choose from "
                                            "whitebox, eot, fixed, expectation"):
        setting("greybox")
    with pytest.raises(HrsbenchError, match="unknown setting 'greybox'"):
        parse_config({"dataset": "mnist", "defenses": [{"name": "base"}],
                      "attacks": [{"name": "fgsm", "strengths": [0.1],
                                   "settings": ["greybox"]}]})


def test_a_name_taken_differently_is_refused_and_builtins_stay():
    with pytest.raises(HrsbenchError, match="registered twice"):
        register_setting(SettingSpec("eot", "something else"))
    with pytest.raises(HrsbenchError, match="built in"):
        unregister_setting("fixed")
    register_setting(setting("eot"))  # the same spec again: no-op
    assert list(settings())[:4] == list(BUILTIN_NAMES)


def test_a_plugin_setting_reaches_cells_lines_tables_and_sanity(toy_registry, tmp_path,
                                                                data_dir):
    reg = toy_registry
    assert reg.setting_packages == {TOY.name: "test-plugins"}
    assert setting_help()[TOY.name] == TOY.help
    assert TOY.name in defense_settings(reg.get("defense", "gaussian"))
    assert TOY.name not in defense_settings(reg.get("defense", "base"))

    cfg = parse_config({
        "dataset": "mnist", "n_train": 500, "n_clean": 100, "n_test": 2, "epochs": 1,
        "repeats": 2, "eot_samples": 3,
        "defenses": [{"name": "base"}, {"name": "gaussian", "params": {"init": 0.2,
                                                                      "inner": 0.1}}],
        "attacks": [{"name": "fgsm", "strengths": [0.3], "settings": ["whitebox", TOY.name]}],
    })
    cells = [c for c in expand(cfg, reg) if c.attack == "fgsm"]
    assert sorted((c.defense, c.setting, c.eot_samples) for c in cells) == [
        ("base", "whitebox", 1), ("gaussian", TOY.name, 3), ("gaussian", "whitebox", 1)]

    lines = run(cfg, tmp_path, data_dir=data_dir, cache_dir=tmp_path / "cache", reg=reg)
    toy = [r for r in lines if r["setting"] == TOY.name]
    assert len(toy) == 1 and toy[0]["eot_samples"] == 3 and toy[0]["n_examples"] == 2 * 9
    assert adaptive(toy[0]) and not adaptive(next(r for r in lines if r["setting"] == "whitebox"))

    write_run_reports(tmp_path)
    assert TOY.name in (tmp_path / "leaderboard.md").read_text()
    verdicts = {r["setting"]: r["sanity"] for r in annotate(lines) if r["defense"] == "gaussian"}
    assert set(verdicts) == {"none", "whitebox", TOY.name} and all(verdicts.values())


def test_a_plugin_registering_something_else_is_refused():
    with pytest.raises(HrsbenchError, match="must register SettingSpec objects"):
        registry_with(settings=["surrogate-eot"])
