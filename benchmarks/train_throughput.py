"""Training- and attack-step cost of the Table A1 models in torch's two memory layouts, on CPU.

``hrsbench.training.FAST_LAYOUT`` keeps convolution weights channels-last because oneDNN's CPU
convolutions are faster that way; this script is the measurement behind that choice, and the one
to rerun on a new machine or torch before changing it. A training step is the Trainer's (batch
128, SGD with Nesterov momentum, cross-entropy, train mode); an attack step is one input-gradient
query in eval mode, what ART's ``loss_gradient`` does. Layouts are timed in interleaved rounds so
load from other processes hits them alike; figures are medians over rounds. Weights are untrained:
cost does not depend on their values. The Gaussian-noise model is timed too: its noise stages see
channels-last activations, where a careless ``randn_like`` once cost more than the convolutions.

Prints one JSON line per (dataset, model): seconds per step in each layout and the channels-last
speed-up.
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

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor) -> float:
    model.train()
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - start


def attack_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    xg = x.clone().requires_grad_(True)
    start = time.perf_counter()
    torch.autograd.grad(nn.functional.cross_entropy(model(xg), y), xg)
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
        for name, layout in LAYOUTS.items():
            torch.manual_seed(0)
            models[name] = build(dataset).to(memory_format=layout)
            opts[name] = torch.optim.SGD(models[name].parameters(), lr=0.01, momentum=0.9,
                                         nesterov=True)
            for _ in range(3):  # warm-up: allocator and oneDNN kernel selection
                train_step(models[name], opts[name], x, y)
                attack_step(models[name], x, y)
        train: dict[str, list[float]] = {k: [] for k in LAYOUTS}
        attack: dict[str, list[float]] = {k: [] for k in LAYOUTS}
        for _ in range(args.rounds):
            for name in LAYOUTS:
                train[name].append(train_step(models[name], opts[name], x, y))
                attack[name].append(attack_step(models[name], x, y))
        med = {f"{kind}_s_{name}": round(statistics.median(times[name]), 4)
               for kind, times in (("train", train), ("attack", attack)) for name in LAYOUTS}
        print(json.dumps({
            "dataset": dataset.name,
            "model": model_name,
            "batch": args.batch,
            **med,
            "train_speedup": round(med["train_s_nchw"] / med["train_s_channels_last"], 3),
            "attack_speedup": round(med["attack_s_nchw"] / med["attack_s_channels_last"], 3),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }))


if __name__ == "__main__":
    main()
