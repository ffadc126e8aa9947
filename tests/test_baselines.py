"""The baseline defenses: SAP, defensive dropout, Gaussian noise, PGD adversarial training.

Stochastic behaviour is checked through ``hrsbench.Classifier`` (ART puts the model in eval mode
before every query), statistical properties with tolerances derived from the sample size, and
adversarial training's robustness on a small real-MNIST run with a narrow network.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from art.attacks.evasion import ProjectedGradientDescent
from hrsbench_plugins.advtrain import AdversarialTraining, pgd
from hrsbench_plugins.base import Base
from hrsbench_plugins.datasets import CIFAR10, MNIST
from hrsbench_plugins.dropout import AlwaysOnDropout, DefensiveDropout
from hrsbench_plugins.gaussian import Gaussian, GaussianNoise, normal_like
from hrsbench_plugins.sap import SAP, StochasticActivationPruning
from torch import nn

from hrsbench import Arch, Classifier, HrsbenchError, ModelCache, Trainer
from hrsbench.plugin.dataset import default_data_dir
from hrsbench.plugin.models import seeded_init
from hrsbench.plugin.params import instantiate
from hrsbench.plugin.registry import load_registry

#: z-score of every statistical check: a correct implementation fails one with p < 1e-6.
Z = 5.0

STOCHASTIC = [SAP(), DefensiveDropout(test_rate=0.3), Gaussian()]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: far faster than two on the shared, oversubscribed test machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def images(n: int = 6, seed: int = 0) -> np.ndarray:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).numpy()


# --- registration and parameters -----------------------------------------------------------


def test_registered_with_strength_and_kind():
    reg = load_registry()
    expected = {"sap": ("draws", True), "dropout": ("test_rate", True),
                "gaussian": ("init", True), "advtrain": ("eps", False)}
    for name, (strength, stochastic) in expected.items():
        cls = reg.get("defense", name)
        assert (cls.strength, cls.stochastic) == (strength, stochastic)


@pytest.mark.parametrize(
    "name,params",
    [("sap", {"draws": 0}), ("dropout", {"test_rate": 1.0}), ("dropout", {"train_rate": -0.1}),
     ("gaussian", {"init": -1.0}), ("advtrain", {"eps": 8}), ("advtrain", {"steps": 0})],
)
def test_bad_parameters_fail_in_one_line(name, params):
    with pytest.raises(HrsbenchError, match=name):
        instantiate(load_registry().get("defense", name), params, "test")


# --- randomness through ART, surrogates ------------------------------------------------------


@pytest.mark.parametrize("defense", STOCHASTIC, ids=lambda d: d.name)
def test_stochastic_under_art_and_surrogate_fixed(defense):
    """Two ART predictions of the same input differ; two of the surrogate are identical."""
    model = seeded_init(defense.build(MNIST()), 0)
    x = images()
    clf = Classifier(model, input_shape=(1, 28, 28))
    first, second = clf.predict(x), clf.predict(x)
    assert not model.training  # ART switched to eval mode, and the randomness stayed on
    assert not np.allclose(first, second)

    surrogate = defense.surrogate(model)
    fixed = Classifier(surrogate, input_shape=(1, 28, 28))
    np.testing.assert_array_equal(fixed.predict(x), fixed.predict(x))


@pytest.mark.parametrize("defense", [*STOCHASTIC, AdversarialTraining(eps=0.1)],
                         ids=lambda d: d.name)
def test_surrogate_shares_weights_and_state_dict(defense):
    """The surrogate is a view of the trained model: same tensors, same state-dict keys."""
    model = defense.build(MNIST())
    surrogate = defense.surrogate(model)
    assert surrogate.state_dict().keys() == model.state_dict().keys()
    for a, b in zip(surrogate.parameters(), model.parameters(), strict=True):
        assert a is b
    assert not any(
        isinstance(m, (StochasticActivationPruning, AlwaysOnDropout, GaussianNoise))
        for m in surrogate.modules()
    )


def test_dropout_is_unbiased_so_the_surrogate_needs_no_rescaling():
    """Inverted dropout: averaging many dropped copies of an activation gives it back."""
    layer = AlwaysOnDropout(train_rate=0.1, test_rate=0.5).eval()
    h = torch.rand(1, 200) + 0.5
    n = 20_000
    out = layer(h.expand(n, -1))
    sd = h * math.sqrt(0.5 / 0.5)  # per-unit sd of the dropped activation: h·sqrt(r/(1-r))
    assert ((out.mean(0) - h[0]).abs() <= Z * sd[0] / math.sqrt(n)).all()


@pytest.mark.parametrize("training,rate", [(True, 0.1), (False, 0.5)])
def test_dropout_rate_follows_mode_but_never_switches_off(training, rate):
    layer = AlwaysOnDropout(train_rate=0.1, test_rate=0.5).train(training)
    n = 100_000
    out = layer(torch.ones(n))
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - rate) <= Z * math.sqrt(rate * (1 - rate) / n)
    assert torch.allclose(out[out != 0], torch.tensor(1 / (1 - rate)))


def test_dropout_replaces_the_training_dropout_stage():
    model = DefensiveDropout(test_rate=0.1, train_rate=0.4).build(MNIST())
    layers = [m for m in model.modules() if isinstance(m, (nn.Dropout, AlwaysOnDropout))]
    assert len(layers) == 1 and isinstance(model.dropout, AlwaysOnDropout)
    assert (model.dropout.train_rate, model.dropout.test_rate) == (0.4, 0.1)
    assert DefensiveDropout(test_rate=0.7).build(MNIST()).dropout.train_rate == 0.7


def test_dropout_at_the_base_training_rate_shares_the_base_training(tmp_path):
    """Trained on its own at MNIST's training dropout (0.3), defensive dropout's weights equal
    the base model's bit for bit; so with the base's cache it trains nothing, whatever its
    deployed rate, while any other training rate trains its own weights."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g)

    def trainer(cache: str, n: int = 256) -> Trainer:
        return Trainer(x=x[:n], y=y[:n], epochs=1, seed=3, cache=ModelCache(tmp_path / cache),
                       key="t")

    base = seeded_init(Base().build(MNIST()), 3)
    Base().fit(base, trainer("shared"), MNIST())
    own = DefensiveDropout(test_rate=0.5, train_rate=0.3)
    alone = seeded_init(own.build(MNIST()), 3)
    own.fit(alone, trainer("own"), MNIST())
    for (k, a), (_, b) in zip(base.state_dict().items(), alone.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # The base's cache and no training data: the base's weights load, nothing trains.
    shared = DefensiveDropout(test_rate=0.9, train_rate=0.3)
    again = seeded_init(shared.build(MNIST()), 99)
    shared.fit(again, trainer("shared", n=0), MNIST())
    assert torch.equal(again.fc1.weight, base.fc1.weight)
    other = DefensiveDropout(test_rate=0.1)  # trains at 0.1: its own weights
    differs = seeded_init(other.build(MNIST()), 3)
    other.fit(differs, trainer("shared"), MNIST())
    assert not torch.equal(differs.fc1.weight, base.fc1.weight)


# --- SAP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("draws", [0.1, 1.0])
def test_sap_is_unbiased(draws):
    """E[SAP(h)] = h, unit by unit, within Z standard errors of the exact SAP variance."""
    g = torch.Generator().manual_seed(0)
    h = torch.relu(torch.randn(1, 200, generator=g)) * torch.rand(1, 200, generator=g) * 3
    layer = StochasticActivationPruning(draws)
    torch.manual_seed(0)
    n = 20_000
    out = layer(h.expand(n, -1))
    q = layer.keep_probability(h)[0]
    var = h[0] ** 2 * (1 - q) / q.clamp_min(1e-12)  # kept w.p. q, as h/q: Var = h²(1-q)/q
    err = (out.mean(0) - h[0]).abs()
    assert (err <= Z * (var / n).sqrt() + 1e-6).all()
    # Kept as often as q says (binomial tolerance), and never more units than draws.
    kept = (out != 0).float().mean(0)
    live = h[0] > 0
    assert ((kept - q).abs()[live] <= Z * (q * (1 - q) / n).sqrt()[live] + 1e-6).all()
    assert (out != 0).sum(1).max() <= layer.n_draws(200)
    assert (out[:, ~live] == 0).all()


def test_sap_prunes_small_activations_more():
    h = torch.tensor([[0.01, 0.1, 1.0, 10.0]])
    q = StochasticActivationPruning(1.0).keep_probability(h)[0]
    assert (q.diff() > 0).all() and q[-1] > 0.99


def test_sap_gradients_are_finite_on_edge_cases():
    """All-zero rows and a single active unit must not produce NaN (ART differentiates SAP)."""
    h = torch.zeros(3, 5)
    h[1, 2] = 2.0
    h[2] = torch.tensor([0.0, 1e-8, 3.0, 0.5, 0.0])
    h.requires_grad_(True)
    out = StochasticActivationPruning(1.0)(h)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(h.grad).all()
    assert out[1, 2] == 2.0  # the only active unit is always kept, at scale 1


def test_sap_trains_exactly_as_base(tmp_path):
    """SAP is post hoc: trained on its own from the same seed, its weights equal the base
    model's bit for bit, which is what lets the two share one standard training."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g)

    def trainer(cache: str) -> Trainer:
        return Trainer(x=x, y=y, epochs=1, seed=3, cache=ModelCache(tmp_path / cache), key="t")

    base = seeded_init(Base().build(MNIST()), 3)
    Base().fit(base, trainer("shared"), MNIST())
    sap = seeded_init(SAP().build(MNIST()), 3)
    SAP(draws=0.5).fit(sap, trainer("own"), MNIST())
    for (k, a), (_, b) in zip(base.state_dict().items(), sap.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # With the base's cache, SAP (any strength) loads the base's weights: no training at all.
    empty = Trainer(x=x[:0], y=y[:0], epochs=1, seed=3, cache=ModelCache(tmp_path / "shared"),
                    key="t")
    again = seeded_init(SAP().build(MNIST()), 99)
    SAP(draws=2.0).fit(again, empty, MNIST())
    assert torch.equal(again.fc1.weight, base.fc1.weight)


# --- Gaussian noise -------------------------------------------------------------------------


def noise_at_convs(model: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The noise each convolution received: its input minus the noise stage's input."""
    before: dict[str, torch.Tensor] = {}
    after: dict[str, torch.Tensor] = {}
    hooks = []
    for name, m in model.named_children():
        if isinstance(m, GaussianNoise):
            conv = name.removeprefix("noise_")
            hooks.append(m.register_forward_pre_hook(
                lambda _m, inp, c=conv: before.__setitem__(c, inp[0].detach())))
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_pre_hook(
                lambda _m, inp, c=name: after.__setitem__(c, inp[0].detach())))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert before.keys() == after.keys() == {"conv1", "conv2", "conv3", "conv4"}
    return {c: after[c] - before[c] for c in after}


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    "params,expected", [({}, (0.2, 0.1)), ({"init": 0.3, "inner": 0.05}, (0.3, 0.05))]
)
def test_gaussian_deviation_at_every_conv(params, expected, training, layout):
    """In both memory layouts: the Trainer keeps weights channels-last, so the inner noise
    stages see channels-last activations and draw their noise in that order."""
    model = seeded_init(Gaussian(**params).build(MNIST()), 0).train(training)
    model.to(memory_format=layout)
    noise = noise_at_convs(model, torch.zeros(8, 1, 28, 28))
    for conv, n in noise.items():
        std = expected[0] if conv == "conv1" else expected[1]
        count = n.numel()
        # sd of a sample mean is std/√n; of a sample sd, about std/√(2n).
        assert abs(n.mean().item()) <= Z * std / math.sqrt(count), conv
        assert abs(n.std().item() - std) <= Z * std / math.sqrt(2 * count), conv
    # Pixel units, not clipped: zero images receive negative inputs.
    assert noise["conv1"].min() < 0


def test_normal_like_keeps_the_memory_layout():
    x = torch.zeros(4, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    n = normal_like(x)
    assert n.shape == x.shape and n.is_contiguous(memory_format=torch.channels_last)
    assert normal_like(torch.zeros(4, 8, 5, 5)).is_contiguous()


def test_gaussian_dataset_defaults_and_kept_training_dropout():
    cifar = Gaussian().build(CIFAR10())
    assert cifar.noise_conv1.std == 0.02 and cifar.noise_conv3.std == 0.01
    assert isinstance(cifar.dropout, nn.Dropout) and cifar.dropout.p == 0.7
    assert Gaussian(init=0.5).deviations("mnist") == (0.5, 0.1)


# --- adversarial training --------------------------------------------------------------------


def test_pgd_stays_in_the_ball_and_raises_the_loss():
    model = seeded_init(Base().build(MNIST()), 0).eval()
    x = torch.from_numpy(images(8))
    y = model(x).argmax(1)
    adv = pgd(model, x, y, eps=0.1, step=0.025, steps=5)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        ce = nn.functional.cross_entropy
        assert ce(model(adv), y) > ce(model(x), y)
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_advtrain_takes_its_default_eps_from_the_dataset_fit_is_given(tmp_path):
    class Unknown(MNIST):
        name = "unknown"

    trainer = Trainer(x=torch.zeros(1, 1, 28, 28), y=torch.zeros(1, dtype=torch.long),
                      epochs=1, seed=0, cache=ModelCache(tmp_path))
    with pytest.raises(HrsbenchError, match="no default eps for dataset 'unknown'"):
        AdversarialTraining().fit(Base().build(MNIST()), trainer, Unknown())
    AdversarialTraining(eps=0.1).fit(Base().build(MNIST()), trainer, Unknown())
    assert AdversarialTraining().resolved_eps("cifar10") == pytest.approx(2 / 255)


class NarrowMNIST(MNIST):
    """Real MNIST on a narrow Table A1 network, so that training fits in a few seconds."""

    arch = Arch(in_channels=1, image_size=28, conv=(8, 8, 16, 16), fc=(64, 64), train_dropout=0.3)


def mnist_or_skip(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(os.environ["HRSBENCH_DATA"]) if "HRSBENCH_DATA" in os.environ else None
    if any(not ((root or default_data_dir()) / f.path).exists() for f in MNIST.files):
        pytest.skip("MNIST files not found (set HRSBENCH_DATA)")
    x, y = NarrowMNIST().load(split, n, root)
    return torch.from_numpy(x), torch.from_numpy(y)


def test_advtrain_is_more_robust_than_base(tmp_path):
    """Adversarial fine-tuning of a trained base (two epochs of PGD training through
    ``AdversarialTraining.fit``) raises accuracy under ART's PGD by a wide margin.

    Fine-tuning, not training from scratch: from random weights, PGD training needs far more
    steps than a unit test can afford before it learns anything at all. Two epochs, not one:
    after one, clean accuracy is still recovering from the switch to adversarial batches (0.86
    here, near the 0.8 bound, and rounding differences such as the channels-last kernels or
    another CPU move it by several points); after two it is 0.92, robust accuracy 0.68 against
    the base's 0.20.
    """
    x, y = mnist_or_skip("train", 3000)
    x_test, y_test = mnist_or_skip("test", 300)
    dataset = NarrowMNIST()
    trainer = Trainer(x=x, y=y, epochs=3, seed=0, cache=ModelCache(tmp_path), lr=0.02)
    base = seeded_init(Base().build(dataset), 0)
    Base().fit(base, trainer, dataset)

    defense = AdversarialTraining(eps=0.15, steps=3)
    robust = copy.deepcopy(base)
    trainer.epochs = 2
    defense.fit(robust, trainer, dataset)

    def accuracy_under_pgd(model: nn.Module) -> tuple[float, float]:
        clf = Classifier(model, input_shape=(1, 28, 28))
        attack = ProjectedGradientDescent(clf, norm=np.inf, eps=0.15, eps_step=0.0375,
                                          max_iter=10, verbose=False)
        xs, ys = x_test.numpy(), y_test.numpy()
        adv = attack.generate(xs, y=ys)
        return (clf.predict(xs).argmax(1) == ys).mean(), (clf.predict(adv).argmax(1) == ys).mean()

    (base_clean, base_robust), (adv_clean, adv_robust) = map(accuracy_under_pgd, (base, robust))
    assert base_clean > 0.8 and adv_clean > 0.8
    # 300 images: a binomial standard error of at most 0.03 per accuracy.
    assert adv_robust - base_robust > 0.2, (base_robust, adv_robust)
