"""The whole CUDA proof in one command: versions, the CUDA tests, the quick preset from an empty
cache, training and attack throughput, and the MNIST base model at the paper's 40 epochs.

GPU time is scarce and comes in short leases, so this runs unattended from start to end: every
stage is timed, a stage that fails is recorded with its error and the next one still runs, and
the summary is rewritten after each stage (a lease that ends early still leaves what finished).
It writes ``OUT/summary.json`` and ``OUT/gpu_check.log`` and prints the summary as one JSON line.

    python benchmarks/gpu_check.py --device cuda --out gpu-check       # ≤ 8 min on one GPU
    python benchmarks/gpu_check.py --device cpu --smoke --out /tmp/gc  # ≤ 3 min on a CPU

``--smoke`` shrinks every stage (a quick preset of 2,000 training images and 1 epoch, 1 epoch
instead of 40, a few timed steps) so that a CPU runs the same code end to end: CI runs it, and
the CUDA tests then run with the CPU standing in for the GPU (``HRSBENCH_CUDA_TESTS_ON=cpu``).
The summary's ``throughput`` is what ``hrsbench run --dry-run --device cuda`` estimates GPU runs
from (docs/gpu.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: The quick preset's top-level keys replaced for ``--smoke`` (the rest of the preset is kept).
SMOKE_QUICK = {"epochs": 1, "n_test": 1, "n_train": 2000, "n_clean": 500, "repeats": 2,
               "eot_samples": 2, "grad_samples": 2}


class Check:
    """The run's stages, summary and log."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out / "gpu_check.log"
        self.log_path.write_text("")
        self.began = time.perf_counter()
        self.summary: dict[str, Any] = {
            "check": "gpu_check", "device": args.device, "smoke": args.smoke,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "stages": {},
        }

    def log(self, text: str) -> None:
        line = f"[{time.perf_counter() - self.began:7.1f} s] {text}"
        print(line, flush=True)
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    def stage(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        self.log(f"== {name}")
        start = time.perf_counter()
        try:
            result = {"ok": True, **fn()}
        except Exception as e:  # recorded, and the next stage still runs
            self.log(traceback.format_exc())
            result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        result["seconds"] = round(time.perf_counter() - start, 1)
        self.summary["stages"][name] = result
        self.log(f"{name}: {json.dumps(result)}")
        self.save()

    def save(self) -> None:
        self.summary["seconds"] = round(time.perf_counter() - self.began, 1)
        self.summary["ok"] = all(s["ok"] for s in self.summary["stages"].values())
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")

    def subprocess(self, cmd: list[str], env: dict[str, str], timeout: float) -> str:
        """Run ``cmd``, its output into the log; returns the output."""
        self.log("$ " + " ".join(cmd))
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)
        output = proc.stdout + proc.stderr
        with open(self.log_path, "a") as f:
            f.write(output)
        if proc.returncode != 0:
            tail = " | ".join(output.strip().splitlines()[-3:])
            raise RuntimeError(f"exit {proc.returncode}: {tail}")
        return output


def environment(device: str) -> dict[str, Any]:
    import art
    import torch

    import hrsbench

    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "art": art.__version__, "hrsbench": hrsbench.__version__,
        "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
    }
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda, but torch sees no CUDA device")
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count,
                    cudnn=torch.backends.cudnn.version(),
                    bf16=torch.cuda.is_bf16_supported())
    return info


def cuda_tests(check: Check, device: str) -> dict[str, Any]:
    env = dict(os.environ)
    if not device.startswith("cuda"):
        env["HRSBENCH_CUDA_TESTS_ON"] = "cpu"
    if check.args.data_dir:
        env["HRSBENCH_DATA"] = str(Path(check.args.data_dir).resolve())
    out = check.subprocess([sys.executable, "-m", "pytest", "-o", "addopts=", "-m", "cuda", "-q",
                            "-rs", "-p", "no:cacheprovider", "tests/test_cuda.py"], env,
                           timeout=180)
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", out)}
    if not counts.get("passed"):
        raise RuntimeError(f"no CUDA test passed: {counts}")
    return {"tests": counts}


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_step(model: Any, opt: Any, x: Any, y: Any) -> None:
    import torch

    model.train()
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _attack_step(model: Any, x: Any, y: Any) -> None:
    import torch

    model.eval()
    xg = x.clone().requires_grad_(True)
    torch.autograd.grad(torch.nn.functional.cross_entropy(model(xg), y), xg)


def throughput(device_name: str, smoke: bool) -> dict[str, Any]:
    """Training images/s (batch 128, the paper's) and attack image-steps/s (batch 256, a run's
    default: one input gradient per image per step) of each dataset's base model, in fp32 and,
    where the device computes it, under bf16 autocast. Untrained weights: cost does not depend
    on their values."""
    import torch
    from hrsbench_plugins.datasets import CIFAR10, MNIST

    from hrsbench import base_model

    device = torch.device(device_name)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    steps = 3 if smoke else 50
    result: dict[str, Any] = {}
    for dataset in (MNIST(), CIFAR10()):
        arch = dataset.arch
        torch.manual_seed(0)
        model = base_model(arch).to(device, memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        shape = (arch.in_channels, arch.image_size, arch.image_size)
        xt, yt = torch.rand(128, *shape, device=device), torch.randint(10, (128,), device=device)
        xa, ya = torch.rand(256, *shape, device=device), torch.randint(10, (256,), device=device)

        train = partial(_train_step, model, opt, xt, yt)
        attack = partial(_attack_step, model, xa, ya)

        rates: dict[str, float] = {}
        for precision in ("fp32", "bf16") if bf16 else ("fp32",):
            for kind, fn, images in (("train", train, 128), ("attack", attack, 256)):
                with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
                    for _ in range(3):
                        fn()
                    _sync(device)
                    start = time.perf_counter()
                    for _ in range(steps):
                        fn()
                    _sync(device)
                rates[f"{kind}_{precision}"] = round(steps * images /
                                                     (time.perf_counter() - start), 1)
        result[dataset.name] = {
            "train_images_per_s": rates["train_fp32"],
            "attack_image_steps_per_s": rates["attack_fp32"],
            **({"train_images_per_s_bf16": rates["train_bf16"],
                "attack_image_steps_per_s_bf16": rates["attack_bf16"]} if bf16 else {}),
        }
    return result


def quick_run(check: Check, device: str, smoke: bool) -> dict[str, Any]:
    """``hrsbench run`` of the quick preset (a shrunk copy with ``--smoke``) into an empty
    model cache, timed as a user sees it (process start to leaderboard)."""
    from importlib import resources

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    config = "quick"
    if smoke:
        text = (resources.files("hrsbench") / "presets" / "quick.toml").read_text()
        for key, value in SMOKE_QUICK.items():
            text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
            if not n:
                text = text.replace("\n[[defenses]]", f"\n{key} = {value}\n[[defenses]]", 1)
        (work / "quick-smoke.toml").write_text(text)
        config = str(work / "quick-smoke.toml")
    cmd = [sys.executable, "-c", "from hrsbench.cli import app; app()", "run", config,
           "--out", str(work / "run"), "--cache-dir", str(work / "cache"), "--device", device]
    if check.args.data_dir:
        cmd += ["--data-dir", str(Path(check.args.data_dir).resolve())]
    start = time.perf_counter()
    check.subprocess(cmd, dict(os.environ), timeout=300)
    wall = time.perf_counter() - start
    lines = [json.loads(line) for line in (work / "run" / "results.jsonl").read_text().splitlines()]
    models = {}
    for line in lines:
        m = line["model"]
        label = f"{m['defense']} {json.dumps(m.get('params') or {}, sort_keys=True)}"
        models.setdefault(label, line["metrics"]["clean_accuracy"])
    train_s = sum(line["provenance"].get("train_time_s") or 0 for line in lines)
    cells_s = sum(line["provenance"].get("time_s") or 0 for line in lines)
    return {"config": "quick" if not smoke else "quick (smoke: " + ", ".join(
                f"{k}={v}" for k, v in SMOKE_QUICK.items()) + ")",
            "wall_s": round(wall, 1), "lines": len(lines), "train_s": round(train_s, 1),
            "cells_s": round(cells_s, 1), "clean_accuracy": models}


def mnist_base(check: Check, device_name: str, smoke: bool) -> dict[str, Any]:
    """The MNIST base model on the paper's schedule (40 epochs, SGD 0.01, Nesterov momentum
    0.9, batch 128, the whole training split), resident on the device; clean accuracy on the
    10,000 test images. ``--smoke``: 1 epoch on 2,000 images."""
    import torch
    from hrsbench_plugins.datasets import MNIST

    from hrsbench import ModelCache, Trainer, base_model
    from hrsbench.plugin.metrics import accuracy, predictions

    device = torch.device(device_name)
    data = Path(check.args.data_dir).resolve() if check.args.data_dir else None
    n_train, epochs = (2000, 1) if smoke else (None, 40)
    x, y = MNIST().load("train", n_train, data)
    x_test, y_test = MNIST().load("test", None, data)
    torch.manual_seed(0)
    model = base_model(MNIST.arch)
    steps = {"done": 0}

    def progress(label: str, done: int, total: int) -> None:
        if done == total or done - steps["done"] >= total // 8:
            steps["done"] = done
            check.log(f"  {label}: step {done}/{total}")

    with tempfile.TemporaryDirectory() as cache:
        trainer = Trainer(torch.from_numpy(x), torch.from_numpy(y), epochs=epochs, seed=0,
                          cache=ModelCache(Path(cache)), device=device, progress=progress)
        _sync(device)
        start = time.perf_counter()
        trainer.fit(model)
        _sync(device)
        seconds = time.perf_counter() - start
    acc, _ = accuracy(predictions(model, x_test, 1, 1000), y_test)
    return {"epochs": epochs, "n_train": len(x), "train_s": round(seconds, 1),
            "train_images_per_s": round(epochs * len(x) / seconds, 1),
            "clean_accuracy": round(acc, 4), "paper_clean_accuracy": 0.9936}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--smoke", action="store_true", help="every stage shrunk to run on a CPU")
    ap.add_argument("--out", default="gpu-check", help="folder for summary.json and the log")
    ap.add_argument("--data-dir", default=None, help="data folder (default: HRSBENCH_DATA)")
    ap.add_argument("--skip", default="", help="comma-separated stages to leave out")
    args = ap.parse_args()
    check = Check(args)
    skip = set(filter(None, args.skip.split(",")))
    stages: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("environment", lambda: environment(args.device)),
        ("throughput", lambda: throughput(args.device, args.smoke)),
        ("cuda_tests", lambda: cuda_tests(check, args.device)),
        ("quick_run", lambda: quick_run(check, args.device, args.smoke)),
        ("mnist_base_40_epochs", lambda: mnist_base(check, args.device, args.smoke)),
    ]
    for name, fn in stages:
        if name not in skip:
            check.stage(name, fn)
    check.save()
    print(json.dumps(check.summary))
    sys.exit(0 if check.summary["ok"] else 1)


if __name__ == "__main__":
    main()
