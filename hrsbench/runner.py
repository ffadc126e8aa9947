"""The pipeline: config → cells → defense → attack (or threat) → metrics → results.

Cells sharing a trained model run together; the model is trained once (or loaded from the cache)
and each finished cell is appended to ``results.jsonl`` at once, so a rerun skips it.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import art
import numpy as np
import torch
from torch import nn

from hrsbench import __version__
from hrsbench.attack import Attack
from hrsbench.cache import ModelCache
from hrsbench.cells import Cell, expand
from hrsbench.config import RunConfig
from hrsbench.data import Dataset
from hrsbench.defense import Defense
from hrsbench.estimator import Classifier, crafting_classifier
from hrsbench.metrics import (
    accuracy,
    attack_success,
    gradient_deviation,
    outcome_counts,
    predictions,
    targeted_pairs,
    won,
)
from hrsbench.outcomes import encode_counts
from hrsbench.params import instantiate
from hrsbench.plugins import Registry, guarded, registry
from hrsbench.record import Metrics, Provenance, ResultLine
from hrsbench.report.sanity import write_report
from hrsbench.results import ResultStore
from hrsbench.threat import ThreatContext
from hrsbench.training import FAST_LAYOUT, Trainer

#: progress(task, label, done, total): "cells", "train" or "attack".
Progress = Callable[[str, str, int, int], None]


def _seed(key: str) -> None:
    """Seed every RNG from a cell's key: a cell's result does not depend on run order."""
    s = int(key[:8], 16)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)


def provenance() -> dict[str, Any]:
    return {
        "hrsbench_version": __version__,
        "torch_version": torch.__version__,
        "art_version": art.__version__,
        "python_version": platform.python_version(),
    }


def obtain_model(
    defense: Defense, dataset: Dataset, cell: Cell, trainer: Trainer, cache: ModelCache
) -> tuple[nn.Module, float]:
    """The trained model for ``cell`` from the cache, or trained now; returns training seconds."""
    torch.manual_seed(cell.seed)
    with guarded(defense, "build"):
        model = defense.build(dataset).to(trainer.device, memory_format=FAST_LAYOUT)
    # Held while looking up and training: another process sharing the cache waits, then loads.
    with cache.lock(cell.model_key):
        if cache.load(cell.model_key, model):
            return model.eval(), 0.0
        start = time.perf_counter()
        with guarded(defense, "fit"):
            defense.fit(model, trainer, dataset)
        cache.save(cell.model_key, model)
    return model.eval(), time.perf_counter() - start + trainer.earlier_s


def run(
    cfg: RunConfig,
    out: Path,
    *,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
    config_hash: str | None = None,
    reg: Registry | None = None,
) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``cfg`` into ``out/results.jsonl``; returns all its lines."""
    reg = reg or registry()
    report = progress or (lambda *a: None)
    cells = expand(cfg, reg)
    store = ResultStore(Path(out) / "results.jsonl")
    todo = [c for c in cells if c.key not in store]
    report("cells", "cells", len(cells) - len(todo), len(cells))
    if not todo:
        return _finish(out, [store.records[c.key] for c in cells], reg)

    dev = torch.device(device)
    dataset: Dataset = reg.get("dataset", cfg.dataset)()
    x_train, y_train = dataset.load("train", cfg.n_train, data_dir)
    x_test, y_test = dataset.load("test", cfg.n_clean, data_dir)
    cache = ModelCache(cache_dir)
    groups: dict[str, list[Cell]] = {}
    for c in todo:
        groups.setdefault(c.model_key, []).append(c)

    done = len(cells) - len(todo)
    for model_key, group in groups.items():
        first = group[0]
        defense = instantiate(reg.get("defense", first.defense), first.params, first.defense)
        trainer = Trainer(
            torch.from_numpy(x_train), torch.from_numpy(y_train), epochs=cfg.epochs,
            seed=cfg.seed, cache=cache, device=dev, key=first.training_key,
            progress=lambda label, i, n: report("train", label, i, n),
        )
        model, train_s = obtain_model(defense, dataset, first, trainer, cache)
        _seed(model_key)
        clean_preds = predictions(model, x_test, cfg.repeats, cfg.batch_size)
        clean_acc, clean_std = accuracy(clean_preds, y_test)
        # once per model, on its clean-only line: lets the report resample clean images (Δt)
        clean_correct = encode_counts((clean_preds == y_test[None]).sum(axis=0))
        for cell in group:
            start = time.perf_counter()
            if cell.kind == "threat":
                ctx = ThreatContext(
                    dataset, defense, reg, cache, model_key, cfg.seed, cell.repeats,
                    cfg.batch_size, dev, data_dir, lambda label, i, n: report("train", label, i, n),
                )
                _seed(cell.key)
                metrics = _run_threat(cell, model, ctx)
            else:
                attack = None
                if cell.attack != "none":
                    acls = reg.get("attack", cell.attack)
                    attack = instantiate(acls, cell.attack_params, cell.attack)
                    attack.batch_size = cfg.batch_size  # an execution option, not a parameter
                metrics = evaluate(
                    cell, defense, attack, model, dataset, x_test, y_test, cfg, dev, report
                )
                if attack is None:
                    metrics["clean_correct"] = clean_correct
            line = result_line(
                cell, Metrics.measured(clean_acc, {"clean_accuracy_std": clean_std, **metrics}),
                int(metrics.get("n_examples", 0)), len(x_test),
                config_hash=config_hash or cfg.hash, train_s=train_s,
                time_s=time.perf_counter() - start,
            )
            train_s = 0.0  # charged once, to the first line of the model
            store.append(line)
            done += 1
            report("cells", "cells", done, len(cells))
    return _finish(out, [store.records[c.key] for c in cells], reg)


def result_line(
    cell: Cell, metrics: Metrics, n_examples: int, clean_images: int, *, config_hash: str,
    train_s: float, time_s: float,
) -> ResultLine:
    """The line a finished cell leaves: its identity, what was measured and how."""
    prov = Provenance(
        **provenance(), config_hash=config_hash, cell_key=cell.key, model_key=cell.model_key,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"), time_s=time_s,
        train_time_s=train_s,
    )
    return ResultLine(cell.model_spec(), cell.threat_spec(),
                      cell.evaluation(n_examples, clean_images), metrics, prov, cell.traits)


def _finish(out: Path, lines: list[ResultLine], reg: Registry) -> list[dict[str, Any]]:
    """Write ``sanity.json`` (gradient-masking checks per defense) beside the results; returns
    the lines as flat rows (:meth:`ResultLine.row`)."""
    rows = [line.row() for line in lines]
    write_report(out, rows)
    return rows


def evaluate(
    cell: Cell,
    defense: Defense,
    attack: Attack | None,
    model: nn.Module,
    dataset: Dataset,
    x_test: np.ndarray,
    y_test: np.ndarray,
    cfg: RunConfig,
    device: torch.device,
    report: Progress,
) -> dict[str, Any]:
    """Attack ``cell.n_test`` test images and score the adversarial examples on ``model``."""
    if attack is None:
        return {"n_examples": 0, "attack_success_rate": None, "attack_success_rate_std": None,
                "defense_rate": None, "grad_std": None, "grad_sign_std": None}
    _seed(cell.key)
    x, y = x_test[: cell.n_test], y_test[: cell.n_test]
    targets = None
    if cell.targeted:
        x, y, targets = targeted_pairs(x, y, dataset.arch.n_classes)
    n_classes = dataset.arch.n_classes
    deviation = _gradient_deviation(defense, attack, model, x, y, targets, n_classes, cfg, device)
    # The fixed and expectation settings call into the defense's own code.
    with guarded(defense, {"expectation": "expectation"}.get(cell.setting, "surrogate")):
        classifier = crafting_classifier(
            cell.setting, defense, model, x.shape[1:], n_classes,
            eot_samples=cell.eot_samples, device=str(device),
        )
    label = (f"{cell.defense} {cell.attack} {cell.setting} "
             f"{attack.strength}={cell.attack_strength:g}")
    chunks = []
    for i in range(0, len(x), cfg.batch_size):
        sl = slice(i, i + cfg.batch_size)
        t = None if targets is None else targets[sl]
        with guarded(attack, "generate"):
            chunks.append(attack.generate(classifier, x[sl], y[sl], cell.attack_strength, t))
        report("attack", label, min(i + cfg.batch_size, len(x)), len(x))
    adv = np.concatenate(chunks).astype(np.float32)
    adv_preds = predictions(model, adv, cell.repeats, cfg.batch_size)
    clean_preds = None if targets is not None else predictions(model, x, cell.repeats)
    asr, asr_std = attack_success(adv_preds, y, targets, clean_preds)
    counts = outcome_counts(won(adv_preds, y, targets, clean_preds))
    outcomes = {k: encode_counts(v) for k, v in counts.items()}
    if clean_preds is not None:
        # an untargeted rate's denominator: the attacked images' correct clean draws
        outcomes["clean_correct"] = encode_counts((clean_preds == y[None]).sum(axis=0))
    delta = (adv - x).reshape(len(x), -1)
    return {
        "n_examples": len(x),
        "attack_success_rate": asr,
        "attack_success_rate_std": asr_std,
        "defense_rate": 1.0 - asr,
        **outcomes,
        "linf": float(np.abs(delta).max()),
        "l2_mean": float(np.linalg.norm(delta, axis=1).mean()),
        **deviation,
    }


def _gradient_deviation(
    defense: Defense,
    attack: Attack,
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    targets: np.ndarray | None,
    n_classes: int,
    cfg: RunConfig,
    device: torch.device,
) -> dict[str, float | None]:
    """Table 1's input-gradient deviation of the deployed model under the attack's loss at the
    clean inputs (whatever the setting: it is the defense's property). A defense declared
    deterministic has 0 by definition, which saves ``grad_samples`` passes."""
    if cfg.grad_samples < 2:
        return {"grad_std": None, "grad_sign_std": None}
    if not defense.stochastic:
        return {"grad_std": 0.0, "grad_sign_std": 0.0}
    deployed = Classifier(model, x.shape[1:], n_classes, device=str(device))
    return gradient_deviation(deployed, attack.loss, x, y, targets, cfg.grad_samples,
                              cfg.batch_size)


def _run_threat(cell: Cell, model: nn.Module, ctx: ThreatContext) -> dict[str, Any]:
    """The metrics of a threat cell (``cell.kind == "threat"``) against ``model``; the caller
    seeds the RNGs from the cell's key first and adds the fields every line has."""
    threat = instantiate(ctx.registry.get("threat", cell.attack), cell.attack_params,
                         f"threat {cell.attack!r}")
    with guarded(threat, "run"):
        return threat.run(model, ctx)
