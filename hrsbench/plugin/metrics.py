"""Clean accuracy and attack success, each drawn ``repeats`` times for stochastic models: one
stochastic prediction over-states (or under-states) a defense, so mean and deviation are kept.
And the input-gradient deviation of Table 1 / Figure A4."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from hrsbench.plugin.estimator import Classifier

#: ``loss(logits, y, targets) -> per-example values``, as :meth:`hrsbench.Attack.loss`.
Loss = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@torch.no_grad()
def predictions(model: nn.Module, x: np.ndarray, repeats: int, batch_size: int = 512) -> np.ndarray:
    """``repeats`` independent label predictions per input, shape (repeats, n).

    The inputs go to the model's device once and the labels come back once: ``repeats`` passes
    over 10,000 test images would otherwise copy every batch to a GPU ``repeats`` times."""
    model.eval()
    device = next(model.parameters()).device
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    labels = [torch.cat([model(xt[i : i + batch_size]).argmax(1)
                         for i in range(0, len(xt), batch_size)])
              for _ in range(repeats)]
    return torch.stack(labels).cpu().numpy()


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


def won(
    adv_preds: np.ndarray,
    y: np.ndarray,
    targets: np.ndarray | None,
    clean_preds: np.ndarray | None = None,
) -> np.ndarray:
    """Per draw and example, whether the attack won, shape (repeats, n): as
    :func:`attack_success` counts it (targeted: the target was predicted; untargeted: the
    adversarial example was misclassified by a draw that classified its clean image correctly)."""
    if targets is not None:
        return adv_preds == targets[None]
    return (adv_preds != y[None]) & (clean_preds == y[None])


def outcome_counts(wins: np.ndarray) -> dict[str, np.ndarray]:
    """Per example, the draws won out of all ``repeats`` (``successes``) and out of the first
    ``repeats // 2`` draws only (``successes_pick``).

    Picking a per-example worst case over attacks on the same draws that score it is biased
    upwards on a stochastic defense; the worst case is picked on the first half of the draws and
    scored on the other half (``successes − successes_pick``), and the other way round
    (:mod:`hrsbench.report.worstcase`), which needs the two halves' counts apart."""
    half = wins.shape[0] // 2
    return {"successes": wins.sum(axis=0), "successes_pick": wins[:half].sum(axis=0)}


def targeted_pairs(
    x: np.ndarray, y: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image repeated towards each of the other classes, as the paper's protocol."""
    others = np.array([[t for t in range(n_classes) if t != label] for label in y])
    reps = n_classes - 1
    return np.repeat(x, reps, axis=0), np.repeat(y, reps), others.reshape(-1)


def gradient_deviation(
    classifier: Classifier,
    loss: Loss,
    x: np.ndarray,
    y: np.ndarray,
    targets: np.ndarray | None,
    samples: int,
    batch_size: int = 256,
) -> dict[str, float]:
    """Input-gradient deviation (section 3.3, Table 1): for each input, ``samples`` single-draw
    gradients of the attack's loss at the clean input; the standard deviation per input
    dimension, averaged over dimensions and inputs.

    ``grad_std`` is that of the raw gradients, as the paper words it; its scale depends on the
    loss and the model's confidence, so ``grad_sign_std`` does the same on the gradient's sign
    (what an L∞ step uses; between 0 and 1), which compares across models. Both are 0 for a
    deterministic model.
    """
    if samples < 2:
        raise ValueError(f"a deviation needs at least 2 gradient samples, got {samples}")
    device = classifier.device
    raw, sign = 0.0, 0.0
    for i in range(0, len(x), batch_size):
        sl = slice(i, i + batch_size)
        xb = torch.from_numpy(np.ascontiguousarray(x[sl], dtype=np.float32)).to(device)
        yb = torch.from_numpy(np.asarray(y[sl], dtype=np.int64)).to(device)
        tb = None if targets is None else torch.from_numpy(
            np.asarray(targets[sl], dtype=np.int64)).to(device)
        grads = classifier.sample_gradients(xb, lambda z, yb=yb, tb=tb: loss(z, yb, tb), samples)
        per_input = grads.flatten(2)  # (samples, batch, dims)
        raw += float(per_input.std(0).mean(1).sum())
        sign += float(per_input.sign().std(0).mean(1).sum())
    return {"grad_std": raw / len(x), "grad_sign_std": sign / len(x)}
