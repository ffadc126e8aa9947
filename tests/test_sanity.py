"""Each gradient-masking sanity check flags a deliberately masked toy defense and passes a normal
one, on lines produced by the engine's own evaluate(); plus the noise rule and the reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hrsbench.report.sanity import (
    EXPLAINED,
    FAIL,
    MASKING,
    OK,
    OPTIMISER,
    PASS,
    UNDERSTATES,
    UNKNOWN,
    Thresholds,
    Traits,
    annotate,
    budget_verdicts,
    check_all,
    check_defense,
    read_report,
    write_report,
)
from tests.toys import (
    DeterministicToy,
    HonestAtClean,
    Noisy,
    Prototype,
    Quantised,
    Stateful,
    ToyDefense,
    attack_line,
    one_thread,
)

#: The built-in attacks' traits (result lines record them; the toy lines here are hand-made).
TRAITS = {"fgsm": Traits("eps", False), "pgd": Traits("eps", True),
          "cwpgd": Traits("eps", True), "apgd-ce": Traits("eps", True),
          "cw": Traits("confidence", True)}
PGD20 = {"max_iter": 20}


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def statuses(report: dict, check: str) -> list[str]:
    """A check's status in a model's report: the model's own, or one per budget."""
    if check in report["checks"]:
        return [report["checks"][check]["status"]]
    return [b["checks"][check]["status"] for b in report["budgets"]]


def overall(found: list[str]) -> str:
    """Fail if any budget fails, pass if any passes, else unknown."""
    return FAIL if FAIL in found else PASS if PASS in found else UNKNOWN


def status(lines, check, traits=TRAITS):
    return overall(statuses(check_defense(lines, traits), check))


def only_budget(report: dict) -> dict:
    (budget,) = report["budgets"]
    return budget


def test_traits_recorded_in_lines_are_used_without_a_mapping():
    single = {**line("fgsm", 0.60), "iterative": False, "attack_strength_param": "eps"}
    weak = {**line("pgd", 0.30, max_iter=10), "iterative": True, "attack_strength_param": "eps"}
    assert status([single, weak], "iterative", {}) == FAIL
    # a confidence-strength attack is not an L∞ budget: no large-ε check from it
    cw = {**line("cw", 0.10, eps=5.0), "iterative": True, "attack_strength_param": "confidence"}
    assert status([cw], "large_eps", {}) == UNKNOWN


@pytest.mark.parametrize("model, expected", [(Prototype, PASS), (Quantised, FAIL)])
def test_large_eps_flags_zero_gradients(model, expected):
    lines = [attack_line(DeterministicToy(), model(), "pgd", 1.0, params=PGD20)]
    assert status(lines, "large_eps") == expected


@pytest.mark.parametrize("model, expected", [(Prototype, PASS), (HonestAtClean, FAIL)])
def test_iterative_vs_single_step_flags_gradients_useless_after_one_step(model, expected):
    defense, net = DeterministicToy(), model()
    lines = [attack_line(defense, net, "fgsm", 0.3),
             attack_line(defense, net, "pgd", 0.3, params=PGD20)]
    assert status(lines, "iterative") == expected


@pytest.mark.parametrize("model, expected", [(Prototype, PASS), (HonestAtClean, FAIL)])
def test_more_iterations_flags_a_falling_success_rate(model, expected):
    defense, net = DeterministicToy(), model()
    lines = [attack_line(defense, net, "pgd", 0.3, params={"max_iter": k}) for k in (1, 20)]
    assert status(lines, "iterations") == expected


@pytest.mark.parametrize("model, expected", [(Noisy, PASS), (Stateful, FAIL)])
def test_eot_flags_a_defense_that_punishes_repeated_queries(model, expected):
    defense, net = ToyDefense(), model()
    lines = [attack_line(defense, net, "pgd", 0.3, setting=s, params=PGD20, repeats=3)
             for s in ("whitebox", "eot")]
    assert status(lines, "eot") == expected


def line(attack="pgd", asr=0.5, setting="whitebox", eps=0.1, n=180, std=0.0, **params):
    return {"attack": attack, "attack_success_rate": asr, "attack_success_rate_std": std,
            "setting": setting, "attack_strength": eps, "n_examples": n, "repeats": 5,
            "targeted": True, "defense": "d", "params": {}, "model_key": "m",
            "attack_params": params}


def test_differences_within_noise_pass_and_beyond_fail():
    fgsm = line("fgsm", 0.60)
    assert status([fgsm, line("pgd", 0.55, max_iter=10)], "iterative") == PASS
    assert status([fgsm, line("pgd", 0.30, max_iter=10)], "iterative") == FAIL
    # the same gap on 18 examples is noise
    assert status([line("fgsm", 0.60, n=18), line("pgd", 0.40, n=18)], "iterative") == PASS
    # so is a gap the repeated stochastic predictions spread over
    assert status([line("fgsm", 0.60, std=0.3), line("pgd", 0.40, std=0.3)], "iterative") == PASS


def test_checks_without_their_lines_are_unknown():
    report = check_defense([line("fgsm", 0.2)], TRAITS)
    found = {c["status"] for c in report["checks"].values()}
    found |= {c["status"] for b in report["budgets"] for c in b["checks"].values()}
    assert found == {UNKNOWN}
    assert report["verdict"] == only_budget(report)["verdict"] == UNKNOWN
    clean = {**line("none"), "attack_success_rate": None}
    assert check_defense([clean], TRAITS)["verdict"] == UNKNOWN


def test_large_eps_threshold_is_configurable():
    lines = [line("pgd", 0.80, eps=0.6, max_iter=10)]
    assert status(lines, "large_eps") == FAIL
    relaxed = check_defense(lines, TRAITS, Thresholds(large_eps_asr=0.8))
    assert relaxed["checks"]["large_eps"]["status"] == PASS
    assert check_defense(lines, TRAITS, Thresholds(large_eps=0.7))["checks"]["large_eps"][
        "status"] == UNKNOWN


def test_reports_group_by_model_and_annotate_lines(tmp_path):
    good = [line("pgd", 1.0, eps=1.0, max_iter=10), line("fgsm", 0.5)]
    bad = [{**r, "model_key": "masked", "defense": "q"}
           for r in (line("pgd", 0.0, eps=1.0, max_iter=10), line("fgsm", 0.0))]
    reports = check_all(good + bad, TRAITS)
    assert [(r["defense"], r["verdict"]) for r in reports] == [("d", OK), ("q", MASKING)]
    assert [r["sanity"] for r in annotate(good + bad, TRAITS)] == [OK, OK, MASKING, MASKING]
    written = write_report(tmp_path, good + bad, TRAITS)
    saved = json.loads((tmp_path / "sanity.json").read_text())
    assert saved["thresholds"]["z"] == 2.0 and len(saved["defenses"]) == 2
    assert read_report(tmp_path) == written == json.loads(json.dumps(reports))
    # the verdicts read back from the file annotate as the computed ones do
    assert annotate(good + bad, TRAITS, reports=read_report(tmp_path)) == annotate(good + bad,
                                                                                   TRAITS)


def evasion(line: dict, **extra) -> dict:
    """A toy line as a result row reads: an evasion line, with what the run records beside it."""
    return {**line, "kind": "evasion", **extra}


def test_whitebox_understates_flags_weakened_single_draw_gradients():
    """Noisy single-draw gradients (averaged away by EOT): white-box PGD understates the attack,
    beyond the paired interval; an honest noisy model's white-box and EOT agree."""
    from tests.toys import NoisyGradient

    for model, expected in ((NoisyGradient(), FAIL), (Noisy(), PASS)):
        lines = [evasion(attack_line(ToyDefense(), model, "pgd", 0.3, setting=s, params=PGD20,
                                     repeats=3, n=20), stochastic=True)
                 for s in ("whitebox", "eot")]
        report = check_defense(lines, TRAITS)
        whitebox = only_budget(report)["checks"]["whitebox"]
        assert whitebox["status"] == expected
        assert "interval" in whitebox["comparisons"][0]  # paired bootstrap
        if expected == FAIL:  # the same optimiser does worse without EOT: randomness
            assert whitebox["comparisons"][0]["cause"] == "randomness"
        assert report["verdict"] == (UNDERSTATES if expected == FAIL else OK)


def test_large_eps_passes_an_honest_noisy_model_short_of_95_percent():
    """Gaussian input noise σ = 0.6: about 61 % clean accuracy, 80–85 % success at ε = 1 with
    correct gradients. Not masking: success reaches the model's own clean accuracy."""
    from hrsbench.plugin.metrics import accuracy, predictions
    from tests.toys import toy_data

    model = Noisy(sigma=0.6)
    x, y = toy_data(100)
    clean = accuracy(predictions(model, x, 5), y)[0]
    assert 0.5 < clean < 0.75
    lines = [evasion(attack_line(ToyDefense(), model, "pgd", 1.0, setting=s, params=PGD20,
                                 repeats=3), stochastic=True, clean_accuracy=clean)
             for s in ("whitebox", "eot")]
    assert max(r["attack_success_rate"] for r in lines) < 0.95
    assert status(lines, "large_eps") == PASS


def test_large_eps_on_a_stochastic_model_needs_an_adaptive_line_to_fail():
    white = {**line("pgd", 0.30, eps=1.0, max_iter=10), "stochastic": True}
    assert status([white], "large_eps") == UNKNOWN
    eot = {**white, "setting": "eot", "attack_success_rate": 0.35}
    assert status([white, eot], "large_eps") == FAIL
    # deterministic: white-box is the attack, a shortfall is a failure
    assert status([{**white, "stochastic": False}], "large_eps") == FAIL


def test_an_attack_averaging_its_own_gradients_over_draws_counts_as_adaptive():
    """APGD with its own EOT runs in the white-box setting but attacks the defense's randomness
    (AutoAttack's version for randomized defenses): adaptive on a stochastic model, white-box on
    a deterministic one, where EOT changes nothing."""
    from hrsbench.report.frame import adaptive

    apgd = {"setting": "whitebox", "attack_params": {"eot_samples": 20, "max_iter": 100}}
    assert adaptive({**apgd, "stochastic": True})
    assert not adaptive({**apgd, "stochastic": False})
    assert not adaptive({"setting": "whitebox", "attack_params": {"max_iter": 100},
                         "stochastic": True})
    assert all(adaptive({"setting": s, "attack_params": {}, "stochastic": True})
               for s in ("eot", "fixed", "expectation"))


def at(n_test: int, *args, **kw) -> dict:
    return {**line(*args, **kw), "n_test": n_test}


def test_verdicts_are_per_budget_and_image_set():
    """Lines are compared only with lines of the same ε, targeting and attacked images, and each
    line carries its own budget's verdict; a model-wide failure (large ε) marks every budget."""
    ten = [at(10, "fgsm", 0.60, eps=0.3), at(10, "pgd", 0.30, eps=0.3, max_iter=10)]
    twenty = [at(20, "fgsm", 0.30, eps=0.3), at(20, "pgd", 0.60, eps=0.3, max_iter=10)]
    report = check_defense(ten + twenty, TRAITS)
    assert [(b["budget"], b["verdict"]) for b in report["budgets"]] == [
        ("ε=0.3 · targeted · 10 images", MASKING), ("ε=0.3 · targeted · 20 images", OK)]
    assert report["verdict"] == MASKING  # the model's: what some budget says
    assert [r["sanity"] for r in annotate(ten + twenty, TRAITS)] == [MASKING] * 2 + [OK] * 2
    assert budget_verdicts(ten + twenty, TRAITS) == {("m", 0.3, True, 10): MASKING,
                                                     ("m", 0.3, True, 20): OK}
    # FGSM on 10 images and PGD on 20 are never compared, nor two ε
    apart = [at(10, "fgsm", 0.60, eps=0.3), at(20, "pgd", 0.30, eps=0.3, max_iter=10),
             at(10, "pgd", 0.30, eps=0.2, max_iter=10)]
    assert status(apart, "iterative") == UNKNOWN
    broken = [at(10, "pgd", 0.0, eps=1.0, max_iter=10), *twenty]
    assert {b["verdict"] for b in check_defense(broken, TRAITS)["budgets"]} == {MASKING}


def engine_line(defense, model, attack, params, setting="whitebox", eps=0.3):
    stochastic = bool(defense.stochastic)
    return evasion(attack_line(defense, model, attack, eps, setting=setting, params=params,
                               repeats=4 if stochastic else 1, eot_samples=4),
                   stochastic=stochastic)


#: PGD with two short steps: a weak optimiser next to APGD, with or without randomness.
WEAK = {"max_iter": 2, "step": 0.1}
APGD = {"max_iter": 20, "eot_samples": 4}


def test_apgd_beating_pgd_on_the_deterministic_base_too_is_a_stronger_optimiser():
    """APGD (adaptive through its own EOT) beats white-box PGD on a barely noisy toy, but PGD
    with EOT does no better than without, and APGD beats PGD as much on the deterministic base:
    the gap is the optimiser's, not randomness. An EOT gap on noisy single-draw gradients with
    the same optimiser is randomness, base or not."""
    base, base_model = DeterministicToy(), Prototype()  # one model: its lines share a key
    base_lines = [engine_line(base, base_model, "pgd", WEAK),
                  engine_line(base, base_model, "apgd-ce", APGD)]
    noisy, defense = Noisy(sigma=0.05), ToyDefense()
    defended = [engine_line(defense, noisy, "pgd", WEAK, s) for s in ("whitebox", "eot")]
    defended.append(engine_line(defense, noisy, "apgd-ce", APGD))
    reports = {r["defense"]: r for r in check_all(base_lines + defended, TRAITS)}
    budget = only_budget(reports["toy"])
    whitebox = budget["checks"]["whitebox"]
    assert whitebox["status"] == EXPLAINED and budget["verdict"] == OPTIMISER
    (apgd,) = [c for c in whitebox["comparisons"] if c["beats"]]
    assert apgd["cause"] == "stronger optimiser" and "toy-det" in apgd["evidence"]
    assert UNDERSTATES not in reports["toy"]["verdict"]
    # without the base, nothing tells the two apart: the cautious reading
    alone = check_defense(defended, TRAITS)
    assert only_budget(alone)["checks"]["whitebox"]["comparisons"][-1]["cause"] == "undetermined"
    assert alone["verdict"] == UNDERSTATES
    # the same optimiser doing better with EOT is randomness, base or no base
    from tests.toys import NoisyGradient

    masked, defense = NoisyGradient(), ToyDefense()
    eot_gap = [engine_line(defense, masked, "pgd", PGD20, s) for s in ("whitebox", "eot")]
    base_pgd = [engine_line(base, base_model, "pgd", PGD20)]
    report = {r["defense"]: r for r in check_all(base_pgd + eot_gap, TRAITS)}["toy"]
    (gap,) = only_budget(report)["checks"]["whitebox"]["comparisons"]
    assert gap["beats"] and gap["cause"] == "randomness"
    assert report["verdict"] == UNDERSTATES


def outcome_lines(defended_gap: tuple[float, float], base_gap: tuple[float, float]
                  ) -> list[dict]:
    """PGD white-box and APGD with its own EOT on a stochastic model and on the deterministic
    base, with per-example outcomes on the same 40 images × 9 targets (success rates given)."""
    from tests.outcome_lines import N_IMAGES, PAIRS, REPEATS
    from tests.outcome_lines import attack_line as outcome_line

    rng = np.random.default_rng(0)
    n = N_IMAGES * PAIRS

    def wins(p: float, stochastic: bool) -> np.ndarray:
        if stochastic:
            return rng.binomial(REPEATS, p, n)
        return REPEATS * (rng.random(n) < p)

    out = []
    for defense, (white, apgd), stochastic in (("sap", defended_gap, True),
                                                ("base", base_gap, False)):
        out.append(outcome_line(defense, {}, 0.98, wins(white, stochastic), attack="pgd",
                                stochastic=stochastic, kind="evasion"))
        out.append(outcome_line(defense, {}, 0.98, wins(apgd, stochastic), attack="apgd-ce",
                                stochastic=stochastic, kind="evasion",
                                attack_params={"max_iter": 10, "eot_samples": 20}))
    return out


@pytest.mark.parametrize(("base_gap", "cause", "expected"), [
    ((0.50, 0.95), "stronger optimiser", OPTIMISER),
    ((0.70, 0.75), "randomness", UNDERSTATES),
], ids=["explained-by-the-optimiser", "beyond-the-optimiser"])
def test_an_adaptive_gap_larger_than_the_optimisers_on_the_base_is_randomness(
        base_gap, cause, expected):
    """No white-box line of APGD's optimiser: the defended gap (0.3 → 0.8) is read against the
    same two attacks' gap on the base, paired on the same images (a difference of gaps)."""
    reports = {r["defense"]: r for r in check_all(outcome_lines((0.30, 0.80), base_gap))}
    budget = only_budget(reports["sap"])
    (winner,) = [c for c in budget["checks"]["whitebox"]["comparisons"] if c["beats"]]
    assert winner["cause"] == cause and budget["verdict"] == expected


def test_a_check_choosing_among_more_lines_uses_wider_intervals():
    """The best of k adaptive lines is tested at level 1 − 0.05/k: one white-box line and one
    adaptive line, then the same two among four more adaptive lines."""
    lines = outcome_lines((0.30, 0.60), (0.5, 0.5))[:2]
    first = only_budget(check_defense(lines))["checks"]["whitebox"]["comparisons"][0]
    more = lines + [{**lines[1], "setting": s, "attack_params": {"max_iter": 10}}
                    for s in ("eot", "fixed", "expectation")]
    wide = only_budget(check_defense(more))["checks"]["whitebox"]["comparisons"][0]
    assert wide["interval"][0] < first["interval"][0] <= first["interval"][1] < wide["interval"][1]
