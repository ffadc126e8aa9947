"""What `hrsbench plugins` tells a newcomer: parameters with required ones marked, the settings,
threats, name clashes and loading warnings."""

from __future__ import annotations

import sys
import textwrap
import types

from typer.testing import CliRunner

from hrsbench.plugin.catalog import describe_parameters, rows, setting_help
from hrsbench.plugin.registry import Registry, load_registry
from hrsbench.results.vocabulary import BUILTIN_NAMES

SOURCE = """
    from dataclasses import dataclass
    from hrsbench import Defense, base_model, hookimpl
    @dataclass
    class Knn(Defense):
        name = "knn"
        strength = "k"
        k: int
        weight: float = 0.5
        sizes: tuple[int, ...] = (3, 3)
        def build(self, dataset):
            return base_model(dataset.arch)
    @hookimpl
    def register_defenses(register):
        register(Knn)
"""


def _module(name: str, source: str) -> types.ModuleType:
    """A plugin module from source, importable by name as a dataclass's module must be."""
    mod = types.ModuleType(f"catalog_test_{name}")
    sys.modules[mod.__name__] = mod
    exec(textwrap.dedent(source), mod.__dict__)
    return mod


def test_required_parameters_show_as_required_and_tuples_as_toml_lists():
    reg = Registry()
    reg.add_module(_module("knn", SOURCE), "knn-pkg", "2.0")
    text = describe_parameters(reg.get("defense", "knn"))
    assert text == "k: int (required) (strength), weight=0.5, sizes=[3, 3]"


def test_clashing_names_are_listed_with_both_packages():
    reg = Registry()
    reg.add_module(_module("a", SOURCE), "pkg-a", "1")
    reg.add_module(_module("b", SOURCE), "pkg-b", "1")
    clashes = [(r.package, r.notes) for r in rows(reg) if r.name == "knn"]
    assert [p for p, _ in clashes] == ["pkg-a", "pkg-b"]
    assert all(n.startswith("CLASH") for _, n in clashes)


def test_every_setting_is_explained():
    assert set(setting_help()) >= set(BUILTIN_NAMES)


def test_plugins_command_lists_kinds_settings_and_defense_settings(monkeypatch):
    from hrsbench.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    for text in ("reprogram", "threat", "expectation", "eot_samples draws", "pgd-adam",
                 "channels=[10, 10] (strength)", "settings: whitebox, eot, fixed, expectation"):
        assert text in result.output, text
    by_name = {r.name: r for r in rows(load_registry())}
    assert by_name["base"].notes == "deterministic; settings: whitebox"


def test_plugins_command_shows_loading_warnings_and_clashes(monkeypatch):
    import hrsbench.plugin.registry
    from hrsbench.cli import app

    def loaded() -> Registry:
        reg = load_registry()
        reg.add_module(_module("forgot", SOURCE.replace("    @hookimpl\n", "")), "forgot-pkg", "1")
        reg.add_module(_module("a", SOURCE), "pkg-a", "1")
        reg.add_module(_module("b", SOURCE), "pkg-b", "1")
        return reg

    monkeypatch.setattr(hrsbench.plugin.registry, "load_registry", loaded)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "warning: plugin package 'forgot-pkg': module catalog_test_forgot registers nothing" \
        in result.output
    assert result.output.count("CLASH") == 2
