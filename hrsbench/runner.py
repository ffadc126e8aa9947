"""The pipeline: config → cells → defense → attack → metrics → results.

Cells sharing a trained model run together; the model is trained once (or loaded from the cache)
and each finished cell is appended to ``results.jsonl`` at once, so a rerun skips it.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
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
from hrsbench.estimator import Classifier, crafting_model
from hrsbench.metrics import accuracy, attack_success, predictions, targeted_pairs
from hrsbench.params import instantiate
from hrsbench.plugins import Registry, registry
from hrsbench.results import ResultStore
from hrsbench.training import Trainer

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
    model = defense.build(dataset).to(trainer.device)
    if cache.load(cell.model_key, model):
        return model.to(trainer.device).eval(), 0.0
    start = time.perf_counter()
    defense.fit(model, trainer)
    cache.save(cell.model_key, model)
    return model.eval(), time.perf_counter() - start


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
        return [store.records[c.key] for c in cells]

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
            seed=cfg.seed, cache=cache, device=dev, key=model_key,
            progress=lambda label, i, n: report("train", label, i, n),
        )
        model, train_s = obtain_model(defense, dataset, first, trainer, cache)
        _seed(model_key)
        clean_preds = predictions(model, x_test, cfg.repeats, cfg.batch_size)
        clean_acc, clean_std = accuracy(clean_preds, y_test)
        for cell in group:
            start = time.perf_counter()
            attack = None
            if cell.attack != "none":
                acls = reg.get("attack", cell.attack)
                attack = instantiate(acls, cell.attack_params, cell.attack)
            metrics = evaluate(
                cell, defense, attack, model, dataset, x_test, y_test, cfg, dev, report
            )
            record = {
                **cell.to_dict(),
                "strength": cell.params.get(defense.strength) if defense.strength else None,
                "clean_accuracy": clean_acc,
                "clean_accuracy_std": clean_std,
                "n_clean": len(x_test),
                **metrics,
                "cell_key": cell.key,
                "model_key": model_key,
                "config_hash": config_hash or cfg.hash,
                "train_time_s": train_s,
                "time_s": time.perf_counter() - start,
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **provenance(),
            }
            train_s = 0.0  # charged once, to the first line of the model
            store.append(record)
            done += 1
            report("cells", "cells", done, len(cells))
    return [store.records[c.key] for c in cells]


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
                "defense_rate": None}
    _seed(cell.key)
    x, y = x_test[: cell.n_test], y_test[: cell.n_test]
    targets = None
    if cell.targeted:
        x, y, targets = targeted_pairs(x, y, dataset.arch.n_classes)
    classifier = Classifier(
        crafting_model(cell.setting, defense, model), x.shape[1:], dataset.arch.n_classes,
        eot_samples=cell.eot_samples, device=str(device),
    )
    label = f"{cell.defense} {cell.attack} {cell.setting} ε={cell.attack_strength:g}"
    chunks = []
    for i in range(0, len(x), cfg.batch_size):
        sl = slice(i, i + cfg.batch_size)
        t = None if targets is None else targets[sl]
        chunks.append(attack.generate(classifier, x[sl], y[sl], cell.attack_strength, t))
        report("attack", label, min(i + cfg.batch_size, len(x)), len(x))
    adv = np.concatenate(chunks).astype(np.float32)
    adv_preds = predictions(model, adv, cell.repeats, cfg.batch_size)
    clean_preds = None if targets is not None else predictions(model, x, cell.repeats)
    asr, asr_std = attack_success(adv_preds, y, targets, clean_preds)
    return {
        "n_examples": len(x),
        "attack_success_rate": asr,
        "attack_success_rate_std": asr_std,
        "defense_rate": 1.0 - asr,
        "linf": float(np.abs(adv - x).max()),
    }
