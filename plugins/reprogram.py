"""Adversarial reprogramming (Elsayed et al. 2018) as the HRS paper evaluates it (section 7,
appendix E): a learned input transformation turns the frozen CIFAR-10 model into an MNIST
classifier, and a defense is better the lower the accuracy the attacker reaches.

The program (the input transformation) is the paper's: the source image zero-padded, a
locally connected layer (unshared k×k kernels, one output channel per target input channel) and
tanh, squashed into the target's [0, 1] input range. The output transformation is the identity:
source class i is read from target logit i. Only the program trains; the target model is frozen
but stays stochastic as deployed, so the attacker trains against the switching (HRS), the
dropout or the noise it would meet in deployment.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the conventional name

from hrsbench import HrsbenchError, hookimpl
from hrsbench.plugin.cache import atomic_save, safe_load
from hrsbench.plugin.metrics import accuracy, predictions
from hrsbench.plugin.params import as_dict
from hrsbench.plugin.threat import ProgressFn, Threat, ThreatContext, frozen

#: Bump when training code changes what a program checkpoint contains.
PROGRAM_FORMAT = 1


def tanh01(z: torch.Tensor) -> torch.Tensor:
    """``(tanh(z) + 1) / 2``: tanh as the paper, moved affinely onto [0, 1]. The target model was
    trained on [0, 1] pixels, and an attacker feeding a deployed model must send valid images;
    tanh's own [-1, 1] range would spend half of it on pixel values that cannot exist. Unlike
    ``relu_tanh`` it has a gradient everywhere, so no program weight can die."""
    return (torch.tanh(z) + 1.0) / 2.0


def relu_tanh(z: torch.Tensor) -> torch.Tensor:
    """``tanh(relu(z))``: the authors' code (a ReLU-activated locally connected layer, then
    tanh), which lands in [0, 1) too; kept to compare with their numbers."""
    return torch.tanh(torch.relu(z))


SQUASHES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh01": tanh01, "relu_tanh": relu_tanh,
}


class LocallyConnected2d(nn.Module):
    """A valid, stride-1 convolution whose kernel is not shared: each output position has its
    own ``out_channels × in_channels × k × k`` weights and its own bias (Keras's
    ``LocallyConnected2D``; torch has none). Its parameter count, set by ``k``, is what makes
    the program strong enough to reprogram the target (appendix E).

    ``weight[p, o, c·k² + i·k + j]`` connects input channel ``c`` at offset ``(i, j)`` of the
    window at output position ``p = row · out_width + col`` to output channel ``o``: the order
    ``F.unfold`` lays windows out in, so the forward pass is one unfold and one batched product.
    """

    def __init__(
        self, in_channels: int, out_channels: int, in_size: tuple[int, int], kernel_size: int
    ) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel size must be at least 1, got {kernel_size}")
        out_size = (in_size[0] - kernel_size + 1, in_size[1] - kernel_size + 1)
        if min(out_size) < 1:
            raise ValueError(f"a {kernel_size}×{kernel_size} kernel does not fit {in_size}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.out_size = kernel_size, out_size
        positions = out_size[0] * out_size[1]
        self.weight = nn.Parameter(
            torch.empty(positions, out_channels, in_channels * kernel_size**2)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels, *out_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform per position (fan in c·k², fan out o·k², as a convolution of the same
        shape), zero bias: the rule the base models use (hrsbench.plugin.models.init_weights)."""
        k2 = self.kernel_size**2
        bound = math.sqrt(6.0 / (self.in_channels * k2 + self.out_channels * k2))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(x, self.kernel_size)  # (n, c·k², positions)
        out = torch.einsum("ncp,poc->nop", cols, self.weight)
        return out.reshape(len(x), self.out_channels, *self.out_size) + self.bias

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"out_size={self.out_size}")


def padding(source: int, target: int, kernel: int) -> tuple[int, int]:
    """Zeros before and after a source side so that a valid ``kernel`` window gives exactly
    ``target`` outputs: 28 → 32 with k = 3 pads 3 and 3 (the paper's MNIST → CIFAR-10 program),
    with k = 2 pads 2 and 3 (an even total splits with the extra zero after)."""
    total = target - source + kernel - 1
    if total < 0:
        raise HrsbenchError(
            f"reprogram: a {source}-pixel source with a {kernel}×{kernel} kernel cannot give "
            f"{target} pixels (the program only pads); use a smaller source or a larger kernel"
        )
    return total // 2, total - total // 2


class AdversarialProgram(nn.Module):
    """Source images (c, h, w) → target inputs (C, H, W) in [0, 1]: zero padding, a locally
    connected layer and a squashing function (see :data:`SQUASHES`)."""

    def __init__(
        self,
        source_shape: tuple[int, int, int],
        target_shape: tuple[int, int, int],
        kernel: int,
        squash: str = "tanh01",
    ) -> None:
        super().__init__()
        if squash not in SQUASHES:
            raise ValueError(f"unknown squash {squash!r}; choose from {', '.join(SQUASHES)}")
        (c, h, w), (tc, th, tw) = source_shape, target_shape
        top, bottom = padding(h, th, kernel)
        left, right = padding(w, tw, kernel)
        self.pad = (left, right, top, bottom)
        self.lc = LocallyConnected2d(c, tc, (h + top + bottom, w + left + right), kernel)
        self.squash_name = squash
        self.squash = SQUASHES[squash]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.squash(self.lc(F.pad(x, self.pad)))


class Reprogrammed(nn.Module):
    """The target model behind the program, with the identity output mapping (source class i
    is target logit i). The target stays in eval mode whatever mode this module is put in:
    eval is how it is deployed, so its stochastic layers behave as an attacker would meet them
    and its training-only layers (the base model's dropout) stay off."""

    def __init__(self, program: AdversarialProgram, target: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.program, self.target, self.n_classes = program, target, n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.target(self.program(x))[:, : self.n_classes]

    def train(self, mode: bool = True) -> Reprogrammed:
        super().train(mode)
        self.target.eval()
        return self


@dataclass
class History:
    """Per finished epoch: reprogramming test accuracy (mean and deviation over the stochastic
    draws) and seconds spent training and evaluating (for cost extrapolation)."""

    accuracy: list[float] = field(default_factory=list)
    accuracy_std: list[float] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)


@dataclass
class Schedule:
    """The paper's optimiser (SGD, Nesterov momentum) for the program, and the evaluation."""

    epochs: int
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 128
    seed: int = 0
    repeats: int = 1  # stochastic predictions per test image after each epoch
    eval_batch_size: int = 256


def train_program(
    net: Reprogrammed,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: np.ndarray,
    y_test: np.ndarray,
    schedule: Schedule,
    checkpoint: Path | None = None,
    device: torch.device | None = None,
    progress: ProgressFn | None = None,
    label: str = "reprogram",
) -> History:
    """Train ``net.program`` (only it: the optimiser never sees the target's parameters) and
    record the test accuracy after every epoch.

    With ``checkpoint`` set, the program, the optimiser and the history are saved atomically
    after every epoch and a rerun resumes after the last one saved; the file is kept when
    training ends, so rerunning a finished program costs nothing. Every epoch reseeds the global
    RNG (which the target's stochastic layers draw from), so a resumed run equals an
    uninterrupted one.
    """
    device = device or torch.device("cpu")
    net.to(device)
    opt = torch.optim.SGD(net.program.parameters(), lr=schedule.lr,
                          momentum=schedule.momentum, nesterov=True)
    history, start = History(), 0
    if checkpoint is not None and checkpoint.exists():
        state = safe_load(checkpoint)
        net.program.load_state_dict(state["program"])
        opt.load_state_dict(state["opt"])
        history = History(**state["history"])
        start = int(state["epoch"])
    x, y = x.to(device), y.to(device)  # resident: batches are gathered on the device
    n, bs = len(x), schedule.batch_size
    steps = (n + bs - 1) // bs
    for epoch in range(start, schedule.epochs):
        began = time.perf_counter()
        gen = torch.Generator().manual_seed(schedule.seed * 1000 + epoch)
        torch.manual_seed(schedule.seed * 1000 + epoch)
        order = torch.randperm(n, generator=gen).to(device)
        net.train()
        for step in range(steps):
            idx = order[step * bs : (step + 1) * bs]
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
            if progress:
                progress(label, epoch * steps + step + 1, schedule.epochs * steps)
        trained = time.perf_counter()
        preds = predictions(net, x_test, schedule.repeats, schedule.eval_batch_size)
        acc, std = accuracy(preds, y_test)
        history.accuracy.append(acc)
        history.accuracy_std.append(std)
        history.train_seconds.append(trained - began)
        history.eval_seconds.append(time.perf_counter() - trained)
        if checkpoint is not None:
            atomic_save({"program": net.program.state_dict(), "opt": opt.state_dict(),
                         "epoch": epoch + 1, "history": as_dict(history)}, checkpoint)
    net.eval()
    return history


@dataclass
class Reprogram(Threat):
    """Reprogram the deployed target into a classifier of ``source`` (default MNIST).

    ``n_train`` / ``n_test``: the first images of the source's splits (None: all of them);
    ``epochs``, ``lr``, ``momentum``, ``batch_size``: the program's training (paper: 50 epochs,
    SGD 0.01, momentum 0.9, Nesterov, batch 128); ``squash``: "tanh01" or "relu_tanh".
    """

    name = "reprogram"
    strength = "kernel"
    kind = "reprogramming"
    metrics = ("reprogram_accuracy_per_epoch", "reprogram_accuracy_std_per_epoch",
               "reprogram_best_accuracy", "reprogram_best_epoch",
               "reprogram_train_seconds_per_epoch", "reprogram_eval_seconds_per_epoch",
               "reprogram_n_train", "reprogram_n_classes", "program_parameters")

    kernel: int = 3
    epochs: int = 50
    source: str = "mnist"
    n_train: int | None = None
    n_test: int | None = None
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 128
    squash: str = "tanh01"

    def __post_init__(self) -> None:
        if self.kernel < 1:
            raise ValueError(f"kernel must be at least 1, got {self.kernel}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.squash not in SQUASHES:
            raise ValueError(f"squash must be one of {', '.join(SQUASHES)}, got {self.squash!r}")

    def run(self, model: nn.Module, ctx: ThreatContext) -> dict[str, Any]:
        source = ctx.registry.get("dataset", self.source)()
        arch = ctx.dataset.arch
        if source.arch.n_classes > arch.n_classes:
            raise HrsbenchError(
                f"reprogram: {self.source} has {source.arch.n_classes} classes but the target "
                f"has only {arch.n_classes} outputs for the identity mapping"
            )
        x, y = source.load("train", self.n_train, ctx.data_dir)
        x_test, y_test = source.load("test", self.n_test, ctx.data_dir)
        program = AdversarialProgram(
            x.shape[1:], (arch.in_channels, arch.image_size, arch.image_size), self.kernel,
            self.squash,
        )
        net = Reprogrammed(program, model, source.arch.n_classes)
        schedule = Schedule(self.epochs, self.lr, self.momentum, self.batch_size, ctx.seed,
                            ctx.repeats, ctx.batch_size)
        key = ctx.key_for(self.name, PROGRAM_FORMAT, as_dict(self), as_dict(schedule))
        label = f"{ctx.defense.name} reprogram k={self.kernel}"
        with frozen(model):
            hist = train_program(net, torch.from_numpy(x), torch.from_numpy(y), x_test, y_test,
                                 schedule, ctx.cache.path(key + ".program"), ctx.device,
                                 ctx.report, label)
        final, best = hist.accuracy[-1], max(hist.accuracy)
        return {
            "n_examples": len(x_test),
            "attack_success_rate": final,
            "attack_success_rate_std": hist.accuracy_std[-1],
            "defense_rate": 1.0 - final,
            "reprogram_accuracy_per_epoch": hist.accuracy,
            "reprogram_accuracy_std_per_epoch": hist.accuracy_std,
            "reprogram_best_accuracy": best,
            "reprogram_best_epoch": hist.accuracy.index(best) + 1,
            "reprogram_train_seconds_per_epoch": hist.train_seconds,
            "reprogram_eval_seconds_per_epoch": hist.eval_seconds,
            "reprogram_n_train": len(x),
            "reprogram_n_classes": source.arch.n_classes,
            "program_parameters": sum(p.numel() for p in program.parameters()),
        }


@hookimpl
def register_threats(register):
    register(Reprogram)
