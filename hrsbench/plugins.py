"""Plugin discovery: every package declaring the ``hrsbench`` entry-point group is loaded the same
way, the built-ins included, and its registrations are indexed by kind and name."""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
from functools import cache
from types import ModuleType

import pluggy

from hrsbench import hookspecs
from hrsbench.errors import HrsbenchError

KINDS = ("defense", "attack", "dataset", "threat")


@dataclass(frozen=True)
class Registration:
    kind: str
    name: str
    cls: type
    package: str
    version: str


class Registry:
    """Name → plugin class for each kind, with the package that provided it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("hrsbench")
        self.pm.add_hookspecs(hookspecs)
        self.entries: dict[str, dict[str, Registration]] = {k: {} for k in KINDS}

    def add_module(self, module: ModuleType, package: str, version: str) -> None:
        """Register a plugin module; misspelt hooks are an error, not silence."""
        try:
            self.pm.register(module, name=f"{package}:{module.__name__}")
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            raise HrsbenchError(f"plugin package {package!r}: {e}") from None
        for kind in KINDS:
            hook = getattr(self.pm.hook, f"register_{kind}s")
            impls = [i for i in hook.get_hookimpls() if i.plugin is module]
            for impl in impls:
                try:
                    impl.function(register=lambda cls, k=kind: self._add(k, cls, package, version))
                except HrsbenchError:
                    raise
                except Exception as e:  # a broken plugin must not end in a traceback
                    raise HrsbenchError(
                        f"plugin package {package!r} raised in register_{kind}s: "
                        f"{type(e).__name__}: {e}; fix or uninstall it"
                    ) from None

    def _add(self, kind: str, cls: type, package: str, version: str) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise HrsbenchError(f"plugin package {package!r} registered a {kind} without a name")
        if name in self.entries[kind]:
            other = self.entries[kind][name].package
            raise HrsbenchError(
                f"{kind} {name!r} is registered by both {other!r} and {package!r}; "
                "uninstall one of them"
            )
        self.entries[kind][name] = Registration(kind, name, cls, package, version)

    def get(self, kind: str, name: str) -> type:
        try:
            return self.entries[kind][name].cls
        except KeyError:
            known = ", ".join(sorted(self.entries[kind])) or "none"
            raise HrsbenchError(
                f"unknown {kind} {name!r}; installed {kind}s: {known} (see `hrsbench plugins`)"
            ) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def all(self) -> list[Registration]:
        return [r for kind in KINDS for r in self.entries[kind].values()]


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
