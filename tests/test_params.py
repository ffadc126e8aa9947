"""Plugin parameters are checked against their dataclass fields' type hints before any work,
each mistake in one line naming the parameter, the plugin and the fix."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import pytest

from hrsbench import Defense, HrsbenchError, base_model
from hrsbench.plugin.params import defaults, instantiate, parameters, validate
from hrsbench.plugin.registry import load_registry

REGISTRY = load_registry()
PGD = REGISTRY.get("attack", "pgd")


@dataclass
class Knn(Defense):
    name = "knn"
    k: int
    weight: float = 0.5
    label: str = "a"

    def build(self, dataset):
        return base_model(dataset.arch)


@pytest.mark.parametrize("value", [True, 2.5, "four", 4.0])
def test_an_int_parameter_takes_only_ints(value):
    with pytest.raises(HrsbenchError) as e:
        instantiate(PGD, {"max_iter": value}, "attack 'pgd'")
    message = str(e.value)
    assert message.startswith("attack 'pgd': parameter 'max_iter' of 'pgd' must be int, got ")
    assert "\n" not in message


def test_a_float_parameter_takes_an_int_as_a_float():
    attack = instantiate(PGD, {"step": 1}, "attack 'pgd'")
    assert attack.step == 1.0 and isinstance(attack.step, float)
    with pytest.raises(HrsbenchError, match=re.escape("'step' of 'pgd' must be float | None, "
                                                      "got true")):
        instantiate(PGD, {"step": True}, "attack 'pgd'")


def test_a_bool_parameter_takes_only_bools():
    with pytest.raises(HrsbenchError, match="'random_init' of 'pgd' must be bool, got 1"):
        instantiate(PGD, {"random_init": 1}, "attack 'pgd'")


def test_a_list_for_a_single_value_points_to_grid():
    with pytest.raises(HrsbenchError) as e:
        instantiate(PGD, {"max_iter": [20, 100]}, "attack 'pgd'")
    assert str(e.value) == (
        "attack 'pgd': parameter 'max_iter' of 'pgd' takes one int, got the list [20, 100]; "
        "to sweep it, move it under grid: grid = { max_iter = [20, 100] }")


def test_non_finite_numbers_are_refused():
    with pytest.raises(HrsbenchError, match="'test_rate' .* finite"):
        instantiate(REGISTRY.get("defense", "dropout"), {"test_rate": float("nan")}, "d")


def test_a_string_parameter_takes_only_strings():
    with pytest.raises(HrsbenchError, match="'split' of 'hrs' must be str, got 3"):
        instantiate(REGISTRY.get("defense", "hrs"), {"split": 3}, "defense 'hrs'")


def test_values_are_shown_as_written_in_toml():
    with pytest.raises(HrsbenchError, match="got \"four\""):
        instantiate(PGD, {"max_iter": "four"}, "attack 'pgd'")
    with pytest.raises(HrsbenchError, match='grid = { switch = \\["sample", "call"\\] }'):
        instantiate(REGISTRY.get("defense", "hrs"), {"switch": ["sample", "call"]}, "d")


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(HrsbenchError, match="unknown parameter 'batch_size' for 'pgd'; "
                                            "valid: max_iter, step, random_init"):
        instantiate(PGD, {"batch_size": 64}, "attack 'pgd'")


def test_required_parameter_is_marked_and_must_be_given():
    assert [(p.name, p.required) for p in parameters(Knn)] == [
        ("k", True), ("weight", False), ("label", False)]
    assert defaults(Knn) == {"weight": 0.5, "label": "a"}
    with pytest.raises(HrsbenchError, match="'knn' needs the parameter 'k' \\(it has no default"):
        validate(Knn, {}, "defense 'knn'")
    assert validate(Knn, {"k": 3}, "d") == {"k": 3, "weight": 0.5, "label": "a"}


def test_plugins_own_checks_are_one_line():
    with pytest.raises(HrsbenchError, match="defense 'dropout': bad parameters for 'dropout': "
                                            "a dropout rate must be in \\[0, 1\\)"):
        instantiate(REGISTRY.get("defense", "dropout"), {"test_rate": 1.0}, "defense 'dropout'")


def test_batch_size_is_no_attack_parameter():
    """An execution option: the engine sets it on the instance; it never enters params or keys."""
    for name in REGISTRY.names("attack"):
        cls = REGISTRY.get("attack", name)
        assert "batch_size" not in {f.name for f in fields(cls)}, name
