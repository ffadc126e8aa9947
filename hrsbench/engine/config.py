"""Run configuration: a TOML file validated whole (pydantic) before any work, so a misspelt key,
a wrong type or an out-of-range number fails in one line instead of minutes into a run.

In ``[[defenses]]``, ``[[attacks]]`` and ``[[threats]]``, ``params`` values are literal (a list is
a list) and ``grid`` holds the axes to sweep, each a list of values: cells are their product.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from dataclasses import asdict, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from hrsbench.errors import HrsbenchError
from hrsbench.results.storage import stable_hash
from hrsbench.results.vocabulary import WHITEBOX, settings

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
Count = Annotated[StrictInt, Field(ge=1)]
Strength = Annotated[StrictFloat, Field(ge=0)]
Axis = Annotated[list[Any], Field(min_length=1)]


def _finite(value: Any, where: str) -> None:
    """NaN and infinity anywhere in a plugin's parameters: TOML allows them, JSON does not."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, not {value}")
    if isinstance(value, list | tuple):
        for item in value:
            _finite(item, where)
    if isinstance(value, dict):
        for k, item in value.items():
            _finite(item, f"{where}.{k}")


@dataclass(config=_STRICT)
class _Entry:
    """What defense, attack and threat entries share: a plugin name, literal parameters and the
    grid axes swept over them."""

    name: StrictStr
    params: dict[str, Any] = field(default_factory=dict)
    #: Axes to sweep: each a list of values; cells are their product, merged over ``params``.
    grid: dict[str, Axis] = field(default_factory=dict)

    @field_validator("params", "grid")
    @classmethod
    def _numbers_finite(cls, value: dict[str, Any]) -> dict[str, Any]:
        for k, v in value.items():
            _finite(v, k)
        return value

    @model_validator(mode="after")
    def _axis_not_also_a_param(self) -> Any:
        both = sorted(set(self.params) & set(self.grid))
        if both:
            raise ValueError(f"{both[0]!r} is in both params and grid; keep it in one")
        return self


@dataclass(config=_STRICT)
class DefenseEntry(_Entry):
    pass


def known_setting(name: str) -> str:
    """``name`` if it is a registered setting; the built-in ones are always registered, a
    plugin's once the plugins are loaded, which happens here only for a name not yet known."""
    if name not in settings():
        from hrsbench.plugin.registry import registry

        registry()
    if name not in settings():
        raise ValueError(f"unknown setting {name!r}; choose from {', '.join(settings())}")
    return name


@dataclass(config=_STRICT)
class AttackEntry(_Entry):
    #: Values of the attack's strength parameter (its class's ``strength``: "eps" for budgets).
    strengths: Annotated[list[Strength], Field(min_length=1, validate_default=True)] = field(
        default_factory=list
    )
    #: How the attack sees a stochastic defense (:mod:`hrsbench.results.vocabulary`).
    settings: Annotated[list[StrictStr], Field(min_length=1)] = field(
        default_factory=lambda: [WHITEBOX]
    )

    @field_validator("settings")
    @classmethod
    def _known_settings(cls, value: list[str]) -> list[str]:
        for name in value:
            known_setting(name)
        return value


@dataclass(config=_STRICT)
class ThreatEntry(_Entry):
    """A threat plugin (e.g. reprogramming) run against every defense of the config."""


@dataclass(config=_STRICT)
class RunConfig:
    dataset: StrictStr = "mnist"
    n_train: Count | None = None  # None: the whole training split
    n_test: Count = 100  # images attacked
    n_clean: Count | None = None  # images for clean accuracy; None: the whole test split
    epochs: Count = 5
    #: The training seeds: every model is trained and attacked once per seed. A config may write
    #: ``seed = N`` instead (read as ``seeds = [N]``); :attr:`seed` is the first of them. One
    #: field, so ``dataclasses.replace`` cannot leave two disagreeing.
    seeds: Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(
        min_length=1, description="Training seeds, each given once: every model is trained and "
        "attacked once per seed (seed = N may be written for seeds = [N])")] = field(
        default_factory=lambda: [0])
    targeted: StrictBool = True
    repeats: Count = 5  # stochastic predictions drawn per evaluation
    eot_samples: Count = 10
    #: Gradients sampled for the grad_std metric; fewer than 2 skips it.
    grad_samples: Annotated[StrictInt, Field(ge=0)] = 20
    batch_size: Count = 256
    #: Training arithmetic: "fp32"; "bf16" (autocast, fp32 master weights and optimizer
    #: state); "auto": bf16 where the run's device computes it natively, else fp32.
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    defenses: Annotated[list[DefenseEntry], Field(min_length=1)] = field(default_factory=list)
    attacks: list[AttackEntry] = field(default_factory=list)
    threats: list[ThreatEntry] = field(default_factory=list)
    #: A file of a paper's published numbers (:mod:`hrsbench.report.reference`) to print ours
    #: beside: a path relative to the config file, or the name of a built-in one
    #: (``mnist-paper``).
    reference: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _seed_is_one_seed(cls, data: Any) -> Any:
        """``seed = N`` (in a config file, or ``RunConfig(seed=N)``) becomes ``seeds = [N]``."""
        kwargs = data.kwargs if isinstance(data, ArgsKwargs) else data
        if not isinstance(kwargs, dict) or "seed" not in kwargs:
            return data
        if "seeds" in kwargs:
            raise ValueError("give seed or seeds, not both (seed = N is seeds = [N])")
        kwargs = {("seeds" if k == "seed" else k): ([v] if k == "seed" else v)
                  for k, v in kwargs.items()}
        return ArgsKwargs(data.args, kwargs) if isinstance(data, ArgsKwargs) else kwargs

    @field_validator("seeds")
    @classmethod
    def _each_seed_once(cls, seeds: list[int]) -> list[int]:
        """A repeated seed would train the same model twice."""
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seeds lists {repeated[0]} more than once; give each seed once")
        return seeds

    @property
    def seed(self) -> int:
        """The first training seed (the only one in a one-seed config)."""
        return self.seeds[0]

    @model_validator(mode="after")
    def _attacked_within_clean(self) -> Any:
        """Attacked images are the first ``n_test`` of the ``n_clean`` loaded: more would be
        silently capped. Only attacks use n_test: a threat-only config may leave it."""
        if self.attacks and self.n_clean is not None and self.n_test > self.n_clean:
            raise ValueError(f"n_test ({self.n_test}) exceeds n_clean ({self.n_clean}): the "
                             "attacked images are taken from the clean ones; raise n_clean")
        return self

    @property
    def hash(self) -> str:
        """Hash of what determines the results: an empty ``threats`` list is left out so configs
        written before threats existed keep their hash, and ``reference`` (what the results are
        compared with, not how they are made) never counts. One seed hashes as ``seed = N``,
        however it was written, so configs written before ``seeds`` existed keep their hash."""
        d = asdict(self)
        del d["reference"]
        if d["precision"] == "fp32":  # configs written before precision existed keep their hash
            del d["precision"]
        if len(d["seeds"]) == 1:
            d["seed"] = d.pop("seeds")[0]
        if not d["threats"]:
            del d["threats"]
        return stable_hash(d)


_ADAPTER = TypeAdapter(RunConfig)
_NO_DEFENSES = 'no [[defenses]] listed; add one: a line [[defenses]], then name = "base"'
_TABLES = ("defenses", "attacks", "threats")


def schema() -> dict[str, Any]:
    """The config file's JSON schema (``hrsbench config-schema``), with ``seed``: a spelling of
    ``seeds`` that the dataclass does not hold as a field of its own."""
    s = _ADAPTER.json_schema()
    s["properties"]["seed"] = {"type": "integer", "minimum": 0, "title": "Seed",
                               "description": "One training seed: seed = N is seeds = [N]"}
    return s


def parse_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    """``data`` (a parsed TOML document) as a RunConfig, or one line naming the first problem."""
    try:
        cfg = _ADAPTER.validate_python(data)
    except ValidationError as e:
        raise HrsbenchError(f"{source}: {_first_problem(e, data)}") from None
    if not cfg.defenses:  # checked here: code may build a RunConfig to fill in later
        raise HrsbenchError(f"{source}: {_NO_DEFENSES}")
    return cfg


def _first_problem(e: ValidationError, data: dict[str, Any]) -> str:
    """The error to show: an unknown key first (it also explains a 'missing' one), and a count
    of the rest so a user knows fixing one may reveal another."""
    errors = sorted(e.errors(), key=lambda er: er["type"] != "unexpected_keyword_argument")
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" * (len(errors) > 1)
    return _describe(errors[0], data) + more


def _where(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """``attacks[0] (pgd).strengths[1]``: the entry's name makes the position findable."""
    if "seed" in data and loc[:1] == ("seeds",):  # written seed = N, read as seeds = [N]
        return "seed"
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            entry = data.get(loc[0]) if i == 1 and loc[0] in _TABLES else None
            if isinstance(entry, list) and part < len(entry) and isinstance(entry[part], dict):
                name = entry[part].get("name")
                out += f" ({name})" if isinstance(name, str) else ""
        else:
            out += f".{part}" if out else str(part)
    return out


_TYPE_NAMES = {"int_type": "an integer", "int_from_float": "an integer",
               "float_type": "a number", "bool_type": "true or false",
               "string_type": "a string", "dict_type": "a table, e.g. { key = value }"}


def _describe(er: Any, data: dict[str, Any]) -> str:
    loc, kind, got = tuple(er["loc"]), er["type"], er.get("input")
    where = _where(loc, data)
    if kind == "unexpected_keyword_argument":
        return _unknown_key(loc, where)
    if kind == "missing":
        return f"{_where(loc[:-1], data) or 'config'}: missing {loc[-1]!r}"
    if kind == "list_type":
        return _not_a_list(loc, where, got)
    if kind == "too_short" and loc == ("defenses",):
        return _NO_DEFENSES
    if kind == "too_short":
        return f"{where} is empty; give at least one value"
    if kind in _TYPE_NAMES:
        return f"{where} must be {_TYPE_NAMES[kind]}, not {json.dumps(got, default=str)}"
    if kind == "finite_number":
        return f"{where} must be a finite number, not {got}"
    if kind in ("greater_than_equal", "less_than_equal"):
        sign = "≥" if kind == "greater_than_equal" else "≤"
        bound = next(iter(er["ctx"].values()))
        return f"{where} must be {sign} {bound:g}, not {got}"
    msg = str(er["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def _unknown_key(loc: tuple[Any, ...], where: str) -> str:
    parent = {"defenses": DefenseEntry, "attacks": AttackEntry, "threats": ThreatEntry}.get(
        loc[0] if len(loc) > 2 else "", RunConfig)
    valid = list(parent.__dataclass_fields__)
    key = str(loc[-1])
    near = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(valid)}"
    place = where.rsplit(".", 1)[0] + ": " if len(loc) > 1 else ""
    return f"{place}unknown config key {key!r}{hint}"


def _not_a_list(loc: tuple[Any, ...], where: str, got: Any) -> str:
    """``settings = "whitebox"`` reads as a list of letters to many parsers: say what to write."""
    if loc in ((t,) for t in _TABLES):
        return (f"{where} must be a list of tables: write [[{where}]] on its own line, then "
                f"name = \"...\" below it (not {where} = ...)")
    example = json.dumps([got] if isinstance(got, str | int | float) else ["..."])
    return f"{where} must be a list, e.g. {where.rsplit('.', 1)[-1]} = {example}"


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a directory, unreadable, non-UTF-8 or invalid file is one line."""
    if path.is_dir():
        raise HrsbenchError(f"config {path} is a directory; give a TOML file or a preset name")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise HrsbenchError(f"config {path} is not UTF-8 text (byte {e.start}); "
                            "is it a TOML file?") from None
    except OSError as e:
        raise HrsbenchError(f"cannot read config {path}: {e.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise HrsbenchError(f"{path}: invalid TOML: {e}") from None


def load_config(path: str | Path | None) -> tuple[RunConfig, str]:
    """A config file, or the built-in preset of that name; ``None`` is the quick preset."""
    name = "quick" if path is None else str(path)
    p = Path(name)
    folder: Any = p.resolve().parent
    if p.exists():
        data, source = read_toml(p), str(p)
    else:
        folder = resources.files("hrsbench") / "presets"
        preset = folder / f"{name}.toml"
        if not preset.is_file():
            raise HrsbenchError(
                f"no config file or preset named {name!r}; presets: {', '.join(presets())} "
                "(hrsbench presets describes them)"
            )
        data, source = tomllib.loads(preset.read_text()), f"preset {name}"
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


def preset_notes(name: str) -> tuple[str, str]:
    """A preset's summary (the first sentence of its header comment) and its ``# cost:`` line,
    the estimated cost every preset states."""
    text = (resources.files("hrsbench") / "presets" / f"{name}.toml").read_text()
    header, cost = [], "not stated"
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line[1:].strip()
        if body.lower().startswith("cost:"):
            cost = body[5:].strip()
        elif body and len(header) < 4:
            header.append(body)
    summary = " ".join(header)
    for end in (". ", "; ", ": "):
        summary = summary.split(end)[0]
    return summary.rstrip("."), cost


def check_strengths(cfg: RunConfig, registry: Any) -> None:
    """Budgets of norm-bounded attacks (strength parameter "eps") are fractions of the [0, 1]
    pixel range: above 1 every image is reachable and the number means nothing. Needs the
    registry, which knows each attack's strength parameter."""
    for i, a in enumerate(cfg.attacks):
        if getattr(registry.get("attack", a.name), "strength", None) != "eps":
            continue
        over = [s for s in a.strengths if s > 1]
        if over:
            raise HrsbenchError(
                f"attacks[{i}] ({a.name}).strengths: eps {over[0]:g} exceeds 1, the whole [0, 1] "
                "pixel range; give budgets as fractions of it, e.g. 8/255 = 0.0314"
            )
