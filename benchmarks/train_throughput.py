"""Training- and attack-step cost of the Table A1 models in torch's two memory layouts and, in
the channels-last layout, in fp32 and under bf16 autocast, on CPU.

``hrsbench.plugin.training.FAST_LAYOUT`` keeps convolution weights channels-last because oneDNN's
CPU convolutions are faster that way; this script is the measurement behind that choice, and the
one to rerun on a new machine or torch before changing it. A training step is the Trainer's (batch
128, SGD with Nesterov momentum, cross-entropy, train mode); an attack step is one input-gradient
query in eval mode, what ART's ``loss_gradient`` does. Layouts are timed in interleaved rounds so
load from other processes hits them alike; figures are medians over rounds. Weights are untrained:
cost does not depend on their values. The Gaussian-noise model is timed too: its noise stages see
channels-last activations, where a careless ``randn_like`` once cost more than the convolutions.

bf16 runs under ``torch.autocast("cpu", torch.bfloat16)`` with fp32 master weights (what mixed-
precision training does); on a CPU with native bf16 (AVX512-BF16 or AMX,
:func:`hrsbench.engine.precision.bf16_native`) oneDNN then runs bf16 kernels, elsewhere it emulates
them and bf16 is slower.

Prints one JSON line per (dataset, model): seconds per step in each variant, the channels-last
speed-up and the bf16 speed-up over channels-last fp32 (``bf16_speedup`` for training,
``attack_bf16_speedup`` for attack steps).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import torch
from hrsbench_plugins.datasets import CIFAR10, MNIST
from hrsbench_plugins.gaussian import Gaussian
from torch import nn

from hrsbench import base_model
from hrsbench.engine.precision import bf16_native

#: Variant → (memory layout, autocast to bf16).
VARIANTS = {"nchw": (torch.contiguous_format, False),
            "channels_last": (torch.channels_last, False),
            "bf16": (torch.channels_last, True)}


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, bf16: bool = False) -> float:
    model.train()
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def attack_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool = False
                ) -> float:
    model.eval()
    xg = x.clone().requires_grad_(True)
    start = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        loss = nn.functional.cross_entropy(model(xg), y)
    torch.autograd.grad(loss, xg)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads; 0: torch default")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    builders = {"base": lambda d: base_model(d.arch), "gaussian": lambda d: Gaussian().build(d)}
    for dataset, (model_name, build) in itertools.product((MNIST(), CIFAR10()), builders.items()):
        arch = dataset.arch
        x = torch.rand(args.batch, arch.in_channels, arch.image_size, arch.image_size)
        y = torch.randint(arch.n_classes, (args.batch,))
        models, opts = {}, {}
        for name, (layout, bf16) in VARIANTS.items():
            torch.manual_seed(0)
            models[name] = build(dataset).to(memory_format=layout)
            opts[name] = torch.optim.SGD(models[name].parameters(), lr=0.01, momentum=0.9,
                                         nesterov=True)
            for _ in range(3):  # warm-up: allocator and oneDNN kernel selection
                train_step(models[name], opts[name], x, y, bf16)
                attack_step(models[name], x, y, bf16)
        train: dict[str, list[float]] = {k: [] for k in VARIANTS}
        attack: dict[str, list[float]] = {k: [] for k in VARIANTS}
        for _ in range(args.rounds):
            for name, (_, bf16) in VARIANTS.items():
                train[name].append(train_step(models[name], opts[name], x, y, bf16))
                attack[name].append(attack_step(models[name], x, y, bf16))
        med = {f"{kind}_s_{name}": round(statistics.median(times[name]), 4)
               for kind, times in (("train", train), ("attack", attack)) for name in VARIANTS}
        print(json.dumps({
            "dataset": dataset.name,
            "model": model_name,
            "batch": args.batch,
            **med,
            "train_speedup": round(med["train_s_nchw"] / med["train_s_channels_last"], 3),
            "attack_speedup": round(med["attack_s_nchw"] / med["attack_s_channels_last"], 3),
            "bf16_speedup": round(med["train_s_channels_last"] / med["train_s_bf16"], 3),
            "attack_bf16_speedup": round(med["attack_s_channels_last"] / med["attack_s_bf16"],
                                         3),
            "bf16_native": bf16_native("cpu"),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }), flush=True)


if __name__ == "__main__":
    main()
