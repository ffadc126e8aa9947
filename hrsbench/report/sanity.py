"""Gradient-masking sanity checks (Athalye, Carlini & Wagner 2018, section 5), computed from a
defense's result lines alone, so they apply to any run, merged or resumed.

A defense that looks robust only because its gradients are useless fails at least one of:

(a) ``large_eps``: an L∞ attack with a very large ε reaches ~100% success;
(b) ``iterative``: iterative attacks do at least as well as single-step ones (same ε, setting);
(c) ``iterations``: more iterations of the same attack do not lower success;
(d) ``eot``: EOT (averaged gradients) is not worse than the white-box attack.

"At least as well" allows for noise: the binomial error of each success rate over its examples
plus the spread of its repeated stochastic predictions, times ``z``. A check without the lines
it needs is "unknown". A defense with any failing check is flagged "possible gradient masking".
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hrsbench.report.frame import model_id

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
OK, MASKING = "ok", "possible gradient masking"
CHECKS = ("large_eps", "iterative", "iterations", "eot")

Line = dict[str, Any]


@dataclass(frozen=True)
class Traits:
    """What the checks need to know of an attack: its strength parameter and whether it
    iterates. Result lines record both (``attack_strength_param``, ``iterative``); a mapping of
    attack name to traits given to the checks overrides them (hand-made lines lack them)."""

    strength: str = "eps"
    iterative: bool = False


@dataclass(frozen=True)
class Thresholds:
    #: ε (pixel units, [0, 1] inputs) from which a budget counts as very large for check (a).
    large_eps: float = 0.5
    #: Success that counts as "~100%" at a very large ε.
    large_eps_asr: float = 0.95
    #: Noise multiplier: a difference within z standard errors is not a failure.
    z: float = 2.0


def noise(line: Line) -> float:
    """Standard error of a line's success rate: binomial over its examples (with one success and
    one failure added, so 0% and 100% are not exact) plus its repeats' spread."""
    n = max(int(line.get("n_examples") or 0), 1)
    p = (float(line["attack_success_rate"]) * n + 1) / (n + 2)
    repeats = max(int(line.get("repeats") or 1), 1)
    spread = float(line.get("attack_success_rate_std") or 0.0)
    return math.sqrt(p * (1 - p) / n + spread**2 / repeats)


def _compare(better: Line, worse: Line, z: float, what: str) -> dict[str, Any]:
    """``better`` is expected to succeed at least as often as ``worse``, up to noise."""
    tol = z * math.hypot(noise(better), noise(worse))
    a, b = float(better["attack_success_rate"]), float(worse["attack_success_rate"])
    return {"what": what, "expected_higher": a, "other": b, "tolerance": round(tol, 4),
            "ok": a >= b - tol}


def _result(comparisons: list[dict[str, Any]], none_reason: str) -> dict[str, Any]:
    if not comparisons:
        return {"status": UNKNOWN, "reason": none_reason, "comparisons": []}
    failed = [c for c in comparisons if not c["ok"]]
    return {"status": FAIL if failed else PASS,
            "reason": "; ".join(c["what"] for c in failed) or "all comparisons within noise",
            "comparisons": comparisons}


def _label(line: Line) -> str:
    return f"{line['attack']} {line['setting']} {line['attack_strength']:g}"


def _params_key(line: Line, drop: str | None = None) -> str:
    params = line.get("attack_params") or {}
    return json.dumps({k: v for k, v in params.items() if k != drop}, sort_keys=True)


def check_large_eps(lines: list[Line], traits: dict[str, Traits], th: Thresholds) -> dict:
    big = [r for r in lines if _traits(traits, r).strength == "eps"
           and float(r["attack_strength"]) >= th.large_eps]
    if not big:
        return _result([], f"no L∞ attack line with ε ≥ {th.large_eps:g}")
    best = max(big, key=lambda r: float(r["attack_success_rate"]))
    asr, tol = float(best["attack_success_rate"]), th.z * noise(best)
    comparison = {"what": f"best at large ε: {_label(best)}", "expected_higher": asr,
                  "other": th.large_eps_asr, "tolerance": round(tol, 4),
                  "ok": asr >= th.large_eps_asr - tol}
    return _result([comparison], "")


def check_iterative(lines: list[Line], traits: dict[str, Traits], th: Thresholds) -> dict:
    groups: dict[tuple, list[Line]] = defaultdict(list)
    for r in lines:
        if _traits(traits, r).strength == "eps":
            groups[(r["setting"], float(r["attack_strength"]), r.get("targeted"))].append(r)
    comparisons = [
        _compare(it, single, th.z, f"{_label(it)} vs {single['attack']}")
        for group in groups.values()
        for single in group if not _traits(traits, single).iterative
        for it in group if _traits(traits, it).iterative
    ]
    return _result(comparisons, "no iterative and single-step attack at the same ε and setting")


def check_iterations(lines: list[Line], traits: dict[str, Traits], th: Thresholds) -> dict:
    groups: dict[tuple, list[Line]] = defaultdict(list)
    for r in lines:
        iters = (r.get("attack_params") or {}).get("max_iter")
        if iters is not None:
            key = (r["attack"], r["setting"], float(r["attack_strength"]), r.get("targeted"),
                   _params_key(r, drop="max_iter"))
            groups[key].append(r)
    comparisons = []
    for group in groups.values():
        ordered = sorted(group, key=lambda r: r["attack_params"]["max_iter"])
        for fewer, more in zip(ordered, ordered[1:], strict=False):
            n_few, n_more = fewer["attack_params"]["max_iter"], more["attack_params"]["max_iter"]
            if n_more > n_few:
                comparisons.append(_compare(more, fewer, th.z,
                                            f"{_label(more)}: {n_more} vs {n_few} iterations"))
    return _result(comparisons, "no attack run with two iteration counts")


def check_eot(lines: list[Line], traits: dict[str, Traits], th: Thresholds) -> dict:
    groups: dict[tuple, dict[str, Line]] = defaultdict(dict)
    for r in lines:
        if r["setting"] in ("eot", "whitebox"):
            key = (r["attack"], float(r["attack_strength"]), r.get("targeted"),
                   _params_key(r))
            groups[key][r["setting"]] = r
    comparisons = [
        _compare(g["eot"], g["whitebox"], th.z, f"{_label(g['eot'])} vs whitebox")
        for g in groups.values() if {"eot", "whitebox"} <= set(g)
    ]
    return _result(comparisons, "no attack run both with EOT and white-box")


CHECKERS: dict[str, Callable[[list[Line], dict[str, Traits], Thresholds], dict]] = {
    "large_eps": check_large_eps,
    "iterative": check_iterative,
    "iterations": check_iterations,
    "eot": check_eot,
}


def _traits(traits: dict[str, Traits], line: Line) -> Traits:
    """The attack's traits: given ones first, else those the line recorded at run time."""
    if line["attack"] in traits:
        return traits[line["attack"]]
    if line.get("iterative") is None:
        return Traits()
    return Traits(line.get("attack_strength_param") or "eps", bool(line["iterative"]))


def check_defense(lines: Iterable[Line], traits: dict[str, Traits] | None = None,
                  thresholds: Thresholds | None = None) -> dict[str, Any]:
    """All checks on one defense model's lines (attack-free lines are ignored, and so are
    threat lines such as reprogramming: they are not evasion attacks with an ε budget)."""
    traits = traits or {}
    th = thresholds or Thresholds()
    attacked = [r for r in lines if r["attack"] != "none" and _evasion(r)
                and r.get("attack_success_rate") is not None]
    checks = {name: fn(attacked, traits, th) for name, fn in CHECKERS.items()}
    statuses = {c["status"] for c in checks.values()}
    verdict = MASKING if FAIL in statuses else OK if PASS in statuses else UNKNOWN
    return {"verdict": verdict, "checks": checks}


def _evasion(line: Line) -> bool:
    """An evasion attack's line (not a clean line, nor a threat such as reprogramming)."""
    return line.get("kind") in (None, "evasion")


def check_all(lines: Iterable[Line], traits: dict[str, Traits] | None = None,
              thresholds: Thresholds | None = None) -> list[dict[str, Any]]:
    """One report per defense model found in ``lines``, in order of first appearance."""
    th = thresholds or Thresholds()
    groups: dict[str, list[Line]] = defaultdict(list)
    for r in lines:
        groups[model_id(r)].append(r)
    return [
        {"model_key": key, "dataset": group[0].get("dataset"), "defense": group[0]["defense"],
         "params": group[0].get("params"), **check_defense(group, traits, th)}
        for key, group in groups.items()
    ]


def annotate(lines: list[Line], traits: dict[str, Traits] | None = None,
             thresholds: Thresholds | None = None) -> list[Line]:
    """Copies of ``lines`` with a ``sanity`` field: their defense model's verdict."""
    verdicts = {r["model_key"]: r["verdict"] for r in check_all(lines, traits, thresholds)}
    return [{**r, "sanity": verdicts[model_id(r)]} for r in lines]


def write_report(out_dir: str | Path, lines: list[Line], traits: dict[str, Traits] | None = None,
                 thresholds: Thresholds | None = None) -> Path:
    """``sanity.json`` beside a run's ``results.jsonl``: the thresholds and every report."""
    th = thresholds or Thresholds()
    path = Path(out_dir) / "sanity.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"thresholds": asdict(th), "defenses": check_all(lines, traits, th)}
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path
