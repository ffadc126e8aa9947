"""Does computing attack gradients under bf16 autocast weaken attacks? Paired ASR differences.

A run's attack lines, crafted with fp32 gradients (an existing run folder), are rerun on the same
trained models with every crafting model's forward pass under ``torch.autocast(bf16)`` (logits
cast back to fp32, so losses, steps and projections stay fp32). Whether an adversarial example
succeeds is still decided by the deployed model in fp32, as in every run, and the cells' seeds
are the same, so the two lines of a cell differ only by the gradients' arithmetic. Each
difference (bf16 − fp32 ASR) gets a 95 % interval resampled over the same attacked images;
a resolved negative difference is a weakening.

    hrsbench run --out runs/quick-auto --cache-dir /tmp/quick-cache          # fp32 gradients
    python benchmarks/attack_precision.py --fp32-run runs/quick-auto --cache-dir /tmp/quick-cache

The second command reruns the attack cells only (the models load from the cache). Prints one
JSON line (also ``OUT/summary.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn


class Bf16Gradients(nn.Module):
    """``inner`` with its forward pass under bf16 autocast and fp32 logits out: what an attack
    differentiates when its gradients are computed in bf16."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, torch.bfloat16):
            return self.inner(x).float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32-run", default="runs/quick-auto",
                    help="a finished run whose attacks used fp32 gradients")
    ap.add_argument("--config", default="quick", help="the config that run was made from")
    ap.add_argument("--precision", default=None, help="the run's --precision, if it gave one")
    ap.add_argument("--cache-dir", default=None, help="the model cache that run used")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="runs/attack-precision")
    args = ap.parse_args()

    import hrsbench
    from hrsbench.plugin import estimator
    from hrsbench.report.stats import paired_difference
    from hrsbench.results.store import read_lines

    original = estimator.crafting_model

    def bf16_crafting(name: str, defense: Any, model: nn.Module) -> nn.Module:
        return Bf16Gradients(original(name, defense, model))

    estimator.crafting_model = bf16_crafting  # crafting_classifier looks the name up per call
    start = time.perf_counter()
    hrsbench.run(args.config, out=args.out, precision=args.precision, cache_dir=args.cache_dir,
                 data_dir=args.data_dir, reports=False)
    wall = time.perf_counter() - start
    estimator.crafting_model = original

    fp32 = {line.provenance.cell_key: line.row()
            for line in read_lines(Path(args.fp32_run) / "results.jsonl")}
    bf16 = {line.provenance.cell_key: line.row()
            for line in read_lines(Path(args.out) / "results.jsonl")}
    lines, seconds = [], {"fp32": 0.0, "bf16": 0.0}
    for key, b in bf16.items():
        a = fp32.get(key)
        if a is None or b["attack"] == "none":
            continue
        seconds["fp32"] += a["time_s"] or 0.0
        seconds["bf16"] += b["time_s"] or 0.0
        lo, hi = paired_difference(b, a) or (float("nan"), float("nan"))
        diff = 100 * (b["attack_success_rate"] - a["attack_success_rate"])
        lines.append({
            "defense": b["defense"], "params": b["params"], "attack": b["attack"],
            "attack_params": {k: v for k, v in b["attack_params"].items()
                              if k in ("max_iter", "max_queries")},
            "eps": round(b["attack_strength"], 5), "setting": b["setting"],
            "asr_fp32": round(100 * a["attack_success_rate"], 1),
            "asr_bf16": round(100 * b["attack_success_rate"], 1),
            "diff_pp": [round(diff, 1), round(100 * lo, 1), round(100 * hi, 1)],
        })
    weaker = sum(1 for r in lines if r["diff_pp"][2] < 0)
    stronger = sum(1 for r in lines if r["diff_pp"][1] > 0)
    summary = {"benchmark": "attack_precision", "fp32_run": args.fp32_run, "lines": len(lines),
               "resolved_weaker_in_bf16": weaker, "resolved_stronger_in_bf16": stronger,
               "attack_cell_seconds": {k: round(v, 1) for k, v in seconds.items()},
               "rerun_wall_s": round(wall, 1), "per_line": lines}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
