"""A run config expanded into cells: independent, serialisable units of work (one defense
parameter set × attack × strength × setting), each with a key that identifies its result."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

from hrsbench.cache import stable_hash
from hrsbench.config import RunConfig
from hrsbench.params import defaults, instantiate
from hrsbench.plugins import Registry

MODEL_FORMAT = 2  # bump when training code changes what a cached model contains


def grid(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the list-valued parameters."""
    keys = list(params)
    axes = [v if isinstance(v, list) else [v] for v in params.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes)]


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

    def to_dict(self) -> dict[str, Any]:
        """The cell's fields; ``kind`` only when it is not "attack", so attack cells keep the
        keys (and results already on disk) they had before threats existed."""
        d = asdict(self)
        if d["kind"] == "attack":
            del d["kind"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        return cls(**d)

    @property
    def training_key(self) -> str:
        """What determines training apart from the defense: a defense adds its own name and
        parameters to it, or only the parts that matter (HRS channels are reused across widths)."""
        return stable_hash([MODEL_FORMAT, self.dataset, self.n_train, self.epochs, self.seed])

    @property
    def model_key(self) -> str:
        """What determines the trained model: a cell's results share it with its siblings."""
        return stable_hash(
            [MODEL_FORMAT, self.dataset, self.n_train, self.epochs, self.seed, self.defense,
             self.params]
        )

    @property
    def key(self) -> str:
        return stable_hash(self.to_dict())


def expand(cfg: RunConfig, registry: Registry) -> list[Cell]:
    """All cells of ``cfg``, validating plugin names and parameters against the registry.

    Each defense parameter set gets a clean-only cell (attack "none") so its clean accuracy is
    recorded even without attacks; settings that cannot differ for a defense are dropped. Each
    threat parameter set gets one cell per defense parameter set.
    """
    registry.get("dataset", cfg.dataset)
    cells = []
    for d in cfg.defenses:
        dcls = registry.get("defense", d.name)
        settings_ok = _settings_for(dcls)
        for p in grid(d.params):
            instantiate(dcls, p, f"defense {d.name!r}")
            full = {**defaults(dcls), **p}
            common = (cfg.dataset, cfg.n_train, cfg.n_test, cfg.n_clean, cfg.epochs, cfg.seed,
                      d.name, full)
            cells.append(Cell(*common, "none", {}, 0.0, "none", cfg.targeted, cfg.repeats, 1))
            for a in cfg.attacks:
                acls = registry.get("attack", a.name)
                for ap in grid(a.params):
                    instantiate(acls, ap, f"attack {a.name!r}")
                    afull = {**defaults(acls), **ap}
                    settings = [s for s in a.settings if s in settings_ok]
                    for strength, setting in itertools.product(a.strengths, settings):
                        cells.append(
                            Cell(
                                *common, a.name, afull, float(strength), setting, cfg.targeted,
                                cfg.repeats, cfg.eot_samples if setting == "eot" else 1,
                            )
                        )
            cells.extend(_threat_cells(cfg, registry, common))
    return list({c.key: c for c in cells}.values())  # duplicates in a config run once


def _threat_cells(cfg: RunConfig, registry: Registry, common: tuple[Any, ...]) -> list[Cell]:
    """One cell per threat parameter set against one defense parameter set: a threat is not
    targeted, and runs in the white-box setting (it sees the deployed model as it is)."""
    cells = []
    for t in cfg.threats:
        tcls = registry.get("threat", t.name)
        for tp in grid(t.params):
            instantiate(tcls, tp, f"threat {t.name!r}")
            tfull = {**defaults(tcls), **tp}
            strength = float(tfull[tcls.strength])
            cells.append(Cell(*common, t.name, tfull, strength, "whitebox", False, cfg.repeats, 1,
                              kind="threat"))
    return cells


def _settings_for(dcls: type) -> set[str]:
    """Settings that differ for this defense: a deterministic model is the same under EOT and
    fixed randomness as in white-box, and only a defense with an exact expectation has one."""
    from hrsbench.defense import Defense

    ok = {"whitebox"}
    if dcls.stochastic:
        ok |= {"eot", "fixed"}
        if dcls.expectation is not Defense.expectation:
            ok.add("expectation")
    return ok
