"""One line of ``results.jsonl``: :class:`ResultLine`, the record every part of hrsbench shares.

The engine writes one line per finished cell; the reporting side reads nothing else. A line is
versioned (``schema_version``) and made of explicit parts:

- ``model``: what determines the trained model (dataset, defense and its parameters, seed,
  training budget, the defense plugin's package and version): :meth:`ResultLine.model_id`;
- ``threat``: what the model faced (kind, attack or threat name, parameters, strength, setting,
  targeting, the attack plugin's package and version): :meth:`ResultLine.threat_key`;
- ``evaluation``: on what it was measured (attacked images and examples, clean images, repeated
  predictions, EOT samples);
- ``metrics``, ``provenance`` (versions, keys, timings) and ``traits`` (what the plugins declared
  at run time: the reporting never consults the installed plugins).

Missing values are ``None`` (JSON ``null``), never NaN; a line that holds NaN or Infinity is
refused on both writing and reading. ``docs/results-schema.md`` documents every field and a test
keeps it in step with these classes.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import types
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from typing import Any, Union, get_args, get_origin, get_type_hints

from hrsbench.errors import HrsbenchError
from hrsbench.results.storage import stable_hash

#: The version of the line format :class:`ResultLine` writes.
SCHEMA_VERSION = 3
#: Bumped when training code changes what a cached model contains: part of every model key.
MODEL_FORMAT = 2


class Kind(StrEnum):
    """What a line measures."""

    #: Clean accuracy only (attack name ``"none"``): one per model and evaluation.
    CLEAN = "clean"
    #: An evasion attack crafting a perturbation per attacked example.
    EVASION = "evasion"
    #: Adversarial reprogramming (a threat plugin training a program against the frozen model).
    REPROGRAMMING = "reprogramming"
    #: Any other threat plugin.
    THREAT = "threat"


@dataclass(frozen=True)
class ModelSpec:
    """What determines a trained model: lines sharing it share the model (and its cache entry)."""

    dataset: str
    defense: str
    #: Every parameter of the defense, defaults filled in; sequences are JSON lists.
    params: dict[str, Any]
    seed: int
    #: Training images (None: the whole training split).
    n_train: int | None
    #: Training epochs (None: not recorded, on hand-made lines).
    epochs: int | None
    #: The distribution that provided the defense plugin, and its version.
    package: str
    version: str
    #: The arithmetic the model was trained in: "fp32", or "bf16" (autocast, fp32 weights).
    precision: str = "fp32"

    def key(self) -> str:
        """The model-cache key: a new plugin version never reuses an old model, nor a run in
        one precision a model trained in the other (fp32 keys are those written before
        precision was recorded, so their cached models and lines stay valid)."""
        parts = [MODEL_FORMAT, self.dataset, self.n_train, self.epochs, self.seed,
                 self.defense, self.params, self.package, self.version]
        return stable_hash(parts if self.precision == "fp32" else [*parts, self.precision])


@dataclass(frozen=True)
class ThreatSpec:
    """What a model faced: an evasion attack in a setting, a threat plugin, or nothing (clean)."""

    kind: Kind
    #: Attack or threat name; ``"none"`` on a clean line.
    name: str
    #: Every parameter of the attack or threat, defaults filled in (execution options such as
    #: the batch size are not parameters).
    params: dict[str, Any]
    #: The value of the attack's strength parameter (ε for norm-bounded attacks).
    strength: float
    #: A registered setting's name (:mod:`hrsbench.results.vocabulary`); ``"none"`` on a clean
    #: or threat line without one.
    setting: str
    targeted: bool
    #: The distribution that provided the attack or threat plugin and its version (None on a
    #: clean line).
    package: str | None
    version: str | None


@dataclass(frozen=True)
class Evaluation:
    """What a line was measured on."""

    #: Test images attacked, as configured.
    n_test: int
    #: Attacked examples: (image, target) pairs in a targeted run, else images; 0 on a clean line.
    n_examples: int
    #: Clean test images as configured (None: the whole test split); part of the cell key.
    n_clean: int | None
    #: Clean test images the clean accuracy was measured on (None: not recorded).
    clean_images: int | None
    #: Stochastic predictions drawn per evaluated example.
    repeats: int
    #: Gradient samples averaged per attack step in the EOT setting (1 otherwise).
    eot_samples: int


@dataclass(frozen=True)
class Metrics:
    """What was measured; rates are fractions in [0, 1]."""

    clean_accuracy: float
    #: Spread of clean accuracy over the repeated predictions.
    clean_accuracy_std: float | None = None
    attack_success_rate: float | None = None
    #: Spread of the success rate over the repeated predictions (not a sampling error).
    attack_success_rate_std: float | None = None
    defense_rate: float | None = None
    #: Input-gradient deviation of the deployed model (Table 1) and of its sign.
    grad_std: float | None = None
    grad_sign_std: float | None = None
    #: Largest L∞ and mean L2 size of the perturbations.
    linf: float | None = None
    l2_mean: float | None = None
    #: Per attacked example, in the attacked order: predictions (of ``repeats``) the attack won,
    #: encoded by :func:`hrsbench.results.outcomes.encode_counts`.
    successes: str | None = None
    #: The same counts over the first ``repeats // 2`` predictions only: a worst case over
    #: attacks is picked on one half of the draws and scored on the other.
    successes_pick: str | None = None
    #: On a clean line, per clean test image: predictions (of ``repeats``) that were correct,
    #: encoded likewise.
    clean_correct: str | None = None
    #: Metrics particular to a threat plugin (e.g. reprogramming accuracy per epoch).
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def measured(cls, clean_accuracy: float, values: dict[str, Any],
                 extra_names: Iterable[str] = ()) -> Metrics:
        """Metrics from what an evaluation or a threat returned: the schema's fields as numbers
        or strings, and under ``extra`` the metrics a threat plugin declares
        (``extra_names``, its ``Threat.metrics``); any other name is an error, so a misspelt
        metric never disappears into ``extra`` (``n_examples`` belongs to :class:`Evaluation`
        and is left out)."""
        hints = _hints(cls)
        check_metric_names(values, extra_names)
        declared: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in values.items():
            if k in ("n_examples", "clean_accuracy", "extra"):
                continue
            if k not in hints:
                extra[k] = plain(v)
            elif v is None or hints[k] == str | None:
                declared[k] = v
            else:
                declared[k] = float(v)
        return cls(clean_accuracy=float(clean_accuracy), **declared, extra=extra)


def check_metric_names(values: Mapping[str, Any], extra_names: Iterable[str] = (),
                       who: str = "") -> None:
    """Refuse a metric name that is neither the schema's (:class:`Metrics`' fields, and
    ``n_examples``) nor among ``extra_names``, in one line naming ``who`` returned it."""
    known = set(_hints(Metrics)) - {"extra"} | {"n_examples"} | set(extra_names)
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise HrsbenchError(
            f"{who or 'a measurement'} returned metric {unknown[0]!r}{hint}, which the result "
            "schema does not know; a threat declares its own metrics in its class's "
            "`metrics` tuple")


@dataclass(frozen=True)
class Provenance:
    """Where and how a line was made."""

    hrsbench_version: str
    torch_version: str | None
    art_version: str | None
    python_version: str | None
    #: Hash of the run config that made the line.
    config_hash: str | None
    #: Identify the line's cell and model (:meth:`ResultLine.cell_key`, :meth:`ModelSpec.key`).
    cell_key: str
    model_key: str
    #: ISO 8601 time the cell finished.
    finished_at: str | None
    #: Seconds the cell took, and the model's training seconds (charged to one line per model).
    time_s: float | None
    train_time_s: float | None


@dataclass(frozen=True)
class Traits:
    """What the plugins declared when the line was made; the reporting reads these rather than
    the installed plugins, so a results file renders the same on every machine."""

    #: The deployed model draws fresh randomness on every prediction.
    defense_stochastic: bool
    #: The defense offers an exact expectation (the ``expectation`` setting applies).
    defense_expectation: bool
    #: The defense parameter its strength sweep varies (None: no sweep).
    defense_strength: str | None
    #: The attack iterates (sanity checks compare it with single-step attacks).
    attack_iterative: bool
    #: The name of the attack's strength parameter (``eps``, ``confidence``, ``kernel`` …).
    attack_strength: str | None


SECTIONS: dict[str, type] = {
    "model": ModelSpec, "threat": ThreatSpec, "evaluation": Evaluation, "metrics": Metrics,
    "provenance": Provenance, "traits": Traits,
}


@dataclass(frozen=True)
class ResultLine:
    """One finished cell. Build it with the section classes; read it with :meth:`from_json`."""

    model: ModelSpec
    threat: ThreatSpec
    evaluation: Evaluation
    metrics: Metrics
    provenance: Provenance
    traits: Traits
    schema_version: int = SCHEMA_VERSION

    def model_id(self) -> str:
        """Which trained model the line belongs to: the one definition the reports use."""
        return self.model.key()

    def threat_key(self) -> tuple[Any, ...]:
        """The threat a rate was measured under (:data:`THREAT_COLUMNS`): one leaderboard table."""
        t = self.threat
        return (self.model.dataset, t.name, canonical(t.params), t.strength, str(t.setting),
                t.targeted)

    def group_key(self) -> tuple[Any, ...]:
        """The lines DES compares (:data:`COMPARISON_COLUMNS`): the same threat, attacked images,
        clean images and seed; a defended line's base line shares it."""
        e = self.evaluation
        return (*self.threat_key(), e.n_test, e.clean_images, self.model.seed)

    def cell_key(self) -> str:
        """What identifies the cell: rerunning a config finds it by this key."""
        return cell_key(self.model, self.threat, self.evaluation)

    def to_dict(self) -> dict[str, Any]:
        """The line as stored, one object per section (values shared, not copied)."""
        d: dict[str, Any] = {name: _shallow(getattr(self, name)) for name in SECTIONS}
        d["threat"]["kind"] = self.threat.kind.value
        d["threat"]["setting"] = str(self.threat.setting)
        d["schema_version"] = self.schema_version
        return d

    def to_json(self) -> str:
        """The line as stored: compact JSON with sorted keys; NaN or Infinity is refused."""
        try:
            return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)
        except ValueError:
            bad = _non_finite_field(self.to_dict())
            raise HrsbenchError(f"result field {bad!r} is NaN or infinite; write None for a "
                                "missing value") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> ResultLine:
        """Parse and validate a stored line of this schema version (older versions go through
        :func:`hrsbench.results.migrate.migrate` first)."""
        return cls.from_dict(loads(text))

    @classmethod
    def from_dict(cls, data: Any) -> ResultLine:
        """Validate a decoded line: every field's type, named on failure."""
        if not isinstance(data, dict):
            raise HrsbenchError("a result line must be a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise HrsbenchError(f"result field 'schema_version' is {version!r}; this hrsbench "
                                f"reads {SCHEMA_VERSION} (migrate older lines first)")
        unknown = sorted(set(data) - set(SECTIONS) - {"schema_version"})
        if unknown:
            raise HrsbenchError(f"unknown result field {unknown[0]!r}")
        parts = {name: _section(sec, data.get(name), name) for name, sec in SECTIONS.items()}
        return cls(**parts, schema_version=version)

    def row(self) -> dict[str, Any]:
        """The line as one flat row with the column names of :func:`hrsbench.load_results`."""
        m, t, e = self.model, self.threat, self.evaluation
        row: dict[str, Any] = {
            "schema_version": self.schema_version,
            "dataset": m.dataset, "defense": m.defense, "params": m.params, "seed": m.seed,
            "n_train": m.n_train, "epochs": m.epochs, "defense_package": m.package,
            "defense_version": m.version, "precision": m.precision,
            "strength": (m.params.get(self.traits.defense_strength)
                         if self.traits.defense_strength else None),
            "kind": t.kind.value, "attack": t.name, "attack_params": t.params,
            "attack_strength": t.strength, "setting": str(t.setting), "targeted": t.targeted,
            "attack_package": t.package, "attack_version": t.version,
            "n_test": e.n_test, "n_examples": e.n_examples, "n_clean": e.clean_images,
            "n_clean_config": e.n_clean, "repeats": e.repeats, "eot_samples": e.eot_samples,
            "stochastic": self.traits.defense_stochastic,
            "has_expectation": self.traits.defense_expectation,
            "strength_param": self.traits.defense_strength,
            "iterative": self.traits.attack_iterative,
            "attack_strength_param": self.traits.attack_strength,
        }
        metrics = _shallow(self.metrics)
        extra = metrics.pop("extra")
        row.update(metrics)
        row.update(_shallow(self.provenance))
        row.update({k: v for k, v in extra.items() if k not in row})
        return row


#: Row columns naming the threat a line was measured under (one leaderboard table each).
THREAT_COLUMNS = ("dataset", "attack", "attack_params_key", "attack_strength", "setting",
                  "targeted")
#: Row columns a defended line and its base line share (:meth:`ResultLine.group_key`).
COMPARISON_COLUMNS = (*THREAT_COLUMNS, "n_test", "n_clean", "seed")


def canonical(value: Any) -> str:
    """A parameter dict as a stable string: dicts are unhashable, so grouping and matching use
    this instead, and two dicts with the same items in another order compare equal."""
    return json.dumps(value if value is not None else {}, sort_keys=True, default=str)


def cell_key(model: ModelSpec, threat: ThreatSpec, evaluation: Evaluation) -> str:
    """The key of a cell: its model, threat and the configured evaluation (not the outcomes)."""
    return stable_hash({
        "model": model.key(),
        "threat": [threat.kind.value, threat.name, threat.params, threat.strength,
                   str(threat.setting), threat.targeted, threat.package, threat.version],
        "evaluation": [evaluation.n_test, evaluation.n_clean, evaluation.repeats,
                       evaluation.eot_samples],
    })


def plain(value: Any) -> Any:
    """A value as JSON stores it: tuples become lists (so a key computed from a plugin's
    parameters equals the key computed from the line read back), numpy scalars and arrays
    numbers and lists; anything else JSON cannot hold becomes its text."""
    return json.loads(json.dumps(value, default=_jsonable))


def _jsonable(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, torch tensors
    return tolist() if callable(tolist) else str(value)


def loads(text: str | bytes) -> Any:
    """Decode one stored line's JSON, refusing NaN and Infinity (not JSON: a missing value is
    null) with an :class:`HrsbenchError`."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise HrsbenchError(f"malformed result line ({e.msg})") from None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A section's field annotations, resolved once per class (resolving is slow)."""
    return get_type_hints(cls)


def _shallow(obj: Any) -> dict[str, Any]:
    """A section's fields as a dict without deep-copying their values (rows are read-only)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _refuse_constant(name: str) -> Any:
    raise HrsbenchError(f"result line holds {name}; a missing value is null")


def _non_finite_field(d: dict[str, Any], prefix: str = "") -> str:
    for k, v in d.items():
        if isinstance(v, dict):
            found = _non_finite_field(v, f"{prefix}{k}.")
            if found:
                return found
        elif isinstance(v, float) and not math.isfinite(v):
            return prefix + k
    return ""


def _section(cls: type, data: Any, name: str) -> Any:
    if not isinstance(data, dict):
        raise HrsbenchError(f"result field {name!r} must be an object, not {data!r}")
    hints = _hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise HrsbenchError(f"unknown result field '{name}.{unknown[0]}'")
    values = {}
    for f in fields(cls):
        where = f"{name}.{f.name}"
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise HrsbenchError(f"result line lacks field {where!r}")
            continue
        values[f.name] = _value(data[f.name], hints[f.name], where)
    return cls(**values)


def _value(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the annotation ``hint`` (the few types the schema uses)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(hint):
            return None
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return _value(value, inner, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(where, "an object", value)
        return value
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        try:
            return hint(value)
        except ValueError:
            choices = ", ".join(m.value for m in hint)
            raise HrsbenchError(f"result field {where!r} is {value!r}; one of {choices}") from None
    return _scalar(value, hint, where)


def _scalar(value: Any, hint: type, where: str) -> Any:
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(where, "a number", value)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(where, "an integer", value)
        return value
    if hint is bool and not isinstance(value, bool):
        raise _type_error(where, "true or false", value)
    if hint is str and not isinstance(value, str):
        raise _type_error(where, "a string", value)
    return value


def _type_error(where: str, want: str, value: Any) -> HrsbenchError:
    return HrsbenchError(f"result field {where!r} must be {want}, not {value!r}")
