"""Clean accuracy of the same models trained in fp32 and in bf16, with paired 95 % intervals.

Each precision is an ``hrsbench.run`` of a config holding only the models (no attacks), into
``OUT/<precision>/`` with one model cache, so the run is resumable: a model that finished is
loaded, a training that was interrupted resumes from its last epoch. Clean accuracy is
predicted in fp32 over the whole test split, ``repeats`` draws per image, as in every run;
the difference bf16 − fp32 is resampled over the same test images (paired).

    python benchmarks/precision_accuracy.py --out runs/precision-mnist            # Table A2's
    python benchmarks/precision_accuracy.py --dataset cifar10 --epochs 40 \\
        --model base --precisions bf16 --out runs/precision-cifar10             # ~40 min (2 cores)

``--model`` takes ``NAME`` or ``NAME:JSON-params`` (``gaussian:{"init": 0.2, "inner": 0.1}``);
the default is Table A2's MNIST base, HRS 10×10 and Gaussian (0.2, 0.1) at ``mnist-paper-cpu``'s
5 epochs. Prints one JSON line (also written to ``OUT/summary.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODELS = ('base', 'hrs:{"channels": [10, 10]}', 'gaussian:{"init": 0.2, "inner": 0.1}')


def model_entry(text: str) -> dict[str, Any]:
    name, _, params = text.partition(":")
    return {"name": name, **({"params": json.loads(params)} if params else {})}


def label(line: dict[str, Any]) -> str:
    params = line.get("params") or {}
    return line["defense"] + (" " + json.dumps(params, sort_keys=True) if params else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--model", action="append", help="NAME or NAME:JSON-params (repeatable)")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-train", type=int, default=None, help="training images (default: all)")
    ap.add_argument("--n-clean", type=int, default=None, help="test images (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="runs/precision-accuracy")
    ap.add_argument("--cache-dir", default=None, help="model cache (default: hrsbench's)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    import hrsbench
    from hrsbench.report.stats import Bootstrap, counts_of, resampled_means

    config = {"dataset": args.dataset, "epochs": args.epochs, "seed": args.seed,
              "repeats": args.repeats, "n_train": args.n_train, "n_clean": args.n_clean,
              "defenses": [model_entry(m) for m in (args.model or DEFAULT_MODELS)]}
    precisions = args.precisions.split(",")
    out = Path(args.out)
    lines: dict[str, dict[str, dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    for precision in precisions:
        start = time.perf_counter()
        run = hrsbench.run(config, out=out / precision, precision=precision, device=args.device,
                           cache_dir=args.cache_dir, data_dir=args.data_dir, reports=False,
                           progress=_progress)
        seconds[precision] = round(time.perf_counter() - start, 1)
        lines[precision] = {label(line): line for line in run.lines if line["kind"] == "clean"}

    boot = Bootstrap()
    models: dict[str, Any] = {}
    for name in lines[precisions[0]]:
        per_image = np.stack([counts_of(lines[p][name]["clean_correct"]) / args.repeats
                              for p in precisions], axis=1)
        reps = resampled_means(per_image, f"precision/{name}", boot)
        lo, hi = boot.bounds(reps)
        entry: dict[str, Any] = {}
        for i, p in enumerate(precisions):
            line = lines[p][name]
            entry[p] = {"clean_accuracy": round(float(per_image[:, i].mean()), 4),
                        "lo": round(float(lo[i]), 4), "hi": round(float(hi[i]), 4),
                        "train_s": round(line["train_time_s"] or 0.0, 1),
                        "model_key": line["model_key"]}
        if len(precisions) == 2:
            diff = reps[:, 1] - reps[:, 0]
            dlo, dhi = boot.bounds(diff[:, None])
            entry[f"{precisions[1]}_minus_{precisions[0]}_pp"] = [
                round(100 * float(per_image[:, 1].mean() - per_image[:, 0].mean()), 2),
                round(100 * float(dlo[0]), 2), round(100 * float(dhi[0]), 2)]
        models[name] = entry
    summary = {"benchmark": "precision_accuracy", "dataset": args.dataset,
               "epochs": args.epochs, "repeats": args.repeats, "device": args.device,
               "test_images": int(per_image.shape[0]), "run_s": seconds, "models": models}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary), flush=True)


_shown: dict[str, int] = {}


def _progress(task: str, text: str, done: int, total: int) -> None:
    """A line per eighth of each training, so a log of a 40-minute job shows where it is."""
    if task != "train":
        return
    step = max(total // 8, 1)
    if done == total or done - _shown.get(text, 0) >= step:
        _shown[text] = done
        print(f"  {text}: step {done}/{total}", flush=True)


if __name__ == "__main__":
    main()
