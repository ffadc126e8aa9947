"""A run config expanded into cells: independent, serialisable units of work (one defense
parameter set × attack × strength × setting), each with a key that identifies its result.

A cell's key and its model's key are computed by the same functions as a result line's
(:mod:`hrsbench.results.record`), from the same parts, so a finished cell is found by its line.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hrsbench.engine.config import RunConfig
from hrsbench.plugin.params import defaults, instantiate
from hrsbench.plugin.registry import Registry
from hrsbench.results.record import (
    MODEL_FORMAT,
    Evaluation,
    Kind,
    ModelSpec,
    ThreatSpec,
    Traits,
    cell_key,
    plain,
)
from hrsbench.results.storage import stable_hash
from hrsbench.results.vocabulary import WHITEBOX, settings
from hrsbench.results.vocabulary import setting as spec

__all__ = ["MODEL_FORMAT", "Cell", "expand", "grid"]


def grid(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values (one empty combination when there are none)."""
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes.values())]


def combinations(entry: Any) -> list[dict[str, Any]]:
    """A config entry's parameter sets: its literal ``params`` merged with each grid point."""
    return [{**entry.params, **point} for point in grid(entry.grid)]


@dataclass(frozen=True)
class Cell:
    dataset: str
    n_train: int | None
    n_test: int
    n_clean: int | None
    epochs: int
    seed: int
    defense: str
    params: dict[str, Any]  # complete: defaults filled in
    attack: str
    attack_params: dict[str, Any]
    attack_strength: float
    setting: str
    targeted: bool
    repeats: int
    eot_samples: int
    #: "attack" (evasion, crafted per image) or "threat" (a Threat plugin; ``attack`` holds its
    #: name, ``attack_params`` its parameters and ``attack_strength`` its strength parameter).
    kind: str = "attack"
    #: The plugins' distributions and versions (part of the keys: a new version reruns).
    defense_package: str = "unknown"
    defense_version: str = "unknown"
    attack_package: str | None = None
    attack_version: str | None = None
    #: What the plugins declare, recorded in the cell's result line.
    traits: Traits = field(default_factory=lambda: Traits(False, False, None, False, None))
    #: The threat kind recorded for a threat cell (``Kind`` value).
    threat_kind: str = Kind.THREAT.value
    #: The arithmetic the model trains in ("fp32" or "bf16"): the config's, resolved for the
    #: run's device (:func:`hrsbench.engine.precision.resolve`).
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        d = dict(d)
        if isinstance(d.get("traits"), dict):
            d["traits"] = Traits(**d["traits"])
        return cls(**d)

    def model_spec(self) -> ModelSpec:
        return ModelSpec(self.dataset, self.defense, plain(self.params), self.seed, self.n_train,
                         self.epochs, self.defense_package, self.defense_version,
                         self.precision)

    def threat_spec(self) -> ThreatSpec:
        if self.kind == "threat":
            kind = Kind(self.threat_kind)
        else:
            kind = Kind.CLEAN if self.attack == "none" else Kind.EVASION
        return ThreatSpec(kind, self.attack, plain(self.attack_params), float(self.attack_strength),
                          self.setting, self.targeted, self.attack_package,
                          self.attack_version)

    def evaluation(self, n_examples: int = 0, clean_images: int | None = None) -> Evaluation:
        """The cell's evaluation; the counts measured are filled in once it has run."""
        return Evaluation(self.n_test, n_examples, self.n_clean, clean_images, self.repeats,
                          self.eot_samples)

    @property
    def training_key(self) -> str:
        """What determines training apart from the defense: a defense adds its own name and
        parameters to it, or only the parts that matter (HRS channels are reused across widths).
        The defense plugin's package and version are part of it: a new version retrains."""
        parts = [MODEL_FORMAT, self.dataset, self.n_train, self.epochs, self.seed,
                 self.defense_package, self.defense_version]
        return stable_hash(parts if self.precision == "fp32" else [*parts, self.precision])

    @property
    def model_key(self) -> str:
        """What determines the trained model: a cell's results share it with its siblings."""
        return self.model_spec().key()

    @property
    def key(self) -> str:
        return cell_key(self.model_spec(), self.threat_spec(), self.evaluation())


def defense_traits(defense: Any) -> Traits:
    """What a defense class, or one parameter set of it, declares (attack traits are filled in
    per attack): a parameter set may decide whether the model is stochastic."""
    from hrsbench.plugin.defense import Defense

    dcls = defense if isinstance(defense, type) else type(defense)
    return Traits(bool(defense.stochastic), dcls.expectation is not Defense.expectation,
                  getattr(dcls, "strength", None), False, None)


def expand(cfg: RunConfig, registry: Registry, device: str = "cpu") -> list[Cell]:
    """All cells of ``cfg``, validating plugin names and parameters against the registry.

    Each defense parameter set gets a clean-only cell (attack "none") so its clean accuracy is
    recorded even without attacks; settings that cannot differ for a defense are dropped. Each
    threat parameter set gets one cell per defense parameter set. Every cell is made once per
    training seed (``cfg.seeds``): the seed is part of the model's and the cell's key. The
    config's precision is resolved for ``device`` ("auto": bf16 where it is native).
    """
    from hrsbench.engine.precision import resolve

    registry.get("dataset", cfg.dataset)
    precision = resolve(cfg.precision, device)
    cells = []
    for d in cfg.defenses:
        reg = registry.registration("defense", d.name)
        dcls = reg.cls
        for p in combinations(d):
            defense = instantiate(dcls, p, f"defense {d.name!r}")
            full = {**defaults(dcls), **p, **defense.identity()}
            traits = defense_traits(defense)
            for seed in cfg.seeds:  # one model, and its cells, per seed
                clean = Cell(cfg.dataset, cfg.n_train, cfg.n_test, cfg.n_clean, cfg.epochs,
                             seed, d.name, full, "none", {}, 0.0, "none", cfg.targeted,
                             cfg.repeats, 1, defense_package=reg.package,
                             defense_version=reg.version, traits=traits, precision=precision)
                cells.append(clean)
                cells.extend(_attack_cells(cfg, registry, clean, _settings_for(traits)))
                cells.extend(_threat_cells(cfg, registry, clean))
    return list({c.key: c for c in cells}.values())  # duplicates in a config run once


def _attack_cells(cfg: RunConfig, registry: Registry, clean: Cell, ok: set[str]) -> list[Cell]:
    """The evasion cells of one defense parameter set: attack × parameters × strength ×
    setting."""
    cells = []
    for a in cfg.attacks:
        reg = registry.registration("attack", a.name)
        traits = replace(clean.traits, attack_iterative=bool(getattr(reg.cls, "iterative", False)),
                         attack_strength=getattr(reg.cls, "strength", None))
        for ap in combinations(a):
            instantiate(reg.cls, ap, f"attack {a.name!r}")
            afull = {**defaults(reg.cls), **ap}
            settings = [s for s in a.settings if s in ok]
            if len(settings) < len(a.settings) and WHITEBOX not in settings:
                settings.append(WHITEBOX)  # its line stands in for the settings it equals
            for strength, setting in itertools.product(a.strengths, settings):
                cells.append(replace(
                    clean, attack=a.name, attack_params=afull, attack_strength=float(strength),
                    setting=setting, eot_samples=cfg.eot_samples if spec(setting).eot else 1,
                    attack_package=reg.package, attack_version=reg.version, traits=traits,
                ))
    return cells


def _threat_cells(cfg: RunConfig, registry: Registry, clean: Cell) -> list[Cell]:
    """One cell per threat parameter set against one defense parameter set: a threat is not
    targeted, and runs in the white-box setting (it sees the deployed model as it is)."""
    cells = []
    for t in cfg.threats:
        reg = registry.registration("threat", t.name)
        tcls = reg.cls
        traits = replace(clean.traits, attack_strength=tcls.strength)
        for tp in combinations(t):
            instantiate(tcls, tp, f"threat {t.name!r}")
            tfull = {**defaults(tcls), **tp}
            cells.append(replace(
                clean, attack=t.name, attack_params=tfull,
                attack_strength=float(tfull[tcls.strength]), setting=WHITEBOX, targeted=False,
                kind="threat", attack_package=reg.package, attack_version=reg.version,
                traits=traits, threat_kind=threat_kind(tcls),
            ))
    return cells


def threat_kind(tcls: type) -> str:
    """The kind a threat class declares (``Threat.kind``; checked when its plugin loaded)."""
    return str(Kind(getattr(tcls, "kind", Kind.THREAT)).value)


def _settings_for(traits: Traits) -> set[str]:
    """Settings that differ for this defense (:meth:`SettingSpec.applies`): a deterministic
    model is the same under EOT and fixed randomness as in white-box, and only a defense with an
    exact expectation has one."""
    return {name for name, s in settings().items()
            if s.applies(bool(traits.defense_stochastic), bool(traits.defense_expectation))}
