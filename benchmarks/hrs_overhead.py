"""Forward+backward cost of a 10x10 MNIST HRS model relative to the base model, on CPU.

Each timed step is what an attack's gradient query costs: a forward pass on one batch of 256,
cross-entropy, and a backward pass to the input and all weights. The three models are timed in
interleaved rounds so that load from other processes hits them alike; the reported ratios are
medians over rounds. Weights are untrained: cost does not depend on their values.

It runs on one intra-op thread by default: the ratio is meant to measure the work HRS adds, and
on a shared, oversubscribed CPU every extra parallel region of a multi-threaded run waits on a
descheduled thread, which inflates the ratio with other processes' load (``--threads 0`` keeps
torch's default to see that).

Prints one JSON line: {"per_call_ratio": ..., "per_sample_ratio": ..., ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from hrsbench_plugins.datasets import MNIST
from hrsbench_plugins.hrs import HRS
from torch import nn

from hrsbench import base_model


def step_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """One gradient query, as ART's ``loss_gradient`` does it (eval mode, input gradient)."""
    xg = x.clone().requires_grad_(True)
    start = time.perf_counter()
    loss = nn.functional.cross_entropy(model(xg), y)
    loss.backward()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", default="10x10", help="widths per block, e.g. 10x10")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=2, help="steps per model per round (min taken)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads; 0: torch default")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # this process only

    torch.manual_seed(0)
    widths = tuple(int(w) for w in args.channels.split("x"))
    arch = MNIST.arch
    models = {
        "base": base_model(arch),
        "call": HRS(channels=widths, switch="call").build(MNIST()),
        "sample": HRS(channels=widths, switch="sample").build(MNIST()),
    }
    for m in models.values():
        m.eval()
    x = torch.rand(args.batch, arch.in_channels, arch.image_size, arch.image_size)
    y = torch.randint(arch.n_classes, (args.batch,))

    for m in models.values():  # warm-up: allocator, oneDNN kernels for every group size
        for _ in range(3):
            step_seconds(m, x, y)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds):
        for name, m in models.items():
            times[name].append(min(step_seconds(m, x, y) for _ in range(args.reps)))

    def ratio(name: str) -> float:
        return statistics.median(t / b for t, b in zip(times[name], times["base"], strict=True))

    print(
        json.dumps(
            {
                "per_call_ratio": round(ratio("call"), 3),
                "per_sample_ratio": round(ratio("sample"), 3),
                "base_ms": round(1000 * statistics.median(times["base"]), 1),
                "channels": args.channels,
                "batch": args.batch,
                "rounds": args.rounds,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
