"""Gradient-masking sanity checks (Athalye, Carlini & Wagner 2018, section 5), computed from
result lines alone, so they apply to any run, merged or resumed.

Verdicts are per model *and budget*: a budget is one strength (ε), targeting and set of attacked
images (``n_test``), so a line is only ever compared with lines attacked on the same images at
the same ε, and each budget's lines carry their own verdict. Checks of one budget:

(b) ``iterative``: iterative gradient attacks do at least as well as single-step ones (same
    setting);
(c) ``iterations``: more iterations of the same gradient attack do not lower success;
(d) ``eot``: EOT (averaged gradients or predictions) is not worse than the same attack in the
    white-box setting;
(e) ``gradient_free``: no gradient-free attack (Square) beats every gradient attack: a random
    search that never asks for a gradient should not find what gradients cannot;
(f) ``whitebox`` (not about masking but about which numbers to believe): no adaptive attack (EOT,
    fixed randomness, expectation, or APGD's own EOT on a stochastic model:
    :func:`.frame.adaptive`) beats every white-box attack.

and one check of the whole model, whose failure marks every budget:

(a) ``large_eps``: an L∞ attack with a very large ε reaches ~100% success, or at least the
    model's clean accuracy (a stochastic model may be unable to give any input one label more
    reliably than it labels its clean images); on a stochastic model a failure counts only when
    an EOT or expectation attack ran at that ε, since single-draw gradients may understate.

Comparisons are paired on the same attacked examples when the lines carry per-example outcomes
(``successes``, ``repeats``): bootstrap intervals of the difference, resampled over the same
images (:mod:`.stats`). A check making k comparisons tests each at level 1 − 0.05/k
(Bonferroni), so a check that fails when *any* of its comparisons fails, or that picks the best
of k lines, does not fail more often for having more lines. "Beats every" is tested line by line
against each line it must beat, never against a maximum picked by estimate. Lines without
outcomes fall back to the noise rule: the binomial error of each success rate plus the spread of
its repeated predictions, times ``z``.

Where an adaptive line beats the white-box lines, ``whitebox`` says why:

- *randomness*: the same optimiser (attack and parameters but the EOT count) does worse in the
  white-box setting, or the gap exceeds what the optimiser alone buys on a deterministic model
  of the same dataset at the same budget (the interval of the difference of the two gaps): the
  verdict says "white-box understates: use adaptive numbers", and the leaderboard's headline
  ranks by the worst case over all settings;
- *stronger optimiser*: the adaptive attack's optimiser beats the white-box one on a
  deterministic model (the base) too, and the defended gap is not larger: white-box numbers are
  not too kind to the randomness, the white-box attack is just weaker (APGD against PGD);
- *undetermined*: no line tells the two apart; reported as understating, the cautious reading.

A check without the lines it needs is "unknown".
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrsbench.report.frame import adaptive, missing, model_id
from hrsbench.report.stats import (
    LEVEL,
    Bootstrap,
    attacked_images,
    outcome_columns,
    resampled_ratios,
)
from hrsbench.results.record import Kind

#: The gradient-masking checks of a run, beside its ``results.jsonl``.
SANITY_FILE = "sanity.json"

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
#: ``whitebox``'s status when every adaptive gap is its stronger optimiser's, not randomness.
EXPLAINED = "optimiser"
OK, MASKING = "ok", "possible gradient masking"
UNDERSTATES = "white-box understates: use adaptive numbers"
GRADIENT_FREE_WINS = "gradient-free beats gradient attacks: gradients may be masked"
OPTIMISER = "stronger optimiser, not randomness"
#: Checks whose failure means possible gradient masking (``gradient_free`` says so its own way).
CHECKS = ("large_eps", "iterative", "iterations", "eot", "gradient_free")
#: Attacks that never ask for a gradient (a mapping of traits given to the checks adds others).
GRADIENT_FREE = frozenset({"square"})
#: Causes ``whitebox`` gives an adaptive line that beats the white-box ones.
RANDOMNESS, STRONGER, UNDETERMINED = "randomness", "stronger optimiser", "undetermined"

Line = dict[str, Any]
#: (strength parameter, strength, targeted, attacked images): what one verdict is about.
Budget = tuple[str, float, Any, Any]


@dataclass(frozen=True)
class Traits:
    """What the checks need to know of an attack: its strength parameter, whether it iterates
    and whether it is gradient-free. Result lines record the first two
    (``attack_strength_param``, ``iterative``) and :data:`GRADIENT_FREE` names the built-in
    gradient-free attacks; a mapping of attack name to traits given to the checks overrides
    them (hand-made lines lack them)."""

    strength: str = "eps"
    iterative: bool = False
    gradient_free: bool = False


@dataclass(frozen=True)
class Thresholds:
    #: ε (pixel units, [0, 1] inputs) from which a budget counts as very large for check (a).
    large_eps: float = 0.5
    #: Success that counts as "~100%" at a very large ε.
    large_eps_asr: float = 0.95
    #: Noise multiplier for lines without per-example outcomes: a difference within z standard
    #: errors is not a failure.
    z: float = 2.0
    #: Two-sided level of each check's intervals, before the Bonferroni correction.
    level: float = LEVEL


def noise(line: Line) -> float:
    """Standard error of a line's success rate: binomial over its examples (with one success and
    one failure added, so 0% and 100% are not exact) plus its repeats' spread."""
    n = max(int(line.get("n_examples") or 0), 1)
    p = (float(line["attack_success_rate"]) * n + 1) / (n + 2)
    repeats = max(int(line.get("repeats") or 1), 1)
    spread = float(line.get("attack_success_rate_std") or 0.0)
    return math.sqrt(p * (1 - p) / n + spread**2 / repeats)


# -- paired intervals -------------------------------------------------------------------------

def rate_replicates(lines: list[Line], boot: Bootstrap | None = None) -> np.ndarray | None:
    """Success-rate resamples (replicates × lines) of lines attacked on the same images, every
    line on the same resamples of those images (so differences between them are paired);
    ``None`` unless every line carries per-example outcomes on the same images."""
    boot = boot or Bootstrap()
    cols = [outcome_columns(r) for r in lines]
    if not lines or any(c is None for c in cols) or any("dataset" not in r for r in lines):
        return None
    names = {attacked_images(r) for r in lines}
    if len(names) != 1 or len({len(c[0]) for c in cols}) != 1:  # type: ignore[index]
        return None
    num = np.stack([c[0] for c in cols], axis=1)  # type: ignore[index]
    den = np.stack([c[1] for c in cols], axis=1)  # type: ignore[index]
    return resampled_ratios(num, den, names.pop(), boot)


def _level(th: Thresholds, k: int) -> float:
    """Each of k comparisons' level, so that all k hold together at ``th.level``."""
    return 1.0 - (1.0 - th.level) / max(k, 1)


def _interval(higher: Line, lower: Line, th: Thresholds, k: int,
              minus: tuple[Line, Line] | None = None) -> tuple[float, float] | None:
    """Paired interval of ``higher − lower`` (minus the gap ``minus[0] − minus[1]`` of two lines
    of another model on the same images: a difference of differences), at the corrected level;
    ``None`` without per-example outcomes on one set of images."""
    lines = [higher, lower, *(minus or ())]
    reps = rate_replicates(lines)
    if reps is None:
        return None
    diff = reps[:, 0] - reps[:, 1]
    if minus is not None:
        diff = diff - (reps[:, 2] - reps[:, 3])
    with np.errstate(invalid="ignore"):
        lo, hi = Bootstrap(level=_level(th, k)).bounds(diff[:, None])
    return round(float(lo[0]), 4), round(float(hi[0]), 4)


def _rates(higher: Line, lower: Line, what: str) -> dict[str, Any]:
    return {"what": what, "expected_higher": float(higher["attack_success_rate"]),
            "other": float(lower["attack_success_rate"])}


def at_least(higher: Line, lower: Line, th: Thresholds, k: int, what: str) -> dict[str, Any]:
    """``higher`` is expected to succeed at least as often as ``lower``: ``ok`` unless it does
    worse beyond the interval (one of ``k`` comparisons) or, without outcomes, beyond noise."""
    out = _rates(higher, lower, what)
    interval = _interval(higher, lower, th, k)
    if interval is not None:
        return {**out, "interval": list(interval), "ok": interval[1] >= 0}
    tol = th.z * math.hypot(noise(higher), noise(lower))
    return {**out, "tolerance": round(tol, 4), "ok": out["expected_higher"] >= out["other"] - tol}


def beats(higher: Line, lower: Line, th: Thresholds, k: int, what: str) -> dict[str, Any]:
    """Whether ``higher`` succeeds more often than ``lower`` beyond the interval (one of ``k``
    comparisons) or, without outcomes, beyond noise: ``beats``."""
    out = _rates(higher, lower, what)
    interval = _interval(higher, lower, th, k)
    if interval is not None:
        return {**out, "interval": list(interval), "beats": interval[0] > 0}
    tol = th.z * math.hypot(noise(higher), noise(lower))
    return {**out, "tolerance": round(tol, 4),
            "beats": out["expected_higher"] > out["other"] + tol}


def _beats_all(line: Line, others: list[Line], th: Thresholds, k: int) -> dict[str, Any]:
    """``line`` against each of ``others``: it beats them all when it beats each (an
    intersection of tests needs no correction over ``others``; ``k`` corrects over the lines
    tried in ``line``'s place). Reported with the comparison that binds, the weakest one."""
    tried = [beats(line, o, th, k, f"{_label(line)} vs {_label(o)}") for o in others]
    binding = min(tried, key=lambda c: (c["beats"], _low(c)))
    return {**binding, "beats": all(c["beats"] for c in tried)}


def _low(c: Mapping[str, Any]) -> float:
    """How far a comparison's lower end clears 0 (the estimate's margin over noise without
    outcomes)."""
    if "interval" in c:
        return float(c["interval"][0])
    return c["expected_higher"] - c["other"] - c["tolerance"]


# -- checks -----------------------------------------------------------------------------------

def _result(comparisons: list[dict[str, Any]], none_reason: str,
            failed: Callable[[dict[str, Any]], bool] = lambda c: not c["ok"]) -> dict[str, Any]:
    if not comparisons:
        return {"status": UNKNOWN, "reason": none_reason, "comparisons": []}
    bad = [c for c in comparisons if failed(c)]
    return {"status": FAIL if bad else PASS,
            "reason": "; ".join(c["what"] for c in bad) or "all comparisons within noise",
            "comparisons": comparisons}


def _label(line: Line) -> str:
    params = line.get("attack_params") or {}
    budget = next((f"{k}={params[k]}" for k in ("max_iter", "max_queries") if k in params), "")
    own_eot = params.get("eot_samples")
    extra = ", ".join(filter(None, [budget, f"eot_samples={own_eot}" if own_eot else ""]))
    return (f"{line['attack']}{f' ({extra})' if extra else ''} {line['setting']} "
            f"{line['attack_strength']:g}")


def _params_key(line: Line, drop: tuple[str, ...] = ()) -> str:
    params = line.get("attack_params") or {}
    return json.dumps({k: v for k, v in params.items() if k not in drop}, sort_keys=True)


def _optimiser(line: Line) -> tuple[str, str]:
    """What a line's attack computes apart from how it treats randomness: the attack and its
    parameters but an EOT count of its own."""
    return line["attack"], _params_key(line, drop=("eot_samples",))


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
    """The whole model's check: the best line at a very large ε, whatever its images."""
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


def check_iterative(lines: list[Line], traits: dict[str, Traits], th: Thresholds,
                    reference: list[Line]) -> dict:
    groups: dict[str, list[Line]] = defaultdict(list)
    for r in lines:
        if not _traits(traits, r).gradient_free:
            groups[r["setting"]].append(r)
    pairs = [(it, single) for group in groups.values()
             for single in group if not _traits(traits, single).iterative
             for it in group if _traits(traits, it).iterative]
    comparisons = [at_least(it, single, th, len(pairs), f"{_label(it)} vs {single['attack']}")
                   for it, single in pairs]
    return _result(comparisons, "no iterative and single-step gradient attack in one setting")


def check_iterations(lines: list[Line], traits: dict[str, Traits], th: Thresholds,
                     reference: list[Line]) -> dict:
    groups: dict[tuple, list[Line]] = defaultdict(list)
    for r in lines:
        iters = (r.get("attack_params") or {}).get("max_iter")
        if iters is not None and not _traits(traits, r).gradient_free:
            groups[(r["attack"], r["setting"], _params_key(r, drop=("max_iter",)))].append(r)
    pairs = []
    for group in groups.values():
        ordered = sorted(group, key=lambda r: r["attack_params"]["max_iter"])
        pairs += [(more, fewer) for fewer, more in zip(ordered, ordered[1:], strict=False)
                  if more["attack_params"]["max_iter"] > fewer["attack_params"]["max_iter"]]
    comparisons = [
        at_least(more, fewer, th, len(pairs), f"{_label(more)} vs "
                 f"{fewer['attack_params']['max_iter']} iterations")
        for more, fewer in pairs]
    return _result(comparisons, "no gradient attack run with two iteration counts")


def check_eot(lines: list[Line], traits: dict[str, Traits], th: Thresholds,
              reference: list[Line]) -> dict:
    groups: dict[tuple, dict[str, Line]] = defaultdict(dict)
    for r in lines:
        if r["setting"] in ("eot", "whitebox"):
            groups[(r["attack"], _params_key(r))][r["setting"]] = r
    pairs = [(g["eot"], g["whitebox"]) for g in groups.values() if {"eot", "whitebox"} <= set(g)]
    comparisons = [at_least(e, w, th, len(pairs), f"{_label(e)} vs whitebox") for e, w in pairs]
    return _result(comparisons, "no attack run both with EOT and white-box")


def check_gradient_free(lines: list[Line], traits: dict[str, Traits], th: Thresholds,
                        reference: list[Line]) -> dict:
    """Fails where a gradient-free attack beats every gradient attack on the same examples:
    honest gradients find at least what a random search of the model's outputs finds."""
    free = [r for r in lines if _traits(traits, r).gradient_free]
    gradient = [r for r in lines if not _traits(traits, r).gradient_free
                and _traits(traits, r).strength == "eps"]
    if not free or not gradient:
        return _result([], "no gradient-free and gradient L∞ attack at this budget")
    comparisons = [{**_beats_all(f, gradient, th, len(free)),
                    "what": f"{_label(f)} vs every gradient attack"} for f in free]
    return _result(comparisons, "", failed=lambda c: c["beats"])


def check_whitebox(lines: list[Line], traits: dict[str, Traits], th: Thresholds,
                   reference: list[Line]) -> dict:
    """No adaptive line beats every white-box line; where one does, its cause (module doc).
    ``reference``: lines of deterministic models of the same dataset at the same budget."""
    eps = [r for r in lines if _traits(traits, r).strength == "eps"]
    white = [r for r in eps if r["setting"] == "whitebox" and not adaptive(r)]
    adapted = [r for r in eps if adaptive(r)]
    if not white or not adapted:
        return _result([], "no white-box and adaptive attack at this budget")
    k = len(adapted)
    strongest = max(white, key=lambda r: float(r["attack_success_rate"]))
    comparisons = []
    for a in adapted:
        c = {**_beats_all(a, white, th, k), "what": f"{_label(a)} vs every white-box attack"}
        if c["beats"]:
            c["cause"], c["evidence"] = _cause(a, white, strongest, reference, th, k)
        comparisons.append(c)
    winners = [c for c in comparisons if c["beats"]]
    if not winners:
        return _result(comparisons, "", failed=lambda c: c["beats"])
    if all(c["cause"] == STRONGER for c in winners):
        return {"status": EXPLAINED, "comparisons": comparisons,
                "reason": "; ".join(f"{c['what']}: {c['evidence']}" for c in winners)}
    return {**_result(comparisons, "", failed=lambda c: c["beats"] and c["cause"] != STRONGER),
            "reason": "; ".join(f"{c['what']}: {c['cause']} ({c['evidence']})"
                                for c in winners if c["cause"] != STRONGER)}


def _cause(a: Line, white: list[Line], strongest: Line, reference: list[Line],
           th: Thresholds, k: int) -> tuple[str, str]:
    """Why adaptive line ``a`` beats the white-box lines: randomness, its stronger optimiser,
    or undetermined; with the comparison that says so."""
    same = [w for w in white if _optimiser(w) == _optimiser(a)]
    for w in same:
        if beats(a, w, th, k, "")["beats"]:
            return RANDOMNESS, f"beats {_label(w)}, the same optimiser"
    for model_lines in _by_model(reference):
        a_det = _find(model_lines, _optimiser(a))
        w_det = _find(model_lines, _optimiser(strongest))
        if a_det is None or w_det is None:
            continue
        gap = float(a_det["attack_success_rate"]) - float(w_det["attack_success_rate"])
        there = f"{a['attack']} − {strongest['attack']} on {a_det['defense']}: {gap:+.3f}"
        extra = _interval(a, strongest, th, k, minus=(a_det, w_det))
        if extra is not None and extra[0] > 0:
            return RANDOMNESS, (f"the gap exceeds the optimiser's ({there}; difference of "
                                f"gaps {list(extra)})")
        if gap > 0:
            return STRONGER, (f"{a['attack']} beats {strongest['attack']} on the "
                              f"deterministic {a_det['defense']} too ({there})")
        return UNDETERMINED, ("no optimiser gap on the deterministic model, nor one beyond "
                              f"it ({there})")
    what = ("no white-box line of the same optimiser beaten" if same
            else "no white-box line of the same optimiser")
    return UNDETERMINED, f"{what}, no deterministic model with both attacks at this budget"


def _by_model(lines: list[Line]) -> list[list[Line]]:
    """Lines grouped by model, the base defense's first."""
    groups: dict[str, list[Line]] = defaultdict(list)
    for r in lines:
        groups[model_id(r)].append(r)
    return sorted(groups.values(), key=lambda g: g[0].get("defense") != "base")


def _find(lines: list[Line], optimiser: tuple[str, str]) -> Line | None:
    return next((r for r in lines if _optimiser(r) == optimiser), None)


MODEL_CHECKERS: dict[str, Callable[[list[Line], dict[str, Traits], Thresholds], dict]] = {
    "large_eps": check_large_eps,
}
BUDGET_CHECKERS: dict[str, Callable[[list[Line], dict[str, Traits], Thresholds, list[Line]],
                                    dict]] = {
    "iterative": check_iterative,
    "iterations": check_iterations,
    "eot": check_eot,
    "gradient_free": check_gradient_free,
    "whitebox": check_whitebox,
}


def _traits(traits: dict[str, Traits], line: Line) -> Traits:
    """The attack's traits: given ones first, else those the line recorded at run time."""
    if line["attack"] in traits:
        return traits[line["attack"]]
    free = line["attack"] in GRADIENT_FREE
    if line.get("iterative") is None:
        return Traits(gradient_free=free)
    return Traits(line.get("attack_strength_param") or "eps", bool(line["iterative"]), free)


# -- reports ----------------------------------------------------------------------------------

def budget_of(line: Line, traits: dict[str, Traits] | None = None) -> Budget:
    """The budget a line's verdict is about: strength parameter, strength, targeting and
    attacked images (``n_test``; missing reads as None)."""
    n_test = line.get("n_test")
    return (_traits(traits or {}, line).strength, float(line["attack_strength"]),
            line.get("targeted"), None if missing(n_test) else int(n_test))


def describe(budget: Budget) -> str:
    """A budget as a reader names it: ``ε=0.251 · targeted · 10 images``."""
    param, strength, targeted, n_test = budget
    name = "ε" if param == "eps" else param
    aim = {True: "targeted", False: "untargeted"}.get(targeted)
    return " · ".join(filter(None, [f"{name}={strength:.3g}", aim,
                                    None if n_test is None else f"{n_test} images"]))


def verdict(checks: Mapping[str, Mapping[str, Any]]) -> str:
    """One budget's verdict from its checks and the model's: masking and gradient-free wins
    first, then what the white-box numbers are worth; ``ok`` if some check passed and none
    failed, else ``unknown``."""
    status = {name: c.get("status") for name, c in checks.items()}
    parts = []
    if any(status.get(c) == FAIL for c in CHECKS if c != "gradient_free"):
        parts.append(MASKING)
    if status.get("gradient_free") == FAIL:
        parts.append(GRADIENT_FREE_WINS)
    if status.get("whitebox") == FAIL:
        parts.append(UNDERSTATES)
    elif status.get("whitebox") == EXPLAINED:
        parts.append(OPTIMISER)
    if parts:
        return "; ".join(parts)
    return OK if PASS in status.values() else UNKNOWN


def _summary(verdicts: list[str]) -> str:
    """The model's verdict: every part some budget's verdict has, in the order they rank."""
    parts = {p for v in verdicts for p in v.split("; ")}
    order = [MASKING, GRADIENT_FREE_WINS, UNDERSTATES, OPTIMISER]
    found = [p for p in order if p in parts]
    if found:
        return "; ".join(found)
    return OK if OK in parts else UNKNOWN


def _attacked(lines: Iterable[Line]) -> list[Line]:
    """Evasion attack lines with a success rate: clean-only lines have none, and threat lines
    (reprogramming …) are not evasion attacks with an ε budget."""
    return [r for r in lines if r["attack"] != "none" and _evasion(r)
            and r.get("attack_success_rate") is not None]


def check_defense(lines: Iterable[Line], traits: dict[str, Traits] | None = None,
                  thresholds: Thresholds | None = None,
                  reference: Iterable[Line] = ()) -> dict[str, Any]:
    """All checks on one defense model's lines: the model's own (``checks``) and one report per
    budget (``budgets``, each with its ``verdict`` and ``checks``), and the model's ``verdict``
    summing them up. ``reference``: lines of deterministic models of the same dataset, which
    tell a stronger optimiser from randomness (:func:`check_whitebox`)."""
    traits = traits or {}
    th = thresholds or Thresholds()
    attacked = _attacked(lines)
    model_checks = {name: fn(attacked, traits, th) for name, fn in MODEL_CHECKERS.items()}
    groups: dict[Budget, list[Line]] = defaultdict(list)
    for r in attacked:
        groups[budget_of(r, traits)].append(r)
    references: dict[Budget, list[Line]] = defaultdict(list)
    for r in _attacked(reference):
        references[budget_of(r, traits)].append(r)
    budgets = []
    for budget in sorted(groups, key=_order):
        checks = {name: fn(groups[budget], traits, th, references[budget])
                  for name, fn in BUDGET_CHECKERS.items()}
        param, strength, targeted, n_test = budget
        budgets.append({"budget": describe(budget), "strength_param": param,
                        "attack_strength": strength, "targeted": targeted, "n_test": n_test,
                        "verdict": verdict({**model_checks, **checks}), "checks": checks})
    overall = (_summary([b["verdict"] for b in budgets]) if budgets
               else verdict(model_checks))
    return {"verdict": overall, "checks": model_checks, "budgets": budgets}


def _order(budget: Budget) -> tuple:
    param, strength, targeted, n_test = budget
    return (param, strength, str(targeted), -1 if n_test is None else n_test)


def _evasion(line: Line) -> bool:
    """Not a threat's line (reprogramming …): those are not evasion attacks with an ε budget.
    A cell's own ``kind`` ("attack" / "threat") reads the same way."""
    return line.get("kind") not in (Kind.REPROGRAMMING, Kind.THREAT)


def check_all(lines: Iterable[Line], traits: dict[str, Traits] | None = None,
              thresholds: Thresholds | None = None) -> list[dict[str, Any]]:
    """One report per defense model found in ``lines``, in order of first appearance; each
    stochastic model's adaptive gaps are read against the deterministic models of its
    dataset."""
    th = thresholds or Thresholds()
    groups: dict[str, list[Line]] = defaultdict(list)
    for r in lines:
        groups[model_id(r)].append(r)
    deterministic = [r for group in groups.values() for r in group if _deterministic(r)]
    reports = []
    for key, group in groups.items():
        dataset = group[0].get("dataset")
        reference = [r for r in deterministic if r.get("dataset") == dataset
                     and model_id(r) != key]
        reports.append({"model_key": key, "dataset": dataset, "defense": group[0]["defense"],
                        "params": group[0].get("params"),
                        **check_defense(group, traits, th, reference)})
    return reports


def _deterministic(line: Line) -> bool:
    """Whether a line's model is recorded as deterministic (unknown is not)."""
    stochastic = line.get("stochastic")
    return not missing(stochastic) and not bool(stochastic)


def budget_verdicts(lines: Iterable[Line], traits: dict[str, Traits] | None = None,
                    thresholds: Thresholds | None = None
                    ) -> dict[tuple[str, float, Any, Any], str]:
    """The verdict of every model at every budget it was attacked at, keyed by
    ``(model id, ε, targeted, n_test)`` (:func:`.frame.model_id`; ``n_test`` None when the lines
    lack it), for a table with one row per model and budget. Budgets of another strength
    parameter (CW's confidence) are left out: their strengths are no ε."""
    out = {}
    for report in check_all(lines, traits, thresholds):
        for b in report["budgets"]:
            if b["strength_param"] == "eps":
                out[(report["model_key"], b["attack_strength"], b["targeted"], b["n_test"])] = (
                    b["verdict"])
    return out


def annotate(lines: list[Line], traits: dict[str, Traits] | None = None,
             thresholds: Thresholds | None = None,
             reports: list[dict[str, Any]] | None = None) -> list[Line]:
    """Copies of ``lines`` with a ``sanity`` field: an attack line's is its model's verdict at
    its budget, a clean or threat line's the model's overall verdict. ``reports``: the
    :func:`check_all` of these lines when already computed (``sanity.json``'s ``defenses``)."""
    traits = traits or {}
    if reports is None:
        reports = check_all(lines, traits, thresholds)
    overall = {r["model_key"]: r["verdict"] for r in reports}
    at = {(r["model_key"], b["strength_param"], b["attack_strength"], b["targeted"],
           b["n_test"]): b["verdict"] for r in reports for b in r["budgets"]}
    attacked = {id(r) for r in _attacked(lines)}
    return [{**r, "sanity": at[(model_id(r), *budget_of(r, traits))] if id(r) in attacked
             else overall[model_id(r)]} for r in lines]


def write_report(out_dir: str | Path, lines: list[Line], traits: dict[str, Traits] | None = None,
                 thresholds: Thresholds | None = None) -> list[dict[str, Any]]:
    """``sanity.json`` beside a run's ``results.jsonl``: the thresholds and every report;
    returns the reports."""
    th = thresholds or Thresholds()
    path = Path(out_dir) / SANITY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    reports = check_all(lines, traits, th)
    report = {"thresholds": asdict(th), "defenses": reports}
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return reports


def read_report(out_dir: str | Path) -> list[dict[str, Any]] | None:
    """The reports a run's ``sanity.json`` holds, or None when it has none."""
    path = Path(out_dir) / SANITY_FILE
    return json.loads(path.read_text())["defenses"] if path.is_file() else None
