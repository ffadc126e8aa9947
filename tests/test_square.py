"""The gradient-free Square attack: it breaks a toy whose gradients are masked where PGD cannot,
the sanity check flags that toy and not an honest one, and each setting's queries are what the
setting says (one draw, the mean over EOT draws, the surrogate)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hrsbench_plugins.square import Square, fraction

from hrsbench import Classifier
from hrsbench.report.sanity import (
    FAIL,
    GRADIENT_FREE_WINS,
    MASKING,
    OK,
    PASS,
    check_defense,
)
from tests.toys import (
    N_CLASSES,
    SHAPE,
    DeterministicToy,
    Noisy,
    Prototype,
    Quantised,
    attack_line,
    one_thread,
    toy_data,
)

PGD20, SQUARE = {"max_iter": 20}, {"max_queries": 300}


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def masked_and_honest_lines(model: torch.nn.Module) -> list[dict]:
    """FGSM, PGD and Square at ε = 0.3 on one deterministic toy, as the engine writes them."""
    defense = DeterministicToy()
    return [{**attack_line(defense, model, name, 0.3, params=params), "kind": "evasion",
             "stochastic": False}
            for name, params in (("fgsm", None), ("pgd", PGD20), ("square", SQUARE))]


def test_square_breaks_a_quantised_toy_whose_gradients_are_zero_where_pgd_fails():
    """Rounding inputs to 4 levels: every input gradient is 0, so PGD never moves; Square only
    reads the model's outputs."""
    rates = {r["attack"]: r["attack_success_rate"] for r in masked_and_honest_lines(Quantised())}
    assert rates["pgd"] == rates["fgsm"] == 0.0
    assert rates["square"] >= 0.8


def test_sanity_flags_the_masked_toy_and_not_an_honest_one():
    masked = check_defense(masked_and_honest_lines(Quantised()))
    (budget,) = masked["budgets"]
    assert budget["checks"]["gradient_free"]["status"] == FAIL
    assert "interval" in budget["checks"]["gradient_free"]["comparisons"][0]  # paired
    assert GRADIENT_FREE_WINS in budget["verdict"] and MASKING not in budget["verdict"]
    honest = check_defense(masked_and_honest_lines(Prototype()))
    (budget,) = honest["budgets"]
    assert budget["checks"]["gradient_free"]["status"] == PASS
    assert budget["verdict"] == honest["verdict"] == OK


def classifier(model, **kw) -> Classifier:
    return Classifier(model, SHAPE, N_CLASSES, **kw)


@pytest.mark.parametrize("eot_samples", [1, 3])
def test_each_query_is_one_draw_or_the_mean_of_the_eot_draws(eot_samples):
    """On a stochastic model every example searches the whole budget: ``max_queries`` queries,
    each ``eot_samples`` forward passes of the batch."""
    model = Noisy()
    x, y = toy_data(6)
    Square(max_queries=7).generate(classifier(model, eot_samples=eot_samples), x, y, 0.1,
                                   (y + 1) % N_CLASSES)
    assert model.calls == 7 * eot_samples


def test_an_eot_query_is_the_log_of_the_mean_softmax():
    model = Noisy(sigma=0.3)
    x = torch.from_numpy(toy_data(4)[0])
    torch.manual_seed(5)
    scores = Square().scores(classifier(model, eot_samples=4), x)
    torch.manual_seed(5)
    probs = torch.stack([torch.softmax(model(x).double(), 1) for _ in range(4)]).mean(0)
    torch.testing.assert_close(scores, probs.log())
    # one draw: the log-softmax, whose margins are the logits' margins
    torch.manual_seed(5)
    one = Square().scores(classifier(model), x)
    torch.manual_seed(5)
    torch.testing.assert_close(one, torch.log_softmax(model(x), 1))


def test_a_deterministic_model_stops_each_example_at_its_first_success():
    model = Prototype()
    x, y = toy_data(10)
    adv = Square(max_queries=500).generate(classifier(model, stochastic=False), x, y, 1.0,
                                           (y + 1) % N_CLASSES)
    assert model.calls < 100  # every example succeeds long before the budget
    pred = model(torch.from_numpy(adv)).argmax(1).numpy()
    assert (pred == (y + 1) % N_CLASSES).all()
    assert np.abs(adv - x).max() <= 1.0 + 1e-6


def test_the_window_shrinks_on_the_papers_schedule_rescaled_to_the_budget():
    assert fraction(0.8, 0, 10_000) == 0.8
    assert fraction(0.8, 11, 10_000) == 0.4
    assert math.isclose(fraction(0.8, 9_000, 10_000), 0.8 / 512)
    assert fraction(0.8, 2, 1_000) == 0.4  # query 2 of 1,000 is query 20 of 10,000


@pytest.mark.parametrize("bad", [{"max_queries": 0}, {"p_init": 0.0}, {"p_init": 1.5}])
def test_parameters_are_checked(bad):
    with pytest.raises(ValueError):
        Square(**bad)


def test_square_attacks_images_only():
    clf = classifier(Prototype())
    with pytest.raises(ValueError, match="images shaped"):
        Square().run(clf, torch.zeros(2, 16), torch.zeros(2, dtype=torch.long), None, 0.1)


@pytest.fixture
def gpu() -> torch.device:
    """The device under test: the GPU, or the CPU standing in for it when asked to
    (``HRSBENCH_CUDA_TESTS_ON=cpu``, as tests/test_cuda.py)."""
    import os

    if os.environ.get("HRSBENCH_CUDA_TESTS_ON") == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


@pytest.mark.cuda
def test_square_on_the_gpu_breaks_the_toy_and_averages_its_eot_queries_there(gpu):
    x, y = toy_data(10)
    t = (y + 1) % N_CLASSES
    model = Prototype().to(gpu)
    clf = Classifier(model, SHAPE, N_CLASSES, device=str(gpu), stochastic=False)
    adv = Square(max_queries=500).generate(clf, x, y, 1.0, t)
    assert adv.dtype == np.float32 and np.abs(adv - x).max() <= 1.0 + 1e-6
    pred = model(torch.from_numpy(adv).to(gpu)).argmax(1).cpu().numpy()
    assert (pred == t).all()
    noisy = Noisy(sigma=0.3).to(gpu)
    clf = Classifier(noisy, SHAPE, N_CLASSES, eot_samples=3, device=str(gpu))
    Square(max_queries=5).generate(clf, x, y, 0.1, t)
    assert noisy.calls == 5 * 3
    xt = torch.from_numpy(x).to(gpu)
    torch.manual_seed(2)
    scores = Square().scores(clf, xt)
    torch.manual_seed(2)
    mean = torch.stack([torch.softmax(noisy(xt).double(), 1) for _ in range(3)]).mean(0)
    assert scores.device.type == gpu.type
    torch.testing.assert_close(scores, mean.log())
