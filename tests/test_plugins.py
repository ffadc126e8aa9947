"""The plugin registry: built-ins through entry points, third-party packages the same way, and
one-line errors for broken or clashing plugins."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import pytest

from hrsbench import HrsbenchError
from hrsbench.plugin.registry import PluginError, PluginWarning, Registry, guarded, load_registry

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


def test_misspelt_hook_gets_did_you_mean():
    mod = _module("typo", """
        from hrsbench import hookimpl
        @hookimpl
        def register_defence(register):
            pass
    """)
    with pytest.raises(HrsbenchError, match="'typo-pkg'.*register_defence.*did you mean "
                                            "register_defenses"):
        Registry().add_module(mod, "typo-pkg", "1.0")


DEFENSE = """
    from dataclasses import dataclass
    from hrsbench import Defense, base_model, hookimpl
    @dataclass
    class D(Defense):
        name = "same"
        def build(self, dataset):
            return base_model(dataset.arch)
    @hookimpl
    def register_defenses(register):
        register(D)
"""


def test_class_missing_a_required_method_is_refused_in_one_line():
    mod = _module("nobuild", """
        from dataclasses import dataclass
        from hrsbench import Defense, hookimpl
        @dataclass
        class NoBuild(Defense):
            name = "nobuild"
        @hookimpl
        def register_defenses(register):
            register(NoBuild)
    """)
    with pytest.raises(HrsbenchError) as e:
        Registry().add_module(mod, "nobuild-pkg", "1")
    assert "\n" not in str(e.value)
    assert "'nobuild-pkg'" in str(e.value) and "NoBuild does not define build()" in str(e.value)


@pytest.mark.parametrize("kind,base,method", [("attack", "Attack", "generate"),
                                              ("threat", "Threat", "run"),
                                              ("dataset", "Dataset", "read")])
def test_every_kind_has_its_required_method(kind, base, method):
    mod = _module("partial", f"""
        from dataclasses import dataclass
        from hrsbench import {base}, hookimpl
        class P({base}):
            name = "p"
            strength = "k"
            arch = None
            files = ()
        @hookimpl
        def register_{kind}s(register):
            register(P)
    """)
    with pytest.raises(HrsbenchError, match=f"'pkg'.*P does not define {method}\\(\\)"):
        Registry().add_module(mod, "pkg", "1")


def test_a_threat_declaring_an_unknown_kind_is_refused_when_it_loads():
    """Its kind goes into every line it writes: refused at load, not mid-run."""
    source = """
        from hrsbench import Threat, hookimpl
        class Odd(Threat):
            name = "odd"
            strength = "k"
            KIND
            def run(self, classifier, data, context):
                return {}
        @hookimpl
        def register_threats(register):
            register(Odd)
    """
    with pytest.raises(HrsbenchError, match="'odd-pkg'.*Odd declares kind 'sorcery'; use one "
                                            "of reprogramming, threat"):
        Registry().add_module(_module("odd", source.replace("KIND", 'kind = "sorcery"')),
                              "odd-pkg", "1")
    reg = Registry()
    reg.add_module(_module("plain", source.replace("KIND", "")), "odd-pkg", "1")
    from hrsbench.engine.cells import threat_kind

    assert threat_kind(reg.get("threat", "odd")) == "threat"


def test_class_not_derived_from_the_base_is_refused():
    mod = _module("duck", """
        from hrsbench import hookimpl
        class Duck:
            name = "duck"
        @hookimpl
        def register_attacks(register):
            register(Duck)
    """)
    with pytest.raises(HrsbenchError, match="'duck-pkg'.*Duck is not a subclass of "
                                            "hrsbench.Attack"):
        Registry().add_module(mod, "duck-pkg", "1")


def test_class_without_a_name_is_refused():
    mod = _module("anon", """
        from dataclasses import dataclass
        from hrsbench import Defense, base_model, hookimpl
        @dataclass
        class Anonymous(Defense):
            def build(self, dataset):
                return base_model(dataset.arch)
        @hookimpl
        def register_defenses(register):
            register(Anonymous)
    """)
    with pytest.raises(HrsbenchError, match="'anon-pkg'.*Anonymous does not set the class "
                                            "attribute name"):
        Registry().add_module(mod, "anon-pkg", "1")


def test_module_registering_nothing_gets_a_warning_naming_the_unmarked_hook():
    mod = _module("forgot", DEFENSE.replace("    @hookimpl\n", ""))
    reg = Registry()
    with pytest.warns(PluginWarning, match="'forgot-pkg'.*registers nothing.*"
                                           "register_defenses is not marked @hookimpl"):
        assert reg.add_module(mod, "forgot-pkg", "1") == 0
    assert len(reg.warnings) == 1 and reg.names("defense") == []


def test_name_clash_breaks_only_that_name():
    reg = Registry()
    reg.add_module(_module("a", DEFENSE), "pkg-a", "1")
    reg.add_module(_module("b", DEFENSE), "pkg-b", "2")
    reg.add_module(_module("c", DEFENSE.replace('"same"', '"other"')), "pkg-c", "3")
    assert reg.names("defense") == ["other"]
    assert reg.registration("defense", "other").package == "pkg-c"
    with pytest.raises(HrsbenchError, match="'pkg-a' and 'pkg-b'"):
        reg.get("defense", "same")
    assert [(r.name, r.package) for r in reg.clashing()] == [("same", "pkg-a"), ("same", "pkg-b")]


def test_registration_gives_package_and_version(tmp_path, monkeypatch):
    install_example(tmp_path, monkeypatch)
    reg = load_registry()
    r = reg.registration("defense", "noisy-input")
    assert (r.kind, r.name, r.package, r.version) == (
        "defense", "noisy-input", "hrsbench-example-plugin", "0.1.0")
    assert reg.registration("attack", "pgd").package == "hrsbench"
    sys.modules.pop("hrsbench_example", None)


def test_plugin_raising_names_its_package():
    mod = _module("boom", """
        from hrsbench import hookimpl
        @hookimpl
        def register_attacks(register):
            raise RuntimeError("kaput")
    """)
    with pytest.raises(HrsbenchError, match="'boom-pkg' raised in register_attacks.*kaput"):
        Registry().add_module(mod, "boom-pkg", "1")


def test_exception_in_plugin_code_is_one_line_naming_plugin_and_method():
    mod = _module("broken", """
        from dataclasses import dataclass
        from hrsbench import Defense, hookimpl
        @dataclass
        class Broken(Defense):
            name = "broken"
            def build(self, dataset):
                raise ZeroDivisionError("no\\nway")
        @hookimpl
        def register_defenses(register):
            register(Broken)
    """)
    reg = Registry()
    reg.add_module(mod, "broken-pkg", "1")
    defense = reg.get("defense", "broken")()
    with pytest.raises(PluginError) as e, guarded(defense, "build"):
        defense.build(None)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("defense 'broken' (package 'broken-pkg 1') failed in build()")
    assert "ZeroDivisionError: no way" in message
    assert isinstance(e.value, HrsbenchError)
    assert isinstance(e.value.__cause__, ZeroDivisionError)  # the traceback behind --debug


def test_hrsbench_errors_inside_plugin_code_pass_unchanged():
    defense = load_registry().get("defense", "base")()
    with pytest.raises(HrsbenchError, match="^already one line$"), guarded(defense, "fit"):
        raise HrsbenchError("already one line")


def test_unknown_plugin_lists_installed_ones():
    with pytest.raises(HrsbenchError, match="unknown defense 'nope'.*base"):
        load_registry().get("defense", "nope")


def test_hook_with_wrong_argument_is_one_line():
    mod = _module("badarg", """
        from hrsbench import hookimpl
        @hookimpl
        def register_defenses(reg):
            pass
    """)
    with pytest.raises(HrsbenchError) as e:
        Registry().add_module(mod, "badarg-pkg", "1")
    assert "\n" not in str(e.value)
    assert "'badarg-pkg'" in str(e.value) and "takes one argument, register" in str(e.value)


def test_fields_without_dataclass_are_refused():
    mod = _module("nodc", """
        from hrsbench import Defense, base_model, hookimpl
        class Plain(Defense):
            name = "plain"
            width: float = 0.1
            def build(self, dataset):
                return base_model(dataset.arch)
        @hookimpl
        def register_defenses(register):
            register(Plain)
    """)
    with pytest.raises(HrsbenchError, match="'nodc-pkg'.*Plain declares width but is not a "
                                            "dataclass.*@dataclass"):
        Registry().add_module(mod, "nodc-pkg", "1")
