"""Attacks and attack settings on tiny models: budgets, EOT in one place, fixed randomness on
every call, APGD's EOT gradients, agreement with ART, and the gradient-deviation metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

from hrsbench import Classifier
from hrsbench.engine.cells import expand
from hrsbench.engine.config import parse_config
from hrsbench.plugin.estimator import crafting_classifier
from hrsbench.plugin.metrics import gradient_deviation
from hrsbench.plugin.params import defaults
from hrsbench.plugin.registry import load_registry
from hrsbench.results.vocabulary import BUILTIN_NAMES as SETTINGS
from tests.toys import (
    N_CLASSES,
    SHAPE,
    DeterministicToy,
    Noisy,
    Prototype,
    ToyDefense,
    attack_line,
    one_thread,
    toy_data,
)

REGISTRY = load_registry()
ATTACKS = REGISTRY.names("attack")
LINF = [n for n in ATTACKS if REGISTRY.get("attack", n).strength == "eps"]
#: Small schedules so every attack runs in well under a second on the toy model.
FAST = {"max_iter": 5, "binary_search_steps": 2, "eot_samples": 2, "max_queries": 20}


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def make(name: str, **overrides):
    cls = REGISTRY.get("attack", name)
    valid = defaults(cls)
    return cls(**{k: v for k, v in {**FAST, **overrides}.items() if k in valid})


def classifier(model, **kw) -> Classifier:
    return Classifier(model, SHAPE, N_CLASSES, **kw)


@pytest.mark.parametrize("targeted", [True, False], ids=["targeted", "untargeted"])
@pytest.mark.parametrize("name", ATTACKS)
def test_every_attack_respects_its_budget(name, targeted):
    attack = make(name)
    x, y = toy_data(20)
    targets = (y + 1) % N_CLASSES if targeted else None
    strength = 0.1 if attack.strength == "eps" else 0.0
    adv = attack.generate(classifier(Noisy()), x, y, strength, targets)
    assert adv.shape == x.shape and adv.dtype == np.float32
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    if attack.strength == "eps":  # L∞ attacks; CW's strength is a confidence, its δ is free
        assert np.abs(adv - x).max() <= strength + 1e-6


@pytest.mark.parametrize("name", LINF)
def test_linf_attacks_break_the_toy_model_at_large_eps(name):
    budget = {"max_iter": 20, "max_queries": 200}
    valid = defaults(REGISTRY.get("attack", name))
    line = attack_line(DeterministicToy(), Prototype(), name, 1.0,
                       params={k: v for k, v in budget.items() if k in valid})
    floor = 0.5 if name == "fgsm" else 0.99  # FGSM's one full step overshoots the target
    assert line["attack_success_rate"] >= floor


@pytest.mark.parametrize("name", ["cw", "cw-art"])
def test_cw_finds_targeted_examples(name):
    line = attack_line(DeterministicToy(), Prototype(), name, 0.0, n=5,
                       params={"max_iter": 20, "binary_search_steps": 3, "initial_const": 10.0})
    assert line["attack_success_rate"] >= 0.95
    assert line["l2_mean"] > 0


def test_cw_confidence_buys_margin():
    """κ is the strength: a larger κ asks for a larger margin, hence more distortion."""
    lines = [attack_line(DeterministicToy(), Prototype(), "cw", k, n=5,
                         params={"max_iter": 30, "binary_search_steps": 4, "initial_const": 1.0})
             for k in (0.0, 5.0)]
    assert all(r["attack_success_rate"] >= 0.95 for r in lines)
    assert lines[1]["l2_mean"] > lines[0]["l2_mean"]


def test_our_fgsm_and_pgd_match_arts_on_a_deterministic_model():
    clf = classifier(Prototype())
    x, y = toy_data(30)
    t = (y + 3) % N_CLASSES
    ours = make("pgd", max_iter=10).generate(clf, x, y, 0.1, t)
    art = ProjectedGradientDescent(clf, norm=np.inf, eps=0.1, eps_step=0.025, max_iter=10,
                                   targeted=True, num_random_init=0, verbose=False)
    np.testing.assert_allclose(ours, art.generate(x, y=t), atol=1e-6)
    for targets in (t, None):
        ours = make("fgsm").generate(clf, x, y, 0.1, targets)
        art = FastGradientMethod(clf, norm=np.inf, eps=0.1, targeted=targets is not None)
        expected = art.generate(x, y=targets if targets is not None else y)
        np.testing.assert_allclose(ours, expected, atol=1e-6)


def _objective(y):
    return lambda z: -torch.nn.functional.cross_entropy(z, y, reduction="none")


def test_eot_is_the_mean_of_n_fresh_forward_passes():
    x = torch.from_numpy(toy_data(6)[0])
    y = torch.arange(6) % N_CLASSES
    model = Noisy(sigma=0.3)
    single = classifier(model)
    torch.manual_seed(3)
    draws = [single.value_and_grad(x, _objective(y))[1] for _ in range(5)]
    calls = model.calls
    torch.manual_seed(3)
    _, grad = classifier(model, eot_samples=5).value_and_grad(x, _objective(y))
    assert model.calls - calls == 5
    torch.testing.assert_close(grad, torch.stack(draws).mean(0))
    assert not torch.allclose(draws[0], draws[1])  # the draws really differ


def test_eot_applies_to_every_gradient_path():
    """ART's class_gradient (CW's), ART's loss_gradient (ART attacks) and in-house PGD all
    average ``eot_samples`` draws, counted as forward passes."""
    x, y = toy_data(4)
    model = Noisy()
    clf = classifier(model, eot_samples=3)
    for query in (lambda: clf.class_gradient(x, label=y),
                  lambda: clf.loss_gradient(x, np.eye(N_CLASSES, dtype=np.float32)[y]),
                  lambda: make("pgd", max_iter=4).generate(clf, x, y, 0.1, (y + 1) % 10)):
        before = model.calls
        query()
        assert model.calls - before in (3, 3 * 4)


def test_fast_class_gradient_matches_arts():
    x, y = toy_data(12)
    clf = classifier(Prototype())
    ours = clf.class_gradient(x, label=y)
    arts = super(Classifier, clf).class_gradient(x, label=y)
    np.testing.assert_allclose(ours, arts, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clf.class_gradient(x, label=2),
                               super(Classifier, clf).class_gradient(x, label=2), atol=1e-6)


def test_deterministic_crafting_model_takes_one_sample():
    model = Prototype()
    clf = classifier(model, eot_samples=10, stochastic=False)
    x, y = toy_data(3)
    clf.value_and_grad(torch.from_numpy(x), _objective(torch.from_numpy(y)), samples=20)
    assert model.calls == 1


@pytest.mark.parametrize("name", ["cw-art", "cw", "pgd", "apgd-ce", "square"])
def test_fixed_setting_queries_only_the_surrogate(name):
    deployed, surrogate = Noisy(), Prototype()
    clf = crafting_classifier("fixed", ToyDefense(surrogate_model=surrogate), deployed, SHAPE,
                              N_CLASSES, eot_samples=10)
    x, y = toy_data(10)
    make(name).generate(clf, x, y, 0.0 if name.startswith("cw") else 0.2, (y + 1) % N_CLASSES)
    assert deployed.calls == 0 and surrogate.calls > 0


def test_fixed_setting_is_one_surrogate_for_the_whole_cell():
    """Even across several chunks of an ART CW cell (several model calls per step), the engine
    asks the defense once."""
    made: list = []
    deployed = Noisy()
    line = attack_line(ToyDefense(made=made), deployed, "cw-art", 0.0, setting="fixed", n=4,
                       params={"max_iter": 3, "binary_search_steps": 1}, batch_size=12)
    assert line["n_examples"] == 36  # 3 chunks of 12
    assert len(made) == 1 and made[0].calls > 3
    assert deployed.calls == 3  # only the final prediction (repeats=1), in batches of 12


def test_apgd_uses_its_own_eot_gradients():
    model = Noisy()
    x, y = toy_data(5)
    clf = classifier(model)  # white-box setting: eot_samples=1
    make("apgd-ce", max_iter=3, eot_samples=4).generate(clf, x, y, 0.1, (y + 1) % N_CLASSES)
    assert model.calls == 4 * (1 + 3)  # the start and every step, each an EOT mean of 4
    assert REGISTRY.get("attack", "apgd-dlr")().eot_samples == 20  # AutoAttack's rand version


def test_apgd_gradient_is_the_eot_mean(monkeypatch):
    """The gradient APGD steps along is exactly the mean of ``eot_samples`` draws."""
    seen = []
    original = Classifier.value_and_grad

    def spy(self, x, objective, samples=None):
        torch.manual_seed(11)
        result = original(self, x, objective, samples)
        torch.manual_seed(11)
        manual = torch.stack([self._value_and_grad_once(x, objective)[1]
                              for _ in range(self.samples(samples))]).mean(0)
        seen.append(torch.allclose(result[1], manual, atol=1e-6) and self.samples(samples) == 4)
        return result

    monkeypatch.setattr(Classifier, "value_and_grad", spy)
    x, y = toy_data(5)
    make("apgd-dlr", max_iter=2, eot_samples=4).generate(classifier(Noisy()), x, y, 0.1,
                                                         (y + 1) % N_CLASSES)
    assert len(seen) == 3 and all(seen)


def test_untargeted_attacks_move_away_from_the_true_class():
    line = attack_line(DeterministicToy(), Prototype(), "pgd", 0.5, targeted=False,
                       params={"max_iter": 10})
    assert line["n_examples"] == 10 and line["attack_success_rate"] >= 0.9


def test_gradient_deviation_is_zero_for_deterministic_models_only():
    x, y = toy_data(8)
    t = (y + 1) % N_CLASSES
    loss = make("pgd").loss
    fixed = gradient_deviation(classifier(Prototype()), loss, x, y, t, samples=5)
    assert fixed == {"grad_std": 0.0, "grad_sign_std": 0.0}
    noisy = gradient_deviation(classifier(Noisy(sigma=0.5)), loss, x, y, t, samples=5,
                               batch_size=3)
    assert noisy["grad_std"] > 0 and 0 < noisy["grad_sign_std"] <= 1


def test_evaluate_records_gradient_deviation_and_repeated_predictions():
    line = attack_line(ToyDefense(), Noisy(sigma=0.5), "fgsm", 0.1, repeats=4, grad_samples=5)
    assert line["grad_std"] > 0 and line["grad_sign_std"] > 0
    assert line["attack_success_rate_std"] > 0  # 4 stochastic predictions disagree
    det = attack_line(DeterministicToy(), Prototype(), "fgsm", 0.1, repeats=3, grad_samples=5)
    assert det["grad_std"] == 0.0 and det["attack_success_rate_std"] == 0.0


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("name", ATTACKS)
def test_every_attack_runs_in_every_setting(name, setting):
    """evaluate() end to end, the engine's path for one cell, on a stochastic defense that has
    a surrogate and an expectation; the config layer accepts the same grid."""
    strength = 0.0 if REGISTRY.get("attack", name).strength == "confidence" else 0.2
    fast = {k: v for k, v in FAST.items() if k in defaults(REGISTRY.get("attack", name))}
    line = attack_line(ToyDefense(), Noisy(sigma=0.5), name, strength, setting=setting, n=3,
                       params=fast, eot_samples=2, grad_samples=2)
    assert line["n_examples"] == 27 and 0.0 <= line["attack_success_rate"] <= 1.0
    assert line["grad_std"] > 0  # a stochastic defense's gradients vary


def test_config_accepts_every_attack_in_every_setting():
    cfg = parse_config({"defenses": [{"name": "dropout"}],
                        "attacks": [{"name": n, "strengths": [0.1], "settings": list(SETTINGS)}
                                    for n in ATTACKS]})
    cells = [c for c in expand(cfg, REGISTRY) if c.attack != "none"]
    # dropout has no exact expectation: the engine drops that setting for it
    assert {(c.attack, c.setting) for c in cells} == {
        (n, s) for n in ATTACKS for s in SETTINGS if s != "expectation"}
