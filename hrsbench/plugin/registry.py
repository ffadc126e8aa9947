"""Plugin discovery: every package declaring the ``hrsbench`` entry-point group is loaded the same
way, the built-ins included, and its registrations are indexed by kind and name.

Mistakes a plugin author makes are caught when the plugin loads, each reported in one line that
names the package: a class that is not a subclass of the kind's base class or leaves one of its
abstract methods undefined is refused; a misspelt hook gets a "did you mean"; a module that
registers nothing (a forgotten ``@hookimpl``) gets a warning. Two packages registering the same
name do not stop anything else: only using that name is an error, naming both packages.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import inspect
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import pluggy

from hrsbench.errors import HrsbenchError
from hrsbench.plugin import hookspecs
from hrsbench.results.record import Kind
from hrsbench.results.vocabulary import SettingSpec, register_setting

KINDS = ("defense", "attack", "dataset", "threat")
#: The package that registered each plugin class, for error messages about its instances.
_PACKAGES: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()
#: The hook each kind registers through.
HOOKS = {kind: f"register_{kind}s" for kind in KINDS}
#: Every hook a plugin may implement: a class kind's, or the vocabulary's settings.
ALL_HOOKS = (*HOOKS.values(), "register_settings")


class PluginWarning(UserWarning):
    """A plugin loaded but probably not as its author meant (e.g. it registers nothing)."""


class PluginError(HrsbenchError):
    """An exception raised inside a plugin's own code, re-raised as one line naming the plugin,
    its package and the method; the original exception is chained as ``__cause__``."""


@dataclass(frozen=True)
class Registration:
    """One registered class and the distribution (package, version) that provided it."""

    kind: str
    name: str
    cls: type
    package: str
    version: str


def base_class(kind: str) -> type:
    """The base class every plugin of ``kind`` derives from (imported on demand: the attack and
    defense bases import torch, which listing names must not need)."""
    if kind == "defense":
        from hrsbench.plugin.defense import Defense

        return Defense
    if kind == "attack":
        from hrsbench.plugin.attack import Attack

        return Attack
    if kind == "threat":
        from hrsbench.plugin.threat import Threat

        return Threat
    from hrsbench.plugin.dataset import Dataset

    return Dataset


def check_class(kind: str, cls: Any, package: str) -> None:
    """Refuse a class that cannot work as a ``kind`` plugin, in one line naming class and
    package: not derived from the base class, fields without ``@dataclass``, abstract methods
    left undefined, required class attributes (``name`` ...) unset or empty."""
    base = base_class(kind)
    label = getattr(cls, "__qualname__", repr(cls))
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise HrsbenchError(
            f"plugin package {package!r}: {kind} {label} is not a subclass of "
            f"hrsbench.{base.__name__}; derive it from hrsbench.{base.__name__}"
        )
    _check_dataclass(kind, cls, label, package)
    if kind == "threat":
        _check_threat_kind(cls, label, package)
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        methods = ", ".join(f"{m}()" for m in missing)
        raise HrsbenchError(
            f"plugin package {package!r}: {kind} class {label} does not define {methods}; "
            f"add {'it' if len(missing) == 1 else 'them'} (see docs/plugin-reference.md)"
        )
    unset = [attr for attr, hint in vars(base).get("__annotations__", {}).items()
             if "ClassVar" in str(hint) and not hasattr(cls, attr)]
    if unset:
        raise HrsbenchError(
            f"plugin package {package!r}: {kind} class {label} does not set the class "
            f"attribute{'s' if len(unset) > 1 else ''} {', '.join(unset)}; set "
            f"{'them' if len(unset) > 1 else 'it'} (see docs/plugin-reference.md)"
        )
    if not isinstance(cls.name, str) or not cls.name:
        raise HrsbenchError(
            f"plugin package {package!r}: {kind} class {label} has an empty name; "
            "set the class attribute name = \"...\""
        )


def _check_dataclass(kind: str, cls: type, label: str, package: str) -> None:
    """A parameterised plugin whose class declares fields but lacks ``@dataclass`` would
    silently take none of them as parameters."""
    if kind == "dataset" or "__dataclass_fields__" in vars(cls):
        return
    own = [n for n, hint in vars(cls).get("__annotations__", {}).items()
           if "ClassVar" not in str(hint)]
    if own:
        raise HrsbenchError(
            f"plugin package {package!r}: {kind} class {label} declares {', '.join(own)} but is "
            "not a dataclass, so they would not be parameters; decorate it with @dataclass"
        )


#: The kinds a threat may declare: what its lines record as ``threat.kind``.
THREAT_KINDS = tuple(k.value for k in Kind if k not in (Kind.CLEAN, Kind.EVASION))


def _check_threat_kind(cls: type, label: str, package: str) -> None:
    """A threat's ``kind`` goes into every line it writes, so an unknown one would make lines
    the schema refuses; refused when the plugin loads, before any run."""
    declared = getattr(cls, "kind", Kind.THREAT.value)
    if declared not in THREAT_KINDS:
        raise HrsbenchError(
            f"plugin package {package!r}: threat class {label} declares kind {declared!r}; "
            f"use one of {', '.join(THREAT_KINDS)}"
        )


def _marked_hooks(module: ModuleType) -> list[str]:
    """Names of the module's functions marked with ``@hookimpl``."""
    return [name for name, value in vars(module).items()
            if callable(value) and hasattr(value, "hrsbench_impl")]


def _unmarked_hooks(module: ModuleType) -> list[str]:
    """Functions of the module named like a hook but not marked ``@hookimpl``: pluggy ignores
    them silently, so the plugin would vanish without a word."""
    return [name for name, value in vars(module).items()
            if inspect.isfunction(value) and name.startswith("register")
            and getattr(value, "__module__", None) == module.__name__
            and not hasattr(value, "hrsbench_impl")]


def _suggest(name: str) -> str:
    near = difflib.get_close_matches(name, list(ALL_HOOKS), n=1, cutoff=0.6)
    return f"did you mean {near[0]}?" if near else f"hooks are {', '.join(ALL_HOOKS)}"


class Registry:
    """Name → plugin class for each kind, with the package that provided it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("hrsbench")
        self.pm.add_hookspecs(hookspecs)
        self.entries: dict[str, dict[str, Registration]] = {k: {} for k in KINDS}
        #: Names registered by more than one package: every registration of each, by kind.
        self.clashes: dict[str, dict[str, list[Registration]]] = {k: {} for k in KINDS}
        #: One line per loading problem that did not stop the load (see :class:`PluginWarning`).
        self.warnings: list[str] = []
        #: Settings a plugin added to the vocabulary, and the package that added each.
        self.setting_packages: dict[str, str] = {}

    def add_module(self, module: ModuleType, package: str, version: str) -> int:
        """Register a plugin module; returns how many classes it registered."""
        for name in _marked_hooks(module):
            if name not in ALL_HOOKS:
                raise HrsbenchError(
                    f"plugin package {package!r}: {module.__name__}.{name} is not an hrsbench "
                    f"hook; {_suggest(name)}"
                )
        try:
            self.pm.register(module, name=f"{package}:{module.__name__}")
            self.pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as e:
            raise HrsbenchError(f"plugin package {package!r}: {'; '.join(str(e).splitlines())}; "
                                "a hook takes one argument, register") from None
        count = sum(self._call_hooks(module, kind, package, version) for kind in KINDS)
        count += self._call_settings_hook(module, package)
        if count == 0:
            self._warn_empty(module, package)
        return count

    def _call_hooks(self, module: ModuleType, kind: str, package: str, version: str) -> int:
        hook = getattr(self.pm.hook, HOOKS[kind])
        added = []

        def register(cls: type) -> None:
            self._add(kind, cls, package, version)
            added.append(cls)

        for impl in [i for i in hook.get_hookimpls() if i.plugin is module]:
            try:
                impl.function(register=register)
            except HrsbenchError:
                raise
            except Exception as e:  # a broken plugin must not end in a traceback
                raise HrsbenchError(
                    f"plugin package {package!r} raised in {HOOKS[kind]}: "
                    f"{type(e).__name__}: {e}; fix or uninstall it"
                ) from None
        return len(added)

    def _call_settings_hook(self, module: ModuleType, package: str) -> int:
        """The module's ``register_settings``: each spec joins the vocabulary, and the registry
        records which package added it."""
        added = 0

        def register(spec: SettingSpec) -> None:
            nonlocal added
            if not isinstance(spec, SettingSpec):
                raise HrsbenchError(f"plugin package {package!r}: register_settings must "
                                    f"register SettingSpec objects, not {type(spec).__name__}")
            register_setting(spec)
            self.setting_packages[spec.name] = package
            added += 1

        for impl in [i for i in self.pm.hook.register_settings.get_hookimpls()
                     if i.plugin is module]:
            try:
                impl.function(register=register)
            except HrsbenchError as e:
                raise HrsbenchError(f"plugin package {package!r}: {e}") from None
            except Exception as e:  # a broken plugin must not end in a traceback
                raise HrsbenchError(
                    f"plugin package {package!r} raised in register_settings: "
                    f"{type(e).__name__}: {e}; fix or uninstall it") from None
        return added

    def _warn_empty(self, module: ModuleType, package: str) -> None:
        unmarked = _unmarked_hooks(module)
        if unmarked:
            hint = f"{module.__name__}.{unmarked[0]} is not marked @hookimpl"
            if unmarked[0] not in ALL_HOOKS:
                hint += f" ({_suggest(unmarked[0])})"
        else:
            hint = f"define a hook ({', '.join(ALL_HOOKS)}) marked @hookimpl"
        self.warn(f"plugin package {package!r}: module {module.__name__} registers nothing; "
                  f"{hint}")

    def warn(self, message: str) -> None:
        """Record ``message`` and issue it as a :class:`PluginWarning`, attributed to no source
        line so that Python's default display is the one line itself."""
        self.warnings.append(message)
        warnings.warn_explicit(message, PluginWarning, filename="hrsbench", lineno=0)

    def _add(self, kind: str, cls: type, package: str, version: str) -> None:
        check_class(kind, cls, package)
        entry = Registration(kind, cls.name, cls, package, version)
        _PACKAGES[cls] = f"{package} {version}"
        name = entry.name
        if name in self.clashes[kind]:
            self.clashes[kind][name].append(entry)
        elif name in self.entries[kind]:
            self.clashes[kind][name] = [self.entries[kind].pop(name), entry]
        else:
            self.entries[kind][name] = entry

    def registration(self, kind: str, name: str) -> Registration:
        """The registration of ``name``: its class, package and version."""
        if name in self.clashes[kind]:
            packages = " and ".join(repr(r.package) for r in self.clashes[kind][name])
            raise HrsbenchError(
                f"{kind} {name!r} is registered by both {packages}; uninstall one of them"
            )
        try:
            return self.entries[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise HrsbenchError(
                f"unknown {kind} {name!r}; installed {kind}s: {known} (see `hrsbench plugins`)"
            ) from None

    def get(self, kind: str, name: str) -> type:
        return self.registration(kind, name).cls

    def names(self, kind: str) -> list[str]:
        """Usable names of ``kind`` (clashing names are left out: using them is an error)."""
        return sorted(self.entries[kind])

    def all(self) -> list[Registration]:
        return [r for kind in KINDS for r in self.entries[kind].values()]

    def clashing(self) -> list[Registration]:
        """Every registration of a name that more than one package registered."""
        return [r for kind in KINDS for regs in self.clashes[kind].values() for r in regs]


def _load_entry_point(registry: Registry, ep: md.EntryPoint) -> None:
    dist = ep.dist
    package = dist.name if dist else ep.value.split(".")[0]
    version = dist.version if dist else "unknown"
    try:
        module = ep.load()
    except Exception as e:
        raise HrsbenchError(
            f"plugin package {package!r} failed to load ({ep.value}): {type(e).__name__}: {e}; "
            "fix or uninstall it"
        ) from None
    registry.add_module(module, package, version)


def load_registry() -> Registry:
    """A fresh registry of every installed plugin (uncached: tests install plugins on the fly)."""
    registry = Registry()
    seen: set[tuple[str, str]] = set()
    for ep in md.entry_points(group="hrsbench"):
        key = (ep.name, ep.value)
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        _load_entry_point(registry, ep)
    return registry


@cache
def registry() -> Registry:
    """The process-wide registry, loaded once."""
    return load_registry()


@cache
def _distributions() -> dict[str, list[str]]:
    return md.packages_distributions()


def provider(obj: Any) -> str:
    """The package (and version) that registered ``obj``'s class, else the distribution that
    ships it, else its top-level module."""
    for cls in type(obj).__mro__:
        if cls in _PACKAGES:
            return _PACKAGES[cls]
    top = type(obj).__module__.split(".")[0]
    dists = _distributions().get(top)
    return dists[0] if dists else top


def _kind_of(obj: Any) -> str:
    for kind in KINDS:
        if isinstance(obj, base_class(kind)):
            return kind
    return "plugin"


@contextmanager
def guarded(plugin: Any, method: str) -> Iterator[None]:
    """Run a call into ``plugin``'s own code: any exception but an :class:`HrsbenchError` (which
    already names its fix) comes out as a :class:`PluginError` naming the plugin, its package,
    the method and the exception, chained to the original for ``--debug`` tracebacks."""
    try:
        yield
    except (HrsbenchError, KeyboardInterrupt):
        raise
    except Exception as e:
        what = " ".join(f"{type(e).__name__}: {e}".split())
        raise PluginError(
            f"{_kind_of(plugin)} {getattr(plugin, 'name', type(plugin).__name__)!r} "
            f"(package {provider(plugin)!r}) failed in {method}(): {what}; "
            "rerun with --debug for the traceback"
        ) from e
