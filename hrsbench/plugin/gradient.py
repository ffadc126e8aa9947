"""The template for gradient attacks (in the style of foolbox 3), and the losses they maximise.

An attack is a loop of overridable pieces: :meth:`GradientAttack.loss` (per-example objective,
maximised), :meth:`~GradientAttack.start`, :meth:`~GradientAttack.direction` (the sign of the
gradient for L∞), :meth:`~GradientAttack.optimizer` (what turns directions into steps: the
identity, or e.g. :class:`Adam`), :meth:`~GradientAttack.step_size`,
:meth:`~GradientAttack.iterations` and :meth:`~GradientAttack.project` (onto the ε-ball and the
[0, 1] box). FGSM, PGD, CW-PGD and the paper's Adam variants differ only in those pieces; APGD
and CW-L2 replace :meth:`~GradientAttack.run`. Every gradient comes from
:meth:`hrsbench.Classifier.value_and_grad`, so the setting's EOT averaging and fixed-randomness
surrogate apply exactly as they do to ART's attacks, and the loop stays in torch on the
classifier's device (no numpy round trip per step).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Protocol

import torch

from hrsbench.plugin.attack import TensorAttack
from hrsbench.plugin.estimator import Classifier

Tensor = torch.Tensor


class Optimizer(Protocol):
    """Turns an ascent direction into the step taken (before ``step_size`` scaling); one per
    batch, so it may keep state across iterations (momentum, moment estimates)."""

    def update(self, direction: Tensor) -> Tensor: ...


class Identity:
    """The plain step: the direction itself (PGD's sign step, FGSM's one step)."""

    def update(self, direction: Tensor) -> Tensor:
        return direction


def _others(logits: Tensor, exclude: Tensor) -> Tensor:
    """``logits`` with the ``exclude`` class of each row pushed to -inf (for "best other")."""
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, exclude[:, None], True)
    return logits.masked_fill(mask, float("-inf"))


def margin_loss(logits: Tensor, y: Tensor, targets: Tensor | None = None) -> Tensor:
    """Carlini–Wagner's f without κ, as a value to maximise: z_t − max_{j≠t} z_j towards a
    target, max_{j≠y} z_j − z_y away from the true class. Unclamped, so a stochastic model keeps
    being pushed past the boundary instead of stopping on it."""
    if targets is not None:
        zt = logits.gather(1, targets[:, None]).squeeze(1)
        return zt - _others(logits, targets).amax(1)
    zy = logits.gather(1, y[:, None]).squeeze(1)
    return _others(logits, y).amax(1) - zy


def dlr_loss(logits: Tensor, y: Tensor, targets: Tensor | None = None) -> Tensor:
    """Croce & Hein's difference-of-logits ratio (maximised): shift- and scale-invariant, so a
    defense cannot hide behind saturated softmax or rescaled logits.

    Untargeted: −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3). Targeted: their denominator
    z_π1 − (z_π3 + z_π4)/2 under CW's targeted margin z_t − max_{j≠t} z_j, where theirs has
    z_t − z_y: their targeted runs only need *a* misclassification, ours count success as
    "classified as t", which the margin measures and z_t − z_y does not.
    """
    ranked = logits.sort(1, descending=True).values
    if targets is not None:
        scale = ranked[:, 0] - 0.5 * (ranked[:, 2] + ranked[:, 3])
        return margin_loss(logits, y, targets) / (scale + 1e-12)
    return margin_loss(logits, y) / (ranked[:, 0] - ranked[:, 2] + 1e-12)


@dataclass
class GradientAttack(TensorAttack):
    """L∞ gradient attack on inputs in the classifier's clip range; ``strength`` is ε.

    ``loss`` (per example) is maximised; the loop is ``iterations()`` steps of
    ``x ← project(x + step_size(ε) · opt.update(direction(∇loss)))`` from ``project(start)``,
    with ``opt = optimizer(x0)`` made once per batch. Override the pieces, not the loop.
    """

    # -- overridable pieces (``loss`` is Attack's cross-entropy unless overridden) -------------

    def iterations(self) -> int:
        return 1

    def step_size(self, eps: float) -> float:
        return eps

    def start(self, x0: Tensor, eps: float) -> Tensor:
        return x0.clone()

    def direction(self, grad: Tensor) -> Tensor:
        return grad.sign()

    def optimizer(self, x0: Tensor) -> Optimizer:
        """A fresh optimizer for the batch ``x0``; the default steps along the direction."""
        return Identity()

    def project(self, x: Tensor, x0: Tensor, eps: float, bounds: tuple[float, float]) -> Tensor:
        return torch.clamp(torch.minimum(torch.maximum(x, x0 - eps), x0 + eps), *bounds)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, classifier: Classifier, x0: Tensor, y: Tensor, targets: Tensor | None,
            eps: float) -> Tensor:
        """Adversarial versions of one batch, as tensors on the classifier's device."""
        bounds = bounds_of(classifier)
        objective = partial(self.loss, y=y, targets=targets)
        x = self.project(self.start(x0, eps), x0, eps, bounds)
        alpha, opt = self.step_size(eps), self.optimizer(x0)
        for _ in range(self.iterations()):
            _, grad = classifier.value_and_grad(x, objective)
            x = self.project(x + alpha * opt.update(self.direction(grad)), x0, eps, bounds)
        return x


def bounds_of(classifier: Classifier) -> tuple[float, float]:
    """The classifier's input range (hrsbench's are [0, 1])."""
    lo, hi = classifier.clip_values if classifier.clip_values is not None else (0.0, 1.0)
    return float(lo), float(hi)


def uniform_start(x0: Tensor, eps: float) -> Tensor:
    """A uniform draw from the ε-ball around ``x0`` (Madry et al.'s random start); the caller
    projects it into the box."""
    return x0 + torch.empty_like(x0).uniform_(-eps, eps)


class Adam:
    """An :class:`Optimizer`: Adam's update direction for one tensor of variables, ascent or
    descent left to the caller (Kingma & Ba; Keras's constants, as the paper's code):
    Carlini–Wagner optimise with it, and the authors' PGD variants feed it gradient signs."""

    def __init__(self, like: Tensor, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-7) -> None:
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.m, self.v, self.k = torch.zeros_like(like), torch.zeros_like(like), 0

    def update(self, grad: Tensor) -> Tensor:
        """The bias-corrected step for ``grad``, about ±1 per coordinate at first (times lr)."""
        self.k += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        rate = (1 - self.beta2**self.k) ** 0.5 / (1 - self.beta1**self.k)
        return rate * self.m / (self.v.sqrt() + self.epsilon)
