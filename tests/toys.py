"""Tiny models and defenses for the attack and sanity-check tests: a nearest-prototype classifier
on 4×4 inputs (any target is reachable with ε = 1), its stochastic version, and deliberately
gradient-masked variants, each breaking one of Athalye et al.'s sanity checks."""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hrsbench import Defense, hookimpl
from hrsbench.engine.cells import Cell
from hrsbench.engine.config import RunConfig
from hrsbench.engine.runner import evaluate
from hrsbench.plugin.params import defaults
from hrsbench.plugin.registry import Registry, load_registry, registry

SHAPE = (1, 4, 4)
N_CLASSES = 10
DATASET = types.SimpleNamespace(arch=types.SimpleNamespace(n_classes=N_CLASSES))


@contextmanager
def one_thread() -> Iterator[None]:
    """Toy tensors are tiny: with two threads on a busy machine, every op waits on a parallel
    region's barrier (30 ms per cross-entropy seen); one thread is both faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prototypes(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(N_CLASSES, int(np.prod(SHAPE)), generator=gen)


class Prototype(nn.Module):
    """Logits k·(x·μ_c − ‖μ_c‖²/2): the nearest prototype wins, linear in x."""

    def __init__(self, seed: int = 0, scale: float = 10.0) -> None:
        super().__init__()
        mu = prototypes(seed)
        self.linear = nn.Linear(mu.shape[1], N_CLASSES)
        with torch.no_grad():
            self.linear.weight.copy_(scale * mu)
            self.linear.bias.copy_(-scale * (mu**2).sum(1) / 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.linear(x.flatten(1))


class Noisy(nn.Module):
    """Gaussian input noise on every forward pass, then the prototype classifier."""

    def __init__(self, sigma: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        self.sigma, self.inner, self.calls = sigma, Prototype(seed), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x + self.sigma * torch.randn_like(x))


class Quantised(nn.Module):
    """Masked: a non-differentiable input quantisation; every input gradient is zero."""

    def __init__(self, levels: int = 4) -> None:
        super().__init__()
        self.levels, self.inner = levels, Prototype()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * self.levels) / self.levels)


class _HonestOnGrid(torch.autograd.Function):
    """Identity whose gradient is the true one only for 8-bit (clean) inputs, noise elsewhere."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        on_grid = ((x * 255 - torch.round(x * 255)).abs() < 1e-3).flatten(1).all(1)
        noise = torch.randn_like(grad) * grad.abs().mean()
        return torch.where(on_grid.view(-1, *[1] * (x.dim() - 1)), grad, noise)


class HonestAtClean(nn.Module):
    """Masked: gradients are informative at the clean (8-bit) inputs only, so one FGSM step
    works and every later PGD step is a random walk."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = Prototype()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(_HonestOnGrid.apply(x))


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return -ctx.factor * grad, None


class Stateful(nn.Module):
    """Masked, stochastic: a stateful defense that answers a repeated query of the same input
    (what EOT sends) with a reversed, amplified gradient."""

    def __init__(self, sigma: float = 0.05, factor: float = 10.0) -> None:
        super().__init__()
        self.inner, self.sigma, self.factor = Prototype(), sigma, factor
        self.last: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        repeated = self.last is not None and self.last.shape == x.shape and torch.equal(
            self.last, x)
        self.last = x.detach().clone()
        if repeated and torch.is_grad_enabled():
            x = _Reverse.apply(x, self.factor)
        return self.inner(x + self.sigma * torch.randn_like(x))


class _NoisyGradient(torch.autograd.Function):
    """Identity whose gradient carries zero-mean noise ``scale`` times its mean magnitude."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad + ctx.scale * grad.abs().mean() * torch.randn_like(grad), None


class NoisyGradient(nn.Module):
    """Stochastic, with weakened single-draw gradients: each draw's input gradient drowns in
    zero-mean noise, which EOT's averaged gradients cancel. White-box PGD understates the
    attack an adaptive attacker mounts (not masking: the expected gradient is the true one)."""

    def __init__(self, sigma: float = 0.05, scale: float = 4.0) -> None:
        super().__init__()
        self.inner, self.sigma, self.scale = Prototype(), sigma, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(_NoisyGradient.apply(x, self.scale) + self.sigma * torch.randn_like(x))


@dataclass
class ToyDefense(Defense):
    """Serves a given model; its surrogate is a fixed prototype classifier (or ``surrogates``,
    a factory making a fresh one on every call, to show when the engine asks twice)."""

    name = "toy"
    stochastic: ClassVar[bool] = True
    model: nn.Module | None = None
    surrogate_model: nn.Module | None = None
    made: list | None = None

    def build(self, dataset: Any) -> nn.Module:
        return self.model if self.model is not None else Noisy()

    def surrogate(self, model: nn.Module) -> nn.Module:
        if self.made is not None:
            fresh = Prototype()
            self.made.append(fresh)
            return fresh
        return self.surrogate_model if self.surrogate_model is not None else Prototype()

    def expectation(self, model: nn.Module) -> nn.Module:
        return Prototype()  # the noise-free prototype model stands in for the exact mean


@dataclass
class DeterministicToy(ToyDefense):
    name = "toy-det"
    stochastic: ClassVar[bool] = False


def toy_data(n: int, seed: int = 0, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Inputs near their class prototype, on the 8-bit grid, all classes in turn."""
    gen = torch.Generator().manual_seed(seed + 1)
    y = torch.arange(n) % N_CLASSES
    x = prototypes()[y] + noise * torch.randn(n, int(np.prod(SHAPE)), generator=gen)
    x = torch.round(x.clamp(0, 1) * 255) / 255
    return x.view(n, *SHAPE).numpy().astype(np.float32), y.numpy()


def attack_line(
    defense: Defense,
    model: nn.Module,
    attack: str,
    strength: float,
    setting: str = "whitebox",
    params: dict | None = None,
    n: int = 10,
    eot_samples: int = 10,
    targeted: bool = True,
    repeats: int = 1,
    grad_samples: int = 0,
    batch_size: int = 256,
) -> dict:
    """One result line, produced by the engine's own ``evaluate`` on toy data."""
    cls = registry().get("attack", attack)
    params = {**defaults(cls), **(params or {})}
    x, y = toy_data(n)
    cell = Cell("toy", None, n, None, 0, 0, defense.name, {}, attack, params, float(strength),
                setting, targeted, repeats, eot_samples if setting == "eot" else 1)
    cfg = RunConfig(batch_size=batch_size, grad_samples=grad_samples)
    metrics = evaluate(cell, defense, cls(**params), model, DATASET, x, y, cfg,
                       torch.device("cpu"), lambda *a: None)
    return {**cell.to_dict(), **metrics, "model_key": f"toy-{defense.name}-{id(model)}"}


def registry_with(**kinds: list[type]) -> Registry:
    """The installed plugins plus test plugin classes, registered through the same hooks a
    package uses: ``registry_with(attacks=[Faulty], datasets=[A, B])``."""
    reg = load_registry()
    mod = types.ModuleType("test_plugins")
    for kind, classes in kinds.items():
        def hook(register, classes=classes):
            for cls in classes:
                register(cls)
        hook.__name__ = f"register_{kind}"
        setattr(mod, hook.__name__, hookimpl(hook))
    reg.add_module(mod, "test-plugins", "0")
    return reg
