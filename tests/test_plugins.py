"""The plugin registry: built-ins through entry points, third-party packages the same way, and
one-line errors for broken or clashing plugins."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import pytest

from hrsbench import HrsbenchError
from hrsbench.plugins import Registry, load_registry

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "hrsbench-example-plugin"


def install_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the example package importable and visible to importlib.metadata, as pip would."""
    site = tmp_path / "site"
    info = site / "hrsbench_example_plugin-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hrsbench-example-plugin\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text("[hrsbench]\nexample = hrsbench_example\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLE))


def test_builtins_register_through_entry_points():
    reg = load_registry()
    for kind, name in [("defense", "base"), ("attack", "fgsm"), ("attack", "pgd"),
                       ("dataset", "mnist"), ("dataset", "cifar10")]:
        assert name in reg.names(kind)
        assert reg.entries[kind][name].package == "hrsbench"


def test_third_party_plugin_is_found_like_a_builtin(tmp_path, monkeypatch):
    install_example(tmp_path, monkeypatch)
    reg = load_registry()
    entry = reg.entries["defense"]["noisy-input"]
    assert (entry.package, entry.version) == ("hrsbench-example-plugin", "0.1.0")
    sys.modules.pop("hrsbench_example", None)


def _module(name: str, source: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    exec(textwrap.dedent(source), mod.__dict__)
    return mod


def test_misspelt_hook_is_an_error():
    mod = _module("typo", """
        from hrsbench import hookimpl
        @hookimpl
        def register_defence(register):
            pass
    """)
    with pytest.raises(HrsbenchError, match="typo-pkg.*register_defence"):
        Registry().add_module(mod, "typo-pkg", "1.0")


def test_duplicate_names_name_both_packages():
    src = """
        from dataclasses import dataclass
        from hrsbench import Defense, hookimpl
        @dataclass
        class D(Defense):
            name = "same"
        @hookimpl
        def register_defenses(register):
            register(D)
    """
    reg = Registry()
    reg.add_module(_module("a", src), "pkg-a", "1")
    with pytest.raises(HrsbenchError, match="'pkg-a' and 'pkg-b'"):
        reg.add_module(_module("b", src), "pkg-b", "1")


def test_plugin_raising_names_its_package():
    mod = _module("boom", """
        from hrsbench import hookimpl
        @hookimpl
        def register_attacks(register):
            raise RuntimeError("kaput")
    """)
    with pytest.raises(HrsbenchError, match="'boom-pkg' raised in register_attacks.*kaput"):
        Registry().add_module(mod, "boom-pkg", "1")


def test_unknown_plugin_lists_installed_ones():
    with pytest.raises(HrsbenchError, match="unknown defense 'nope'.*base"):
        load_registry().get("defense", "nope")
