"""Gradient-masking sanity checks (Athalye, Carlini & Wagner 2018, section 5), computed from a
defense's result lines alone, so they apply to any run, merged or resumed.

A defense that looks robust only because its gradients are useless fails at least one of:

(a) ``large_eps``: an L∞ attack with a very large ε reaches ~100% success, or at least the
    model's clean accuracy (a stochastic model may be unable to give any input one label more
    reliably than it labels its clean images); on a stochastic model a failure counts only when
    an EOT or expectation attack ran at that ε, since single-draw gradients may understate;
(b) ``iterative``: iterative attacks do at least as well as single-step ones (same ε, setting);
(c) ``iterations``: more iterations of the same attack do not lower success;
(d) ``eot``: EOT (averaged gradients) is not worse than the white-box attack.

"At least as well" allows for noise: the binomial error of each success rate over its examples
plus the spread of its repeated stochastic predictions, times ``z``. A check without the lines
it needs is "unknown". A defense with any failing check is flagged "possible gradient masking".

A fifth check, ``whitebox``, is not about masking but about which numbers to believe: the best
white-box attack must do about as well as the best adaptive one (EOT, fixed randomness,
expectation, or APGD's own EOT on a stochastic model: :func:`.frame.adaptive`) at the same ε.
Where an adaptive attack succeeds more often beyond the interval of the difference (paired on
the same images when the lines carry per-example outcomes, else the noise rule above), the
verdict says "white-box understates: use adaptive numbers", and the
leaderboard's headline ranks by the worst case over all settings.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hrsbench.record import Kind
from hrsbench.report.frame import adaptive, missing, model_id
from hrsbench.report.stats import paired_difference

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
OK, MASKING = "ok", "possible gradient masking"
UNDERSTATES = "white-box understates: use adaptive numbers"
#: Checks whose failure means possible gradient masking.
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


def _large_eps_target(line: Line, th: Thresholds) -> float:
    """Success expected at a very large ε: ``large_eps_asr``, or the model's clean accuracy if
    lower. With the whole input box reachable the attacker can substitute an input the model
    gives the wanted label about as often as it labels clean images correctly; a noisy model
    that is right on 62 % of clean draws cannot be driven to 95 % by honest gradients."""
    clean = line.get("clean_accuracy")
    if missing(clean):
        return th.large_eps_asr
    return min(th.large_eps_asr, float(clean))


def check_large_eps(lines: list[Line], traits: dict[str, Traits], th: Thresholds) -> dict:
    big = [r for r in lines if _traits(traits, r).strength == "eps"
           and float(r["attack_strength"]) >= th.large_eps]
    if not big:
        return _result([], f"no L∞ attack line with ε ≥ {th.large_eps:g}")
    best = max(big, key=lambda r: float(r["attack_success_rate"]))
    asr, tol = float(best["attack_success_rate"]), th.z * noise(best)
    target = _large_eps_target(best, th)
    comparison = {"what": f"best at large ε: {_label(best)}", "expected_higher": asr,
                  "other": round(target, 4), "tolerance": round(tol, 4),
                  "ok": asr >= target - tol}
    stochastic = any(r.get("stochastic") for r in big)
    if not comparison["ok"] and stochastic and not any(r["setting"] in ("eot", "expectation")
                                                       for r in big):
        return _result([], "a stochastic model short of the target at large ε with white-box "
                           "gradients only: run EOT or expectation there before calling masking")
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


def check_whitebox(lines: list[Line], traits: dict[str, Traits], th: Thresholds) -> dict:
    """The best white-box attack does about as well as the best adaptive one, per ε and
    targeting: else white-box numbers understate what an adaptive attacker achieves."""
    groups: dict[tuple, dict[str, list[Line]]] = defaultdict(lambda: defaultdict(list))
    for r in lines:
        if _traits(traits, r).strength == "eps":
            kind = "adaptive" if adaptive(r) else ("whitebox" if r["setting"] == "whitebox"
                                                    else None)
            if kind:
                groups[(float(r["attack_strength"]), r.get("targeted"))][kind].append(r)
    comparisons = []
    for group in groups.values():
        if group["whitebox"] and group["adaptive"]:
            white = max(group["whitebox"], key=lambda r: float(r["attack_success_rate"]))
            strongest = max(group["adaptive"], key=lambda r: float(r["attack_success_rate"]))
            comparisons.append(_compare_paired(white, strongest, th.z,
                                               f"{_label(white)} vs {_label(strongest)}"))
    return _result(comparisons, "no white-box and adaptive attack at the same ε")


def _compare_paired(better: Line, worse: Line, z: float, what: str) -> dict[str, Any]:
    """As :func:`_compare`, with the bootstrap interval of the paired difference where both
    lines carry per-example outcomes on the same images."""
    interval = paired_difference(better, worse)
    if interval is None:
        return _compare(better, worse, z, what)
    a, b = float(better["attack_success_rate"]), float(worse["attack_success_rate"])
    return {"what": what, "expected_higher": a, "other": b,
            "interval": [round(interval[0], 4), round(interval[1], 4)], "ok": interval[1] >= 0}


CHECKERS: dict[str, Callable[[list[Line], dict[str, Traits], Thresholds], dict]] = {
    "large_eps": check_large_eps,
    "iterative": check_iterative,
    "iterations": check_iterations,
    "eot": check_eot,
    "whitebox": check_whitebox,
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
    return {"verdict": verdict(checks), "checks": checks}


def verdict(checks: dict[str, dict[str, Any]]) -> str:
    """Masking if a masking check fails; white-box understating said beside it or alone."""
    masking = {checks[c]["status"] for c in CHECKS if c in checks}
    understates = checks.get("whitebox", {}).get("status") == FAIL
    if FAIL in masking:
        return f"{MASKING}; {UNDERSTATES}" if understates else MASKING
    if understates:
        return UNDERSTATES
    statuses = masking | {checks.get("whitebox", {}).get("status")}
    return OK if PASS in statuses else UNKNOWN


def _evasion(line: Line) -> bool:
    """Not a threat's line (reprogramming …): those are not evasion attacks with an ε budget.
    A cell's own ``kind`` ("attack" / "threat") reads the same way."""
    return line.get("kind") not in (Kind.REPROGRAMMING, Kind.THREAT)


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
