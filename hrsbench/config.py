"""Run configuration: a TOML file, validated strictly so a misspelt key fails instead of being
ignored. Lists inside a defense's or attack's ``params`` are grid axes."""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from hrsbench.cache import stable_hash
from hrsbench.errors import HrsbenchError
from hrsbench.estimator import SETTINGS


@dataclass
class DefenseEntry:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    #: Axes to sweep: each a list of values; cells are their product, merged over ``params``.
    grid: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class AttackEntry:
    name: str
    strengths: list[float] = field(default_factory=list)
    settings: list[str] = field(default_factory=lambda: ["whitebox"])
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class ThreatEntry:
    """A threat plugin (e.g. reprogramming) run against every defense of the config."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class RunConfig:
    dataset: str = "mnist"
    n_train: int | None = None  # None: the whole training split
    n_test: int = 100  # images attacked
    n_clean: int | None = None  # images for clean accuracy; None: the whole test split
    epochs: int = 5
    seed: int = 0
    targeted: bool = True
    repeats: int = 5  # stochastic predictions drawn per evaluation
    eot_samples: int = 10
    grad_samples: int = 20  # gradients sampled for the grad_std metric; 0 skips it
    batch_size: int = 256
    defenses: list[DefenseEntry] = field(default_factory=list)
    attacks: list[AttackEntry] = field(default_factory=list)
    threats: list[ThreatEntry] = field(default_factory=list)
    #: A file of a paper's published numbers (:mod:`hrsbench.reference`) to print ours beside:
    #: a path relative to the config file, or the name of a built-in one (``mnist-paper``).
    reference: str | None = None

    @property
    def hash(self) -> str:
        """Hash of what determines the results: an empty ``threats`` list is left out so configs
        written before threats existed keep their hash, and ``reference`` (what the results are
        compared with, not how they are made) never counts."""
        d = asdict(self)
        del d["reference"]
        if not d["threats"]:
            del d["threats"]
        return stable_hash(d)


def _check_keys(table: dict[str, Any], cls: type, where: str) -> None:
    valid = [f.name for f in fields(cls)]
    for key in table:
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(valid)}"
            raise HrsbenchError(f"{where}: unknown config key {key!r}{hint}")


def _entries(data: dict[str, Any], table: str, cls: type, source: str) -> list[Any]:
    """The ``[[table]]`` array as ``cls`` objects, each checked for unknown keys and a name."""
    out = []
    for i, entry in enumerate(data.get(table, [])):
        where = f"{source}: {table}[{i}]"
        _check_keys(entry, cls, where)
        if "name" not in entry:
            raise HrsbenchError(f"{where}: missing 'name'")
        out.append(cls(**entry))
    return out


def parse_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    _check_keys(data, RunConfig, source)
    top = {k: v for k, v in data.items() if k not in ("defenses", "attacks", "threats")}
    defenses = _entries(data, "defenses", DefenseEntry, source)
    attacks = _entries(data, "attacks", AttackEntry, source)
    for i, entry in enumerate(attacks):
        bad = [s for s in entry.settings if s not in SETTINGS]
        if bad:
            raise HrsbenchError(f"{source}: attacks[{i}]: unknown setting {bad[0]!r}; "
                                f"choose from {', '.join(SETTINGS)}")
    threats = _entries(data, "threats", ThreatEntry, source)
    try:
        cfg = RunConfig(**top, defenses=defenses, attacks=attacks, threats=threats)
    except TypeError as e:
        raise HrsbenchError(f"{source}: {e}") from None
    if not cfg.defenses:
        raise HrsbenchError(f"{source}: no [[defenses]] listed")
    return cfg


def load_config(path: str | Path | None) -> tuple[RunConfig, str]:
    """A config file, or the built-in preset of that name; ``None`` is the quick preset."""
    name = "quick" if path is None else str(path)
    p = Path(name)
    folder: Any = p.resolve().parent
    if p.exists():
        text, source = p.read_text(), str(p)
    else:
        folder = resources.files("hrsbench") / "presets"
        preset = resources.files("hrsbench") / "presets" / f"{name}.toml"
        if not preset.is_file():
            raise HrsbenchError(
                f"no config file or preset named {name!r}; presets: {', '.join(presets())}"
            )
        text, source = preset.read_text(), f"preset {name}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise HrsbenchError(f"{source}: invalid TOML: {e}") from None
    cfg = parse_config(data, source)
    if cfg.reference is not None:
        cfg.reference = str(reference_path(cfg.reference, folder, source))
    return cfg, source


def reference_path(name: str, folder: Any, source: str) -> Any:
    """A reference file beside the config, else the built-in reference of that name."""
    for candidate in (folder / name, resources.files("hrsbench") / "references" / f"{name}.toml"):
        if candidate.is_file():
            return candidate
    builtin = sorted(p.name[:-5] for p in (resources.files("hrsbench") / "references").iterdir()
                     if p.name.endswith(".toml"))
    raise HrsbenchError(f"{source}: reference {name!r} is neither a file beside the config nor "
                        f"a built-in reference ({', '.join(builtin)})")


def presets() -> list[str]:
    folder = resources.files("hrsbench") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))
