"""Each gradient-masking sanity check flags a deliberately masked toy defense and passes a normal
one, on lines produced by the engine's own evaluate(); plus the noise rule and the reports."""

from __future__ import annotations

import json

import pytest

from hrsbench.report.sanity import (
    FAIL,
    MASKING,
    OK,
    PASS,
    UNDERSTATES,
    UNKNOWN,
    Thresholds,
    Traits,
    annotate,
    check_all,
    check_defense,
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


def status(lines, check):
    return check_defense(lines, TRAITS)["checks"][check]["status"]


def test_traits_recorded_in_lines_are_used_without_a_mapping():
    single = {**line("fgsm", 0.60), "iterative": False, "attack_strength_param": "eps"}
    weak = {**line("pgd", 0.30, max_iter=10), "iterative": True, "attack_strength_param": "eps"}
    assert check_defense([single, weak])["checks"]["iterative"]["status"] == FAIL
    # a confidence-strength attack is not an L∞ budget: no large-ε check from it
    cw = {**line("cw", 0.10, eps=5.0), "iterative": True, "attack_strength_param": "confidence"}
    assert check_defense([cw])["checks"]["large_eps"]["status"] == UNKNOWN


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
    assert {c["status"] for c in report["checks"].values()} == {UNKNOWN}
    assert report["verdict"] == UNKNOWN
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
    path = write_report(tmp_path, good + bad, TRAITS)
    saved = json.loads(path.read_text())
    assert saved["thresholds"]["z"] == 2.0 and len(saved["defenses"]) == 2


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
        assert report["checks"]["whitebox"]["status"] == expected
        assert "interval" in report["checks"]["whitebox"]["comparisons"][0]  # paired bootstrap
        assert report["verdict"] == (UNDERSTATES if expected == FAIL else OK)


def test_large_eps_passes_an_honest_noisy_model_short_of_95_percent():
    """Gaussian input noise σ = 0.6: about 61 % clean accuracy, 80–85 % success at ε = 1 with
    correct gradients. Not masking: success reaches the model's own clean accuracy."""
    from hrsbench.metrics import accuracy, predictions
    from tests.toys import toy_data

    model = Noisy(sigma=0.6)
    x, y = toy_data(100)
    clean = accuracy(predictions(model, x, 5), y)[0]
    assert 0.5 < clean < 0.75
    lines = [evasion(attack_line(ToyDefense(), model, "pgd", 1.0, setting=s, params=PGD20,
                                 repeats=3), stochastic=True, clean_accuracy=clean)
             for s in ("whitebox", "eot")]
    assert max(r["attack_success_rate"] for r in lines) < 0.95
    assert check_defense(lines, TRAITS)["checks"]["large_eps"]["status"] == PASS


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
