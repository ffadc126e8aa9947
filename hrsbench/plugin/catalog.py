"""What ``hrsbench plugins`` lists: every installed plugin with its parameters (required ones
marked, the strength parameter named), the attack settings and which defenses they apply to,
names two packages both registered, and the warnings raised while loading."""

from __future__ import annotations

from dataclasses import dataclass, is_dataclass

from hrsbench.plugin.params import parameters
from hrsbench.plugin.registry import Registration, Registry
from hrsbench.results.vocabulary import settings

#: How an attack sees a stochastic defense (docs/attacks.md), as ``[[attacks]] settings`` names.


@dataclass(frozen=True)
class Row:
    kind: str
    name: str
    package: str
    version: str
    parameters: str
    notes: str = ""


def describe_parameters(cls: type) -> str:
    """``name=default`` per parameter, ``name (required)`` for one without a default, and
    ``(strength)`` after the parameter a run's strengths or a DES sweep varies."""
    if not is_dataclass(cls):
        return ""
    strength = getattr(cls, "strength", None)
    parts = []
    for p in parameters(cls):
        default = list(p.default) if isinstance(p.default, tuple) else p.default  # as in TOML
        text = f"{p.name}: {p.type} (required)" if p.required else f"{p.name}={default!r}"
        parts.append(text + (" (strength)" if p.name == strength else ""))
    return ", ".join(parts)


def defense_settings(cls: type) -> list[str]:
    """The settings that differ for a defense (:meth:`SettingSpec.applies`): a deterministic
    model is the same under EOT and fixed randomness as in white-box; only a defense with an
    exact expectation has that one."""
    from hrsbench.plugin.defense import Defense

    stochastic = bool(getattr(cls, "stochastic", False))
    own = getattr(cls, "expectation", None) is not Defense.expectation
    return [name for name, s in settings().items() if s.applies(stochastic, own)]


def setting_help() -> dict[str, str]:
    """Every registered setting and what an attack crafts against in it."""
    return {name: s.help for name, s in settings().items()}


def _notes(r: Registration) -> str:
    if r.kind == "defense":
        kind = "stochastic" if getattr(r.cls, "stochastic", False) else "deterministic"
        return f"{kind}; settings: {', '.join(defense_settings(r.cls))}"
    if r.kind == "attack":
        return f"strength: {r.cls.strength}" + ("; iterative" if r.cls.iterative else "")
    if r.kind == "threat":
        return f"strength: {r.cls.strength}"
    return ""


def rows(reg: Registry) -> list[Row]:
    """One row per usable plugin, then one per registration of a clashing name."""
    out = [Row(r.kind, r.name, r.package, r.version, describe_parameters(r.cls), _notes(r))
           for r in reg.all()]
    for r in reg.clashing():
        out.append(Row(r.kind, r.name, r.package, r.version, describe_parameters(r.cls),
                       "CLASH: also registered by another package; uninstall one to use it"))
    return out
