"""Clean accuracy and attack success, each drawn ``repeats`` times for stochastic models: one
stochastic prediction over-states (or under-states) a defense, so mean and deviation are kept."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hrsbench.training import predict_logits


def predictions(model: nn.Module, x: np.ndarray, repeats: int, batch_size: int = 512) -> np.ndarray:
    """``repeats`` independent label predictions per input, shape (repeats, n)."""
    xt = torch.from_numpy(x)
    return np.stack(
        [predict_logits(model, xt, batch_size).argmax(1).numpy() for _ in range(repeats)]
    )


def accuracy(preds: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation over repeats of the share of correct predictions."""
    per_draw = (preds == y[None]).mean(axis=1)
    return float(per_draw.mean()), float(per_draw.std())


def attack_success(
    adv_preds: np.ndarray,
    y: np.ndarray,
    targets: np.ndarray | None,
    clean_preds: np.ndarray | None = None,
) -> tuple[float, float]:
    """Targeted: share of (image, target) pairs classified as the target. Untargeted: share of
    misclassified adversarial examples among those the same draw got right when clean."""
    if targets is not None:
        per_draw = (adv_preds == targets[None]).mean(axis=1)
    else:
        correct = clean_preds == y[None]
        fooled = (adv_preds != y[None]) & correct
        per_draw = fooled.sum(axis=1) / np.maximum(correct.sum(axis=1), 1)
    return float(per_draw.mean()), float(per_draw.std())


def targeted_pairs(
    x: np.ndarray, y: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image repeated towards each of the other classes, as the paper's protocol."""
    others = np.array([[t for t in range(n_classes) if t != label] for label in y])
    reps = n_classes - 1
    return np.repeat(x, reps, axis=0), np.repeat(y, reps), others.reshape(-1)
