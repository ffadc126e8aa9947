"""The words a run and its report share, defined once: the attack settings.

A setting says which model an attack crafts against when the defense is stochastic (docs/
attacks.md). Everything that depends on a setting reads it from here: config validation, which
settings a defense gets cells for, the model and classifier an attack is handed, EOT's sample
count, ``hrsbench plugins``, and the report's reading of a line as adaptive or not. A plugin adds
a setting with the ``register_settings`` hook; the built-in four are registered below. Light (no
torch): the report reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hrsbench.errors import HrsbenchError


class Setting(StrEnum):
    """The built-in settings' names (a plugin's setting is its :class:`SettingSpec` name), and
    ``NONE`` for lines no attack crafted (clean accuracy)."""

    NONE = "none"
    WHITEBOX = "whitebox"
    EOT = "eot"
    FIXED = "fixed"
    EXPECTATION = "expectation"


class Crafts(StrEnum):
    """The model an attack differentiates in a setting."""

    #: The deployed model, its randomness drawn afresh on every query.
    DEPLOYED = "deployed"
    #: The defense's ``surrogate(model)``: its randomness removed or frozen.
    SURROGATE = "surrogate"
    #: The defense's ``expectation(model)``: its exact expected output.
    EXPECTATION = "expectation"


class AppliesTo(StrEnum):
    """The defenses a setting differs for (elsewhere its line would repeat white-box's)."""

    ANY = "any"
    STOCHASTIC = "stochastic"
    #: Stochastic defenses that define an exact expectation model.
    EXPECTATION = "expectation"


@dataclass(frozen=True)
class SettingSpec:
    """One attack setting."""

    name: str
    #: What the attack crafts against, in words (``hrsbench plugins``).
    help: str
    crafts: Crafts = Crafts.DEPLOYED
    #: Each gradient query averages ``eot_samples`` draws of the crafting model.
    eot: bool = False
    applies_to: AppliesTo = AppliesTo.STOCHASTIC
    #: The attack adapts to the defense's randomness: a non-adaptive evaluation is white-box
    #: alone, and the report's adaptive-attack checks read lines of these settings.
    adaptive: bool = True

    def applies(self, stochastic: bool, has_expectation: bool) -> bool:
        if self.applies_to is AppliesTo.ANY:
            return True
        if self.applies_to is AppliesTo.STOCHASTIC:
            return stochastic
        return stochastic and has_expectation


#: The setting every attack runs in, and whose line stands in for the settings that do not
#: differ for a defense.
WHITEBOX = "whitebox"

_SETTINGS: dict[str, SettingSpec] = {}


def register_setting(spec: SettingSpec) -> None:
    """Add ``spec`` (a plugin's ``register_settings`` hook calls this through its
    ``register``); the same spec again is a no-op, another under a taken name an error."""
    if not spec.name or not spec.name.replace("-", "_").isidentifier():
        raise HrsbenchError(f"setting name {spec.name!r}: use letters, digits, '-' and '_'")
    known = _SETTINGS.get(spec.name)
    if known is not None and known != spec:
        raise HrsbenchError(f"setting {spec.name!r} is registered twice, differently")
    _SETTINGS[spec.name] = spec


def unregister_setting(name: str) -> None:
    """Remove a plugin's setting (tests; the built-in settings stay)."""
    if name in BUILTIN_NAMES:
        raise HrsbenchError(f"setting {name!r} is built in")
    _SETTINGS.pop(name, None)


def settings() -> dict[str, SettingSpec]:
    """Every registered setting by name, built-in first."""
    return dict(_SETTINGS)


def setting(name: str) -> SettingSpec:
    """The setting ``name``; an unknown one is a one-line error naming the choices."""
    try:
        return _SETTINGS[name]
    except KeyError:
        raise HrsbenchError(
            f"unknown attack setting {name!r}; choose from {', '.join(_SETTINGS)}") from None


def is_adaptive(name: object) -> bool:
    """Whether a line of setting ``name`` adapted to the defense's randomness; a setting this
    process does not know (a plugin's, not installed where the report runs) counts as adaptive
    unless it is the white-box setting, since only white-box lines are non-adaptive by
    definition."""
    spec = _SETTINGS.get(name) if isinstance(name, str) else None
    if spec is not None:
        return spec.adaptive
    return isinstance(name, str) and name not in (WHITEBOX, "none")


BUILTIN = (
    SettingSpec(WHITEBOX, "the deployed model, one random draw per query",
                applies_to=AppliesTo.ANY, adaptive=False),
    SettingSpec("eot", "gradients averaged over eot_samples draws (expectation over "
                "transformation)", eot=True),
    SettingSpec("fixed", "the defense's surrogate: its randomness removed or frozen",
                crafts=Crafts.SURROGATE),
    SettingSpec("expectation", "the defense's exact expected output (only defenses that "
                "define one)", crafts=Crafts.EXPECTATION, applies_to=AppliesTo.EXPECTATION),
)
for _spec in BUILTIN:
    register_setting(_spec)
BUILTIN_NAMES = tuple(s.name for s in BUILTIN)
