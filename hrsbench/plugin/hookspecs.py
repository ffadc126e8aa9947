"""Hook specifications: every plugin, built-in or third party, registers through these.

Each hook receives a ``register`` callback, in the style of simonw/llm, so one module can
register any number of classes and the engine can tell which package each one came from.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from hrsbench.results.vocabulary import SettingSpec

hookspec = pluggy.HookspecMarker("hrsbench")
hookimpl = pluggy.HookimplMarker("hrsbench")


@hookspec
def register_defenses(register: Callable[[type], None]) -> None:
    """Call ``register(cls)`` for each :class:`hrsbench.Defense` subclass the plugin provides."""


@hookspec
def register_attacks(register: Callable[[type], None]) -> None:
    """Call ``register(cls)`` for each :class:`hrsbench.Attack` subclass the plugin provides."""


@hookspec
def register_datasets(register: Callable[[type], None]) -> None:
    """Call ``register(cls)`` for each :class:`hrsbench.Dataset` subclass the plugin provides."""


@hookspec
def register_settings(register: Callable[[SettingSpec], None]) -> None:
    """Call ``register(SettingSpec(...))`` for each attack setting the plugin adds
    (:mod:`hrsbench.results.vocabulary`): its cells, lines, tables and sanity checks then follow
    from the spec, with no engine change."""


@hookspec
def register_threats(register: Callable[[type], None]) -> None:
    """Call ``register(cls)`` for each :class:`hrsbench.plugin.threat.Threat` subclass the plugin
    provides (threats beyond per-image evasion, e.g. adversarial reprogramming)."""
