"""PGD throughput of the ``pgd`` plugin against a bare torch PGD loop, and the cost of EOT.

Both run the same number of L∞ sign steps on the dataset's base model (untrained weights: the
cost is the same) at one batch size; the plugin goes through everything an engine run uses
(registry, ``Classifier.value_and_grad``, numpy in and out). EOT(n) on a stochastic-marked
classifier takes n forward/backward passes per step, so its ideal cost is n× white-box. Trials
are interleaved and the fastest of each kind is kept, so a busy machine slows all kinds alike.

Prints one JSON line: image-steps per second of each, ``pgd_vs_torch`` (≥ 0.9 is the target)
and ``eot10_vs_whitebox`` (per-step cost ratio, ≤ 11 is the target), e.g.::

    python benchmarks/attack_throughput.py --device cpu --batch 256 --steps 5 --trials 3

On a CPU shared with other jobs, ``--threads 1 --clock cpu`` counts only this process's own
compute and is far steadier than wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from hrsbench import Classifier, base_model
from hrsbench.plugin.registry import registry


def bare_pgd(model: nn.Module, x0: torch.Tensor, targets: torch.Tensor, eps: float,
             alpha: float, steps: int) -> torch.Tensor:
    """The reference: targeted L∞ PGD written directly in torch."""
    x = x0.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x), targets, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        x = x.detach() - alpha * grad.sign()
        x = torch.clamp(torch.minimum(torch.maximum(x, x0 - eps), x0 + eps), 0.0, 1.0)
    return x


def timed(fn: Callable[[], object], device: torch.device, clock: Callable[[], float]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = clock()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clock() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="PGD steps per timed run")
    ap.add_argument("--eot", type=int, default=10, help="EOT samples compared with white-box")
    ap.add_argument("--eot-steps", type=int, default=1, help="PGD steps per timed EOT run")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--eps", type=float, default=8 / 255)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's own)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: this process's CPU time, steadier on a shared machine")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    device = torch.device(args.device)
    if device.type == "cuda" and args.clock == "cpu":
        ap.error("--clock cpu does not measure GPU work; use wall")
    reg = registry()
    arch = reg.get("dataset", args.dataset).arch
    torch.manual_seed(0)
    model = base_model(arch).to(device).eval()
    shape = (arch.in_channels, arch.image_size, arch.image_size)
    x = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
    y = np.arange(args.batch) % arch.n_classes
    targets = (y + 1) % arch.n_classes
    x0, t0 = torch.from_numpy(x).to(device), torch.from_numpy(targets).to(device)

    pgd_cls = reg.get("attack", "pgd")
    pgd, pgd_eot = pgd_cls(max_iter=args.steps), pgd_cls(max_iter=args.eot_steps)
    pgd.batch_size = pgd_eot.batch_size = args.batch  # as the engine sets the run's batch size
    alpha = pgd.step_size(args.eps)
    whitebox = Classifier(model, shape, arch.n_classes, device=str(device))
    eot = Classifier(model, shape, arch.n_classes, eot_samples=args.eot, device=str(device))

    runs = {
        "torch": lambda: bare_pgd(model, x0, t0, args.eps, alpha, args.steps),
        "plugin": lambda: pgd.generate(whitebox, x, y, args.eps, targets),
        "eot": lambda: pgd_eot.generate(eot, x, y, args.eps, targets),
    }
    for run in runs.values():  # warm-up: allocator, kernels, lazy imports
        run()
    best = {k: float("inf") for k in runs}
    for _ in range(args.trials):
        for k, run in runs.items():
            best[k] = min(best[k], timed(run, device, clock))

    per_step = {"torch": best["torch"] / args.steps, "plugin": best["plugin"] / args.steps,
                "eot": best["eot"] / args.eot_steps}
    print(json.dumps({
        "dataset": args.dataset, "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(), "clock": args.clock, "batch": args.batch,
        "steps": args.steps,
        "trials": args.trials,
        "torch_img_steps_per_s": round(args.batch / per_step["torch"], 1),
        "pgd_img_steps_per_s": round(args.batch / per_step["plugin"], 1),
        "pgd_vs_torch": round(per_step["torch"] / per_step["plugin"], 3),
        f"eot{args.eot}_img_steps_per_s": round(args.batch / per_step["eot"], 1),
        f"eot{args.eot}_vs_whitebox": round(per_step["eot"] / per_step["plugin"], 3),
        "torch_version": torch.__version__,
    }))


if __name__ == "__main__":
    main()
