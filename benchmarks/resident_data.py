"""A training epoch's batches gathered from data resident on the device against a per-batch copy
from host memory, as ``Trainer.fit`` did before keeping the split on the run's device.

Both loops run the Trainer's step (MNIST base model, batch 128, SGD with Nesterov momentum) over
the same shuffled order; only where each batch comes from differs. On a GPU the per-batch copy
is a host-to-device transfer (pinned or not) each step; on a CPU both loops gather from the same
memory, so the ratio is the cost of the indexing alone. Loops are interleaved and timed over
``--rounds`` rounds; medians are reported.

Prints one JSON line: seconds per step of each loop and ``resident_speedup``, e.g.::

    python benchmarks/resident_data.py --device cpu --steps 20 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from hrsbench_plugins.datasets import MNIST
from torch import nn

from hrsbench import base_model
from hrsbench.plugin.training import FAST_LAYOUT


def epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
          order: torch.Tensor, device: torch.device, steps: int, batch: int) -> float:
    """Seconds per step over ``steps`` steps; ``x``'s device decides where batches come from."""
    model.train()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for step in range(steps):
        idx = order[step * batch : (step + 1) * batch]
        xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    x, y = (torch.from_numpy(a) for a in MNIST().load("train", None, args.data_dir))
    resident = (x.to(device), y.to(device))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = base_model(MNIST.arch).to(device, memory_format=FAST_LAYOUT)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    sources = {"host_copy": (x, y, order), "resident": (*resident, order.to(device))}
    times: dict[str, list[float]] = {k: [] for k in sources}
    for r in range(args.rounds + 1):  # the first round warms up allocator and kernels
        for name, (xs, ys, o) in sources.items():
            t = epoch(model, opt, xs, ys, o, device, args.steps, args.batch)
            if r:
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "device": str(device), "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
        "host_copy_s_per_step": round(med["host_copy"], 5),
        "resident_s_per_step": round(med["resident"], 5),
        "resident_speedup": round(med["host_copy"] / med["resident"], 3),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
