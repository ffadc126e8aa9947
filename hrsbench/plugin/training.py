"""The paper's training schedule (SGD 0.01, momentum 0.9, Nesterov, batch 128, cross-entropy),
resumable epoch by epoch through the model cache."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hrsbench.plugin.cache import ModelCache, atomic_save, safe_load, stable_hash

ProgressFn = Callable[[str, int, int], None]  # (label, done, total)

#: Convolution weights are kept channels-last: on CPU (oneDNN) training and attack steps of the
#: Table A1 models are 12-32 % faster (benchmarks/train_throughput.py, torch 2.13, 2 cores). Inputs
#: stay NCHW: the weights' layout decides which kernels run. Only rounding differs from NCHW (and
#: which Gaussian noise values are drawn: plugins/gaussian.py draws in memory order).
FAST_LAYOUT = torch.channels_last


@dataclass
class Trainer:
    """Trains models on one dataset's training split; what a defense's ``fit`` receives.

    ``key`` identifies everything that determines training except the defense (dataset, subset,
    epochs, seed, code version): a defense caches checkpoints or pieces under
    ``self.key_for(its name, the parameters that matter, ...)``, so HRS can reuse one channel
    file across widths.
    """

    x: torch.Tensor
    y: torch.Tensor
    epochs: int
    seed: int
    cache: ModelCache
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    key: str = ""
    progress: ProgressFn | None = None
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 128
    #: "bf16" runs each step's forward pass and loss under bf16 autocast (weights, gradients
    #: and optimizer state stay fp32); "fp32" does not. Part of ``key`` when not fp32.
    precision: str = "fp32"
    #: Seconds that earlier, interrupted processes spent on the trainings this one resumed
    #: (read from their checkpoints): a model's training time is the sum of every share.
    earlier_s: float = field(default=0.0, init=False)
    #: ``x`` and ``y`` on ``device``, copied once: batches are then gathered by indexing on the
    #: device, with no host-to-device copy per step (on a GPU that copy can cost more than the
    #: step of a Table A1 model; on the CPU the tensors are ``x`` and ``y`` themselves).
    _resident: tuple[torch.Tensor, torch.Tensor] | None = field(
        default=None, init=False, repr=False, compare=False)

    def resident(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training split on the trainer's device (one copy per trainer, kept)."""
        if self._resident is None or self._resident[0].device != _canonical(self.device):
            self._resident = (self.x.to(self.device), self.y.to(self.device))
        return self._resident

    def key_for(self, *parts: Any) -> str:
        return stable_hash([self.key, *parts])

    def fit_standard(self, model: nn.Module, label: str = "standard") -> nn.Module:
        """Train all of ``model``'s weights on the plain schedule, once per run-level key.

        The base model and every defense whose weights are the base's (SAP prunes post hoc)
        call this with the same seeded initialisation, so they share one training and one file
        instead of training identical weights twice.
        """
        key = self.key_for("standard-training")
        if not self.cache.load(key, model):
            self.fit(model, checkpoint=key, label=label)
            self.cache.save(key, model)
        return model.eval()

    def fit(
        self,
        model: nn.Module,
        params: Iterable[nn.Parameter] | None = None,
        epochs: int | None = None,
        seed: int | None = None,
        checkpoint: str | None = None,
        label: str = "train",
        loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> nn.Module:
        """Train ``params`` (default: all of ``model``'s) in place.

        With ``checkpoint`` set, the state after every epoch is saved atomically under that key
        and a rerun resumes from the last finished epoch. ``loss_fn(model, x, y)`` replaces
        cross-entropy (adversarial training uses it).
        """
        epochs = self.epochs if epochs is None else epochs
        seed = self.seed if seed is None else seed
        model.to(self.device, memory_format=FAST_LAYOUT)
        trainable = [p for p in (params if params is not None else model.parameters())]
        opt = torch.optim.SGD(
            trainable, lr=self.lr, momentum=self.momentum, nesterov=True
        )
        start, earlier, began = 0, 0.0, time.perf_counter()
        ckpt_path = self.cache.path(checkpoint + ".partial") if checkpoint else None
        if ckpt_path is not None and ckpt_path.exists():
            state = safe_load(ckpt_path)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            start = int(state["epoch"])
            earlier = float(state.get("seconds", 0.0))
        loss_fn = loss_fn or _cross_entropy
        x, y = self.resident()
        n = len(x)
        bf16 = self.precision == "bf16"
        steps = (n + self.batch_size - 1) // self.batch_size
        for epoch in range(start, epochs):
            gen = torch.Generator().manual_seed(seed * 1000 + epoch)
            torch.manual_seed(seed * 1000 + epoch)  # stochastic layers draw from the global RNG
            # drawn on the CPU generator, so every device visits the examples in the same order
            order = torch.randperm(n, generator=gen).to(x.device)
            model.train()
            shown = f"{label} epoch {epoch + 1}/{epochs}"  # a log shows which epoch runs
            for step in range(steps):
                idx = order[step * self.batch_size : (step + 1) * self.batch_size]
                xb, yb = x[idx], y[idx]
                opt.zero_grad(set_to_none=True)
                with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
                    loss = loss_fn(model, xb, yb)
                loss.backward()
                opt.step()
                if self.progress:
                    self.progress(shown, epoch * steps + step + 1, epochs * steps)
            if ckpt_path is not None and epoch + 1 < epochs:
                atomic_save(
                    {"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1,
                     "seconds": earlier + time.perf_counter() - began},
                    ckpt_path,
                )
        self.earlier_s += earlier
        model.eval()
        if ckpt_path is not None and ckpt_path.exists():
            ckpt_path.unlink()
        return model


def _canonical(device: torch.device) -> torch.device:
    """``cuda`` as the tensor it makes reports it (``cuda:0``), so a resident copy is reused."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits in batches, one stochastic draw per call; the model keeps its randomness in eval."""
    model.eval()
    device = next(model.parameters()).device
    outs = [model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs)
