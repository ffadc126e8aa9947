"""MNIST clean accuracy of the base model and the stochastic baselines, beside the paper's Table A2.

Every model starts from the same seeded initialisation and follows the same schedule (the
engine's Trainer: SGD 0.01, momentum 0.9, Nesterov, batch 128) on the full training set; trained
weights are cached, so a rerun only re-evaluates. Accuracy is measured through
``hrsbench.Classifier.predict`` (ART, eval mode) on the full test set: one pass for a
deterministic model, ``--passes`` passes for a stochastic one (mean and standard deviation, the
paper's "Dev." column). The randomness-free surrogate's accuracy is reported beside.

    HRSBENCH_DATA=/work/shared/data nice -n 10 python benchmarks/clean_accuracy.py
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import hrsbench
from hrsbench import Classifier, Defense, ModelCache, Trainer
from hrsbench.plugin.cache import stable_hash
from hrsbench.plugin.models import seeded_init
from hrsbench.plugin.params import as_dict, instantiate
from hrsbench.plugin.registry import load_registry


@dataclass(frozen=True)
class Row:
    """One line of Table A2 (MNIST column): our defense and parameters, the paper's figures."""

    label: str
    defense: str
    params: dict[str, Any]
    paper_acc: float
    paper_dev_e4: float | None


TABLE_A2 = (
    Row("Base", "base", {}, 99.04, None),
    Row("SAP", "sap", {}, 99.02, 1.47),
    Row("Dropout 0.1", "dropout", {"test_rate": 0.1}, 98.98, 3.45),
    Row("Dropout 0.3", "dropout", {"test_rate": 0.3}, 98.68, 6.06),
    Row("Gaussian", "gaussian", {}, 99.02, 5.82),
)


def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Share of ``x`` classified as ``y`` by one prediction through ART (eval mode)."""
    clf = Classifier(model, input_shape=x.shape[1:])
    return float((clf.predict(x, batch_size=500).argmax(1) == y).mean())


def progress(label: str, done: int, total: int) -> None:
    if done == total or done % 100 == 0:
        print(f"  {label}: {done}/{total} steps", file=sys.stderr, flush=True)


def trained(defense: Defense, dataset: hrsbench.Dataset, trainer: Trainer) -> tuple[Any, float]:
    """The defense's model trained under ``trainer``, from the cache when possible; the seconds
    training took (0 when cached)."""
    model = seeded_init(defense.build(dataset), trainer.seed)
    key = trainer.key_for("model", defense.name, as_dict(defense))
    if trainer.cache.load(key, model):
        return model.eval(), 0.0
    start = time.perf_counter()
    defense.fit(model, trainer, dataset)
    seconds = time.perf_counter() - start
    trainer.cache.save(key, model)
    return model.eval(), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--train-n", type=int, default=None, help="training subset (default: all)")
    ap.add_argument("--test-n", type=int, default=None, help="test subset (default: all)")
    ap.add_argument("--passes", type=int, default=5, help="predictions per stochastic model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/baseline-cache"))
    ap.add_argument("--data-dir", type=Path, default=None, help="default: $HRSBENCH_DATA")
    ap.add_argument("--out", type=Path, default=Path("docs/clean-accuracy-mnist.md"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is fastest on a shared, oversubscribed CPU")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    registry = load_registry()
    dataset = registry.get("dataset", "mnist")()
    x_train, y_train = dataset.load("train", args.train_n, args.data_dir)
    x_test, y_test = dataset.load("test", args.test_n, args.data_dir)
    trainer = Trainer(
        x=torch.from_numpy(x_train), y=torch.from_numpy(y_train), epochs=args.epochs,
        seed=args.seed, cache=ModelCache(args.cache_dir), progress=progress,
        key=stable_hash(["clean-accuracy", "mnist", len(x_train), args.epochs, args.seed]),
    )

    lines = []
    total_train = 0.0
    for row in TABLE_A2:
        defense = instantiate(registry.get("defense", row.defense), row.params, row.label)
        print(f"{row.label}: {defense}", file=sys.stderr, flush=True)
        model, seconds = trained(defense, dataset, trainer)
        total_train += seconds
        torch.manual_seed(args.seed)
        passes = args.passes if defense.stochastic else 1
        accs = np.array([accuracy(model, x_test, y_test) for _ in range(passes)])
        surrogate = accuracy(defense.surrogate(model), x_test, y_test)
        lines.append((row, defense, accs, surrogate, seconds))
        print(f"  accuracy {100 * accs.mean():.2f}% (std {accs.std():.2e}, {passes} passes), "
              f"surrogate {100 * surrogate:.2f}%, trained in {seconds:.0f} s",
              file=sys.stderr, flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(lines, args, len(x_train), len(x_test)))
    print(f"wrote {args.out} (training {total_train:.0f} s)", file=sys.stderr)


def render(lines: list, args: argparse.Namespace, n_train: int, n_test: int) -> str:
    """The Markdown table, with how it was made."""
    out = [
        "# MNIST clean accuracy: base and stochastic baselines vs. Table A2",
        "",
        "Generated by `benchmarks/clean_accuracy.py` (do not edit by hand):",
        "",
        "```",
        f"HRSBENCH_DATA=/work/shared/data nice -n 10 python benchmarks/clean_accuracy.py "
        f"--epochs {args.epochs} --passes {args.passes} --seed {args.seed}",
        "```",
        "",
        f"Training: {n_train} MNIST training images, {args.epochs} epochs of the paper's schedule "
        f"(SGD 0.01, momentum 0.9, Nesterov, batch 128; the paper trains 40), seed {args.seed}, "
        "same initial weights for every model. "
        f"Test: {n_test} test images through `hrsbench.Classifier.predict` (ART, eval mode); "
        f"a stochastic model is predicted {args.passes} times, each pass with fresh randomness. "
        f"torch {torch.__version__}, CPU.",
        "",
        "| Model | Parameters | Accuracy (%) | Dev. (e-4) | Paper (%) | Paper Dev. (e-4) "
        "| Δ vs paper (pts) | Surrogate (%) | Train time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row, defense, accs, surrogate, seconds in lines:
        params = ", ".join(f"{k}={v}" for k, v in as_dict(defense).items()) or "—"
        dev = f"{1e4 * accs.std(ddof=1):.2f}" if len(accs) > 1 else "—"
        paper_dev = f"{row.paper_dev_e4:.2f}" if row.paper_dev_e4 is not None else "—"
        train = "base's" if row.defense == "sap" else f"{seconds:.0f}" if seconds else "cached"
        out.append(
            f"| {row.label} | {params} | {100 * accs.mean():.2f} | {dev} | {row.paper_acc:.2f} "
            f"| {paper_dev} | {100 * accs.mean() - row.paper_acc:+.2f} | {100 * surrogate:.2f} "
            f"| {train} |"
        )
    out += [
        "",
        "Dev. is the sample standard deviation of the accuracy (a fraction, in units of 1e-4) over "
        "the passes, the paper's Dev. column. Surrogate: the same weights with the randomness "
        "removed (no pruning, no test-time dropout, no noise), the `fixed` attack setting's model. "
        "SAP reuses the base's trained weights (pruning is post hoc); its train time is the "
        "base's.",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    main()
