"""Cost of one training step of K HRS block-1 channels run one after another against the same K
channels run as one batched computation, and whether the batched step computes the same update.

``HRS.fit_block`` trains the channels of a block one at a time. For block 1 of the default split
("dropout", channels (K, K)) each channel trains with one freshly initialised temp channel of the
block above, so each of the K trainings is a full Table A1 base model, with its own seed and its
own shuffled batches. The channels are independent, so one step of all K can be a single
computation; this script measures whether that is faster before anyone builds it into HRS.

Variants, each timed as one step of all K channels (forward, cross-entropy, backward, SGD with
lr 0.01, Nesterov momentum 0.9, batch 128 per channel, train mode with dropout):

* ``sequential``: K separate models and optimizers, each on its own batch, as ``fit_block``
  runs them; weights in the Trainer's layout (``FAST_LAYOUT``).
* ``batched``: ``torch.func.stack_module_state`` + ``functional_call`` under ``torch.vmap``
  (``randomness="different"``: each channel draws its own dropout masks) on inputs shaped
  (K, 128, C, H, W); one SGD over the stacked leaf tensors, which is the same update per
  channel. Each channel's slice of a stacked convolution weight keeps ``FAST_LAYOUT``.
* ``grouped``: the same by hand: convolutions with ``groups=K`` over channel-concatenated
  activations and ``baddbmm`` for the fully connected stages (``FAST_LAYOUT`` weights).

Correctness: every variant starts from the same K initialisations and takes ``--check-steps``
steps on the same batches with dropout off (eval mode) in fp32 (TF32 off on CUDA); the largest
absolute parameter difference from ``sequential`` is reported next to the largest parameter
change those steps made (``max_abs_param_update``). Differences are rounding: fp32 sums in
another order, and now and then a pre-activation that rounding moves across ReLU's kink, which
gives isolated differences of 1e-6 to 1e-5. ``--fp64-reference`` also runs ``sequential`` in
float64 and reports every variant's distance from it, ``sequential``'s own included.

``vmap``'s fallback warnings (an op without a batching rule, run as a loop over channels) are
switched on during these steps and one train-mode step of each variant; any warning is listed
under ``warnings``. Those steps also warm up allocator and kernels. Variants are then timed in
interleaved rounds in train mode (``--steps`` steps each), so load from other processes hits
them alike; figures are medians over rounds. Inputs are random: cost does not depend on values.

Prints one JSON line at the end (progress goes to stderr), e.g.::

    python benchmarks/hrs_batched.py --device cpu --k 5,10 --rounds 3
    python benchmarks/hrs_batched.py --device cuda --dataset mnist,cifar10 --k 5,10,30

The default datasets are MNIST on CPU (a CIFAR-10 step of K=10 channels takes tens of seconds
on a small CPU) and MNIST and CIFAR-10 on CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from hrsbench_plugins.datasets import CIFAR10, MNIST
from torch import nn
from torch.func import functional_call, stack_module_state
from torch.nn import functional as F

from hrsbench import Arch, base_stages, split_stages
from hrsbench.plugin.training import FAST_LAYOUT

DATASETS = {"mnist": MNIST, "cifar10": CIFAR10}
LR, MOMENTUM, BATCH = 0.01, 0.9, 128


def sgd(params: Sequence[torch.Tensor]) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, nesterov=True)


def channel_net(arch: Arch, split: Sequence[str]) -> nn.Sequential:
    """What block-1 training of HRS fits: the block-1 channel with one temp channel of every
    block above it, i.e. a complete base model."""
    blocks = split_stages(base_stages(arch), split)
    return nn.Sequential(*(nn.Sequential(b) for b in blocks))


def leaves(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if not list(m.children())]


class Sequential:
    """K models, K optimizers, one after another."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.models = list(models)
        self.opts = [sgd(list(m.parameters())) for m in self.models]

    def train(self, mode: bool) -> None:
        for m in self.models:
            m.train(mode)

    def step(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        for model, opt, x, y in zip(self.models, self.opts, xs, ys, strict=True):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

    def params(self, k: int) -> list[torch.Tensor]:
        return [p.detach() for p in self.models[k].parameters()]


def _slice_layout(p: torch.Tensor) -> torch.Tensor:
    """A stacked (K, O, I, kh, kw) weight whose every slice is in ``FAST_LAYOUT``."""
    if p.dim() != 5 or torch.channels_last != FAST_LAYOUT:
        return p
    q = p.detach().permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return q.requires_grad_(p.requires_grad)


class Batched:
    """K models as stacked parameters, one ``vmap``-ed functional call per step."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        params, self.buffers = stack_module_state(list(models))
        self.stacked = {name: _slice_layout(p) for name, p in params.items()}
        self.base = copy.deepcopy(models[0]).to("meta")
        self.opt = sgd(list(self.stacked.values()))

        def loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor,
                 y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(functional_call(self.base, (p, b), (x,)), y)

        self.losses = torch.vmap(loss, randomness="different")

    def train(self, mode: bool) -> None:
        self.base.train(mode)

    def step(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        # Channels share no weights, so each gets exactly its own loss's gradient.
        self.losses(self.stacked, self.buffers, xs, ys).sum().backward()
        self.opt.step()

    def params(self, k: int) -> list[torch.Tensor]:
        return [p.detach()[k] for p in self.stacked.values()]


class Grouped(nn.Module):
    """K copies of a stage list as one network: activations (B, K*C, H, W) through convolutions
    with ``groups=K``, then (K, B, F) through batched matrix products."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        self.k = len(models)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.ops: list[tuple[str, nn.Module]] = []
        for stage in zip(*(leaves(m) for m in models), strict=True):
            first = stage[0]
            if isinstance(first, nn.Conv2d):
                w = torch.cat([m.weight.detach() for m in stage])
                self.weights.append(w.contiguous(memory_format=FAST_LAYOUT))
                self.biases.append(torch.cat([m.bias.detach() for m in stage]))
                self.ops.append(("conv", first))
            elif isinstance(first, nn.Linear):
                self.weights.append(torch.stack([m.weight.detach() for m in stage]))
                self.biases.append(torch.stack([m.bias.detach() for m in stage]))
                self.ops.append(("linear", first))
            elif isinstance(first, nn.Flatten):
                self.ops.append(("flatten", first))
            elif isinstance(first, (nn.ReLU, nn.MaxPool2d, nn.Dropout)):
                self.ops.append(("same", copy.deepcopy(first)))
            else:
                raise TypeError(f"grouped: no rule for {type(first).__name__}")
        self.extra = nn.ModuleList(m for kind, m in self.ops if kind == "same")
        self.opt = sgd(list(self.parameters()))

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        k, b = xs.shape[:2]
        h = xs.transpose(0, 1).reshape(b, k * xs.shape[2], *xs.shape[3:])
        i = 0
        for kind, m in self.ops:
            if kind == "conv":
                h = F.conv2d(h, self.weights[i], self.biases[i], m.stride, m.padding, m.dilation,
                             groups=k)
                i += 1
            elif kind == "linear":
                h = torch.baddbmm(self.biases[i].unsqueeze(1), h, self.weights[i].transpose(1, 2))
                i += 1
            elif kind == "flatten":
                h = h.reshape(b, k, -1).transpose(0, 1)
            else:
                h = m(h)
        return h

    def step(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        logits = self(xs)
        F.cross_entropy(logits.flatten(0, 1), ys.flatten(), reduction="sum").div(
            ys.shape[1]).backward()
        self.opt.step()

    def params(self, k: int) -> list[torch.Tensor]:
        out = []
        for w, b in zip(self.weights, self.biases, strict=True):
            if w.dim() == 4:  # grouped convolution: K consecutive blocks of output channels
                out += [w.detach().unflatten(0, (self.k, -1))[k],
                        b.detach().unflatten(0, (self.k, -1))[k]]
            else:
                out += [w.detach()[k], b.detach()[k]]
        return out


Variant = Sequential | Batched | Grouped


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device, steps: int) -> float:
    """Seconds per call of ``fn``, over ``steps`` calls."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """No TF32 on CUDA, so the check compares fp32 arithmetic with fp32 arithmetic."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@contextlib.contextmanager
def vmap_fallback_warnings() -> Iterator[None]:
    """Make ``vmap`` warn where an op has no batching rule and runs as a per-channel loop."""
    functorch = torch._C._functorch
    functorch._set_vmap_fallback_warning_enabled(True)
    try:
        yield
    finally:
        functorch._set_vmap_fallback_warning_enabled(False)


def max_diff(a: Variant, b: Variant, k: int) -> float:
    return max(
        float((p - q).abs().max())
        for i in range(k)
        for p, q in zip(a.params(i), b.params(i), strict=True)
    )


def build(arch: Arch, split: Sequence[str], k: int, device: torch.device,
          grouped: bool) -> dict[str, Variant]:
    torch.manual_seed(0)
    models = [channel_net(arch, split).to(device, memory_format=FAST_LAYOUT) for _ in range(k)]
    # Built from the initial weights, before any step changes them.
    variants: dict[str, Variant] = {"batched": Batched(models)}
    if grouped:
        variants["grouped"] = Grouped(models)
    return {"sequential": Sequential(models), **variants}


def check(variants: dict[str, Variant], batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
          k: int, fp64: bool) -> dict[str, Any]:
    """Deterministic fp32 steps on the same batches; each variant's largest parameter
    difference from ``sequential``, how far ``sequential`` moved (``update``) and, with
    ``fp64``, every variant's difference from ``sequential`` run in float64."""
    ref = variants["sequential"]
    init = [[p.clone() for p in ref.params(i)] for i in range(k)]
    runs = dict(variants)
    if fp64:
        assert isinstance(ref, Sequential)
        runs["fp64"] = Sequential([copy.deepcopy(m).double() for m in ref.models])
    with exact_fp32():
        for name, v in runs.items():
            v.train(False)
            for xs, ys in batches:
                v.step(xs.double() if name == "fp64" else xs, ys)
    out: dict[str, Any] = {name: max_diff(ref, v, k) for name, v in variants.items()
                           if v is not ref}
    out["update"] = max(float((p - q).abs().max())
                        for i in range(k) for p, q in zip(ref.params(i), init[i], strict=True))
    if fp64:
        out["fp64"] = {name: max_diff(runs["fp64"], v, k) for name, v in variants.items()}
    return out


def measure(arch: Arch, args: argparse.Namespace, k: int,
            device: torch.device) -> dict[str, Any]:
    variants = build(arch, args.split, k, device, args.grouped)
    shape = (k, BATCH, arch.in_channels, arch.image_size, arch.image_size)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.rand(shape, generator=gen).to(device),
                torch.randint(arch.n_classes, shape[:2], generator=gen).to(device))
               for _ in range(max(args.check_steps, 1))]
    xs, ys = batches[0]
    with vmap_fallback_warnings(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diffs = check(variants, batches, k, args.fp64_reference)
        for v in variants.values():  # one train-mode step each: dropout's kernels warm up too
            v.train(True)
            v.step(xs, ys)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, v in variants.items():
            times[name].append(timed(lambda v=v: v.step(xs, ys), device, args.steps))
    med = {name: statistics.median(t) for name, t in times.items()}
    out: dict[str, Any] = {
        "k": k,
        "sequential_s_per_step": round(med["sequential"], 5),
        "batched_s_per_step": round(med["batched"], 5),
        "speedup": round(med["sequential"] / med["batched"], 3),
        "max_abs_param_diff": diffs["batched"],
        "max_abs_param_update": diffs["update"],
    }
    if "grouped" in variants:
        out |= {"grouped_s_per_step": round(med["grouped"], 5),
                "grouped_speedup": round(med["sequential"] / med["grouped"], 3),
                "grouped_max_abs_param_diff": diffs["grouped"]}
    if "fp64" in diffs:
        out["fp64_max_abs_param_diff"] = diffs["fp64"]
    out["rounds_s"] = {name: [round(t, 4) for t in ts] for name, ts in times.items()}
    out["warnings"] = sorted({str(w.message).splitlines()[0] for w in caught})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dataset", default=None,
                    help="comma-separated: mnist,cifar10; default mnist on cpu, both on cuda")
    ap.add_argument("--k", default="5,10", help="comma-separated channel counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0,
                    help="steps timed per variant and round; 0: 1 on cpu, 20 on cuda")
    ap.add_argument("--check-steps", type=int, default=2,
                    help="deterministic steps compared against sequential (also warm-up)")
    ap.add_argument("--fp64-reference", action="store_true",
                    help="also report each variant's difference from sequential in float64")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads; 0: torch default")
    ap.add_argument("--split", default="dropout", help="HRS split: stages ending block 1")
    ap.add_argument("--no-grouped", dest="grouped", action="store_false",
                    help="skip the hand-written grouped-convolution variant")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.split = [s.strip() for s in args.split.split(",") if s.strip()]
    device = torch.device(args.device)
    args.steps = args.steps or (1 if device.type == "cpu" else 20)
    names = args.dataset or ("mnist" if device.type == "cpu" else "mnist,cifar10")
    results = []
    for name in names.split(","):
        arch = DATASETS[name.strip()].arch
        for k in (int(s) for s in args.k.split(",")):
            began = time.perf_counter()
            row = {"dataset": name.strip(), **measure(arch, args, k, device)}
            results.append(row)
            print(f"{name} k={k}: speedup {row['speedup']} "
                  f"({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
    print(json.dumps({
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch": BATCH, "rounds": args.rounds, "steps": args.steps,
        "check_steps": args.check_steps,
        "split": args.split, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cudnn_tf32": device.type == "cuda" and torch.backends.cudnn.allow_tf32,
        "results": results,
    }), flush=True)


if __name__ == "__main__":
    main()
