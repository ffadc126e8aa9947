"""Older result lines brought to the current schema
(:data:`hrsbench.results.record.SCHEMA_VERSION`).

Version 1 lines (no ``schema_version``) are flat objects. Migrating one:

- drops ``attack_params.batch_size`` (an execution option, not a parameter);
- turns HRS's ``channels = "10x10"`` into the list ``[10, 10]``;
- sets ``kind`` (absent: ``clean`` for attack ``"none"``, else ``evasion``; ``"threat"``: the
  threat's kind);
- records the plugins' package as ``"hrsbench"`` and their version as the line's
  ``hrsbench_version`` for the built-in plugins (``"unknown"`` for others), and their traits as
  the built-ins declared them (a line's own ``stochastic`` field wins);
- recomputes the cell and model keys from the migrated identity, so rerunning the config that
  made a line finds its cell.

Version 2 lines become version 3 by recording ``model.precision = "fp32"``: every model before
version 3 was trained in fp32, and an fp32 model's key is the one version 2 computed.

The numbers (rates, accuracies, timings) are carried over unchanged.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from hrsbench.errors import HrsbenchError
from hrsbench.results.record import (
    SCHEMA_VERSION,
    Evaluation,
    Kind,
    ModelSpec,
    ThreatSpec,
    Traits,
    cell_key,
    plain,
)
from hrsbench.results.storage import stable_hash

#: The built-in defenses' traits as version 1 declared them: (stochastic, exact expectation,
#: strength parameter).
BUILTIN_DEFENSES: dict[str, tuple[bool, bool, str | None]] = {
    "base": (False, False, None),
    "advtrain": (False, False, "eps"),
    "dropout": (True, False, "test_rate"),
    "gaussian": (True, False, "init"),
    "hrs": (True, True, "channels"),
    "sap": (True, False, "draws"),
}
#: The built-in attacks' traits as version 1 declared them: (iterative, strength parameter).
BUILTIN_ATTACKS: dict[str, tuple[bool, str]] = {
    "fgsm": (False, "eps"),
    **{n: (True, "eps") for n in ("pgd", "cwpgd", "pgd-adam", "cwpgd-adam", "apgd-ce",
                                  "apgd-dlr")},
    "cw": (True, "confidence"),
    "cw-art": (True, "confidence"),
}
#: The built-in threats: (kind, strength parameter).
BUILTIN_THREATS: dict[str, tuple[Kind, str]] = {"reprogram": (Kind.REPROGRAMMING, "kernel")}

#: Version 1 fields that are not metrics; whatever else a line holds beyond
#: :data:`V1_METRICS` is kept as a plugin metric (``metrics.extra``).
V1_IDENTITY = ("dataset", "defense", "params", "seed", "n_train", "epochs", "kind", "attack",
               "attack_params", "attack_strength", "setting", "targeted", "n_test",
               "n_examples", "n_clean", "repeats", "eot_samples", "strength", "stochastic",
               "hrsbench_version", "torch_version", "art_version", "python_version",
               "config_hash", "cell_key", "model_key", "finished_at", "time_s",
               "train_time_s")
V1_METRICS = ("clean_accuracy", "clean_accuracy_std", "attack_success_rate",
              "attack_success_rate_std", "defense_rate", "grad_std", "grad_sign_std", "linf",
              "l2_mean")
#: The fields version 1 required of every line.
V1_REQUIRED = ("dataset", "defense", "params", "attack", "attack_strength", "setting",
               "targeted", "n_examples", "clean_accuracy", "attack_success_rate", "seed",
               "hrsbench_version")
_SIZES = re.compile(r"^\d+(x\d+)*$")


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a decoded line of any version) as a line of the current version."""
    version = data.get("schema_version", 1)
    if version == SCHEMA_VERSION:
        return data
    if version == 1:
        return v2_to_v3(v1_to_v2(data))
    if version == 2:
        return v2_to_v3(data)
    raise HrsbenchError(f"result field 'schema_version' is {version!r}; this hrsbench reads "
                        f"1 to {SCHEMA_VERSION} (upgrade hrsbench to read newer lines)")


def v2_to_v3(v2: dict[str, Any]) -> dict[str, Any]:
    """One version 2 line as a version 3 line: its model was trained in fp32 (precision was
    recorded from version 3 on), which leaves its model and cell keys as they were."""
    model = v2.get("model")
    return {**v2, "schema_version": 3,
            "model": {**model, "precision": "fp32"} if isinstance(model, dict) else model}


def v1_to_v2(v1: dict[str, Any]) -> dict[str, Any]:
    """One version 1 line as a version 2 line (see the module docstring)."""
    missing = [k for k in V1_REQUIRED if k not in v1]
    if missing:
        raise HrsbenchError(f"result line lacks field {missing[0]!r}")
    hv = str(v1["hrsbench_version"])
    model = _model(v1, hv)
    threat = _threat(v1, hv)
    evaluation = Evaluation(
        n_test=int(v1.get("n_test") or v1["n_examples"]), n_examples=int(v1["n_examples"]),
        n_clean=_configured_n_clean(v1), clean_images=v1.get("n_clean"),
        repeats=int(v1.get("repeats") or 1), eot_samples=int(v1.get("eot_samples") or 1),
    )
    metrics = {k: v1[k] for k in V1_METRICS if k in v1}
    metrics["extra"] = {k: v for k, v in v1.items()
                        if k not in V1_IDENTITY and k not in V1_METRICS}
    provenance = {k: v1.get(k) for k in ("hrsbench_version", "torch_version", "art_version",
                                         "python_version", "config_hash", "finished_at",
                                         "time_s", "train_time_s")}
    return {
        "schema_version": 2,
        "model": {k: v for k, v in asdict(model).items() if k != "precision"},
        "threat": {**asdict(threat), "kind": threat.kind.value, "setting": str(threat.setting)},
        "evaluation": asdict(evaluation),
        "metrics": metrics,
        "provenance": {**provenance, "cell_key": cell_key(model, threat, evaluation),
                       "model_key": model.key()},
        "traits": asdict(_traits(v1)),
    }


def _model(v1: dict[str, Any], hv: str) -> ModelSpec:
    name = v1["defense"]
    params = plain(v1.get("params") or {})
    if name == "hrs" and isinstance(params.get("channels"), str) \
            and _SIZES.match(params["channels"]):
        params["channels"] = [int(c) for c in params["channels"].split("x")]
    package, version = _package(name in BUILTIN_DEFENSES, hv)
    return ModelSpec(v1["dataset"], name, params, int(v1["seed"]), v1.get("n_train"),
                     v1.get("epochs"), package, version)


def _threat(v1: dict[str, Any], hv: str) -> ThreatSpec:
    name = v1["attack"]
    params = {k: v for k, v in plain(v1.get("attack_params") or {}).items()
              if k != "batch_size"}
    if v1.get("kind") == "threat":
        kind = BUILTIN_THREATS.get(name, (Kind.THREAT, ""))[0]
        builtin = name in BUILTIN_THREATS
    elif name == "none":
        kind, builtin = Kind.CLEAN, False
    else:
        kind, builtin = Kind.EVASION, name in BUILTIN_ATTACKS
    package, version = (None, None) if kind == Kind.CLEAN else _package(builtin, hv)
    return ThreatSpec(kind, name, params, float(v1["attack_strength"]), str(v1["setting"]),
                      bool(v1["targeted"]), package, version)


def _package(builtin: bool, hv: str) -> tuple[str, str]:
    return ("hrsbench", hv) if builtin else ("unknown", "unknown")


def _traits(v1: dict[str, Any]) -> Traits:
    stochastic, expectation, strength = BUILTIN_DEFENSES.get(v1["defense"], (False, False, None))
    if strength not in (v1.get("params") or {}):
        strength = _strength_name(v1)
    if v1.get("stochastic") is not None:
        stochastic = bool(v1["stochastic"])
    if v1.get("kind") == "threat":
        iterative, attack_strength = False, BUILTIN_THREATS.get(v1["attack"], (None, None))[1]
    elif v1["attack"] == "none":
        iterative, attack_strength = False, None
    else:
        iterative, attack_strength = BUILTIN_ATTACKS.get(v1["attack"], (False, "eps"))
    return Traits(stochastic, expectation, strength, iterative, attack_strength)


def _strength_name(v1: dict[str, Any]) -> str | None:
    """A third-party defense's strength parameter: the one parameter whose value the line
    recorded as its strength (version 1 kept the value, not the name)."""
    value = v1.get("strength")
    if value is None:
        return None
    names = [k for k, v in (v1.get("params") or {}).items() if v == value]
    return names[0] if len(names) == 1 else None


def _configured_n_clean(v1: dict[str, Any]) -> int | None:
    """The clean-image count the config asked for: version 1 recorded the count measured, and
    hashed the configured one (None for the whole test split) into its cell key."""
    fields = ("dataset", "n_train", "n_test", "n_clean", "epochs", "seed", "defense", "params",
              "attack", "attack_params", "attack_strength", "setting", "targeted", "repeats",
              "eot_samples")
    cell = {k: v1.get(k) for k in fields}
    if v1.get("kind") == "threat":
        cell["kind"] = "threat"
    if v1.get("cell_key") and stable_hash({**cell, "n_clean": None}) == v1["cell_key"]:
        return None
    return v1.get("n_clean")

