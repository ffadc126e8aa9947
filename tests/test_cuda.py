"""The engine on a GPU: the same cells on CUDA and on the CPU give the same lines up to
floating-point tolerance, and the GPU paths of HRS, EOT, APGD, reprogramming and bf16 work.

Marked ``cuda``: they run where a CUDA device is present (``python -m pytest -m cuda``, as
``benchmarks/gpu_check.py`` does) and are skipped elsewhere. ``HRSBENCH_CUDA_TESTS_ON=cpu``
runs them with the CPU standing in for the GPU (``gpu_check.py --device cpu --smoke``), so the
tests themselves are kept working on machines without one.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
from hrsbench_plugins.hrs import HRS, all_paths
from hrsbench_plugins.reprogram import AdversarialProgram, Reprogrammed, Schedule, train_program
from torch import nn

from hrsbench import Arch, Classifier, ModelCache, Trainer, base_model
from hrsbench.engine.config import parse_config
from hrsbench.engine.runner import run
from hrsbench.results.outcomes import decode_counts

pytestmark = pytest.mark.cuda

ARCH = Arch(in_channels=1, image_size=16, conv=(4, 4, 4, 4), fc=(16, 16), train_dropout=0.3)


@pytest.fixture(scope="module")
def gpu() -> torch.device:
    """The device under test: the GPU, or the CPU standing in for it when asked to."""
    if os.environ.get("HRSBENCH_CUDA_TESTS_ON") == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


class Tiny:
    name = "tiny"
    arch = ARCH


# ---------------------------------------------------------------- whole cells, cuda vs cpu

GRID = {
    "dataset": "mnist", "n_train": 3000, "n_test": 4, "n_clean": 1000, "epochs": 1,
    "repeats": 4, "eot_samples": 4, "grad_samples": 4, "batch_size": 128,
    "defenses": [{"name": "base"}, {"name": "hrs", "params": {"channels": [2, 2]}},
                 {"name": "gaussian"}],
    "attacks": [
        {"name": "fgsm", "strengths": [0.2]},
        {"name": "pgd", "strengths": [0.2], "params": {"max_iter": 10},
         "settings": ["whitebox", "eot", "expectation"]},
        {"name": "apgd-ce", "strengths": [0.2], "params": {"max_iter": 10}},
        {"name": "cwpgd", "strengths": [0.2], "params": {"max_iter": 10}},
    ],
}


@pytest.fixture(scope="module")
def both(gpu, data_dir, tmp_path_factory):
    """The grid's lines on the CPU, then on the device under test from the same cached models
    (trained once, on the CPU: training on two devices differs by rounding from the first step)."""
    cache = tmp_path_factory.mktemp("cuda-cache")
    cfg = parse_config(GRID)
    lines = {}
    for name, device in (("cpu", "cpu"), ("gpu", str(gpu))):
        rows = run(cfg, tmp_path_factory.mktemp(name), data_dir=data_dir, cache_dir=cache,
                   device=device)
        lines[name] = {r["cell_key"]: r for r in rows}
    return lines


def _pairs(both, defense: str | None = None):
    for key, cpu in both["cpu"].items():
        if defense is None or cpu["defense"] == defense:
            yield cpu, both["gpu"][key]


def test_same_cells_on_both_devices(both):
    assert both["cpu"].keys() == both["gpu"].keys() and len(both["cpu"]) > 10


def test_deterministic_model_gives_the_same_lines(both):
    """The base model: clean accuracy and every attack's per-example outcomes agree; a sign
    step may flip where a gradient component is within rounding of 0, so a rare pair may differ."""
    for cpu, gpu in _pairs(both, "base"):
        assert gpu["clean_accuracy"] == pytest.approx(cpu["clean_accuracy"], abs=2e-3)
        if cpu["attack"] == "none":
            continue
        a, b = decode_counts(cpu["successes"]), decode_counts(gpu["successes"])
        assert len(a) == len(b) == cpu["n_examples"]
        assert np.mean(a == b) >= 0.9, (cpu["attack"], a, b)
        assert gpu["attack_success_rate"] == pytest.approx(cpu["attack_success_rate"], abs=0.1)


def test_stochastic_models_agree_in_distribution(both):
    """HRS and Gaussian noise draw their randomness from the device's generator, so draws
    differ; clean accuracy over 1,000 images × 4 draws must still agree within noise."""
    for defense in ("hrs", "gaussian"):
        cpu, gpu = next(p for p in _pairs(both, defense) if p[0]["attack"] == "none")
        assert gpu["clean_accuracy"] == pytest.approx(cpu["clean_accuracy"], abs=0.03)
        for cpu, gpu in _pairs(both, defense):
            if cpu["attack"] != "none":
                assert 0.0 <= gpu["attack_success_rate"] <= 1.0
                assert gpu["grad_std"] > 0  # the deployed model is random on the device too


def test_exact_expectation_cells_agree(both):
    """The expectation setting crafts on a deterministic model (all HRS paths averaged):
    the adversarial examples agree, so the success rates do up to the scoring draws."""
    for cpu, gpu in _pairs(both, "hrs"):
        if cpu["setting"] == "expectation":
            assert gpu["attack_success_rate"] == pytest.approx(cpu["attack_success_rate"],
                                                               abs=0.2)


# ---------------------------------------------------------------- the GPU paths, one by one


@pytest.fixture
def no_tf32():
    """Full fp32 on the GPU: cuDNN convolutions default to TF32 (10-bit mantissa), which alone
    moves trained weights by ~1e-3 relative."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_resident_training_matches_the_cpu(gpu, tmp_path, no_tf32):
    """A training on the device: batches gathered on the device, in the CPU generator's order,
    so the weights match the CPU's up to rounding. No dropout: its masks come from each device's
    own generator."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(256, 1, 16, 16, generator=g), torch.randint(10, (256,), generator=g)
    weights = []
    for device in ("cpu", gpu):
        torch.manual_seed(0)
        model = base_model(dataclasses.replace(ARCH, train_dropout=0.0))
        trainer = Trainer(x, y, epochs=2, seed=0, cache=ModelCache(tmp_path / str(device)),
                          device=torch.device(device), batch_size=64)
        trainer.fit(model)
        assert trainer.resident()[0].device.type == torch.device(device).type
        weights.append({k: v.detach().cpu() for k, v in model.state_dict().items()})
    for k in weights[0]:
        torch.testing.assert_close(weights[1][k], weights[0][k], rtol=1e-3, atol=1e-4)


def test_hrs_switches_and_its_exact_expectation_on_the_device(gpu):
    torch.manual_seed(0)
    defense = HRS(channels=(3, 2))
    model = defense.build(Tiny()).to(gpu).eval()
    x = torch.rand(64, 1, 16, 16, device=gpu)
    with torch.no_grad():
        paths = all_paths(list(model.blocks), x)  # (paths, n, classes)
        draws = torch.stack([model(x) for _ in range(40)])
        expected = defense.expectation(model)(x)
    assert paths.shape[0] == 6 and paths.device.type == gpu.type
    # every draw is one of the paths' outputs, and the paths are all drawn
    hit = (draws[:, None] - paths[None]).abs().amax(-1) < 1e-4  # (draws, paths, n)
    assert hit.any(1).all()
    assert hit.any(0).any(-1).all()
    mean = torch.log_softmax(paths, -1).exp().mean(0).log()
    torch.testing.assert_close(expected, mean, rtol=1e-4, atol=1e-4)
    cpu_expected = defense.expectation(model.cpu())(x.cpu())
    torch.testing.assert_close(expected.cpu(), cpu_expected, rtol=1e-4, atol=1e-4)


def test_eot_gradient_on_the_device_is_the_mean_of_draws(gpu):
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 10)

        def forward(self, x):
            return self.lin(x.flatten(1) + 0.5 * torch.randn_like(x.flatten(1)))

    torch.manual_seed(0)
    model = Noisy().to(gpu).eval()
    x = np.random.default_rng(0).random((8, 1, 4, 4), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(8)]
    one = Classifier(model, (1, 4, 4), 10, eot_samples=1, device=str(gpu))
    many = Classifier(model, (1, 4, 4), 10, eot_samples=64, device=str(gpu))
    g1 = np.stack([one.loss_gradient(x, y) for _ in range(8)])
    g64 = many.loss_gradient(x, y)
    assert g64.shape == x.shape and np.isfinite(g64).all()
    # averaging 64 draws shrinks the spread across calls well below one draw's
    assert np.std([many.loss_gradient(x, y) for _ in range(4)], axis=0).mean() < \
        0.5 * g1.std(axis=0).mean()


def test_reprogramming_trains_on_the_device(gpu):
    torch.manual_seed(0)
    target = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10)).eval()
    for p in target.parameters():
        p.requires_grad_(False)
    net = Reprogrammed(AdversarialProgram((1, 12, 12), (3, 16, 16), 3), target, 10)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 256)
    x = 0.1 * rng.random((256, 1, 12, 12), dtype=np.float32)
    for i, label in enumerate(y):
        r, c = divmod(int(label), 4)
        x[i, 0, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3] = 1.0
    hist = train_program(net, torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)),
                         x[:128], y[:128].astype(np.int64),
                         Schedule(epochs=3, lr=2.0, batch_size=32, repeats=1), device=gpu)
    assert next(net.program.parameters()).device.type == gpu.type
    assert hist.accuracy[-1] > 0.5  # chance is 0.1


def test_bf16_autocast_where_supported(gpu):
    """Where the device computes bf16, a Table A1 model's logits under autocast stay close to
    fp32 and a training step runs (fp32 master weights)."""
    if gpu.type == "cuda" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    torch.manual_seed(0)
    model = base_model(Arch(in_channels=1, image_size=28, conv=(32, 32, 64, 64),
                            fc=(200, 200), train_dropout=0.3)).to(gpu)
    x = torch.rand(128, 1, 28, 28, device=gpu)
    y = torch.randint(10, (128,), device=gpu)
    model.eval()
    with torch.no_grad():
        full = model(x)
        with torch.autocast(gpu.type, dtype=torch.bfloat16):
            half = model(x)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.05)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with torch.autocast(gpu.type, dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.isfinite(loss)
