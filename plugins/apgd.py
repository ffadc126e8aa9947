"""Auto-PGD (Croce & Hein 2020) with EOT: AutoAttack's version for randomized defenses is
APGD-CE and APGD-DLR, one restart, 20 EOT samples per gradient.

In-house rather than ART's ``AutoProjectedGradientDescent`` because (1) with ``loss_type`` set,
ART rebuilds a plain ``PyTorchClassifier`` from ``estimator.model`` and so drops the EOT
averaging; (2) ART returns the clean input for every example whose final *single* stochastic
prediction was not adversarial, under-stating success on exactly the defenses this attack is
for; (3) ART evaluates the loss that drives step-size halving on one draw. Here the loss values
and gradients are both EOT means from :meth:`hrsbench.Classifier.value_and_grad`, and the
attack returns, per example, the iterate with the best EOT-mean loss.

EOT count: ``eot_samples`` (default 20, AutoAttack's) is this attack's own and replaces the
setting's count whenever the crafting model is stochastic, so APGD is meant to be run in the
``whitebox`` setting (``eot`` gives the same attack); in ``fixed`` and ``expectation`` the model
is deterministic and one sample is taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from hrsbench import Classifier, hookimpl
from hrsbench.plugin.gradient import GradientAttack, Tensor, bounds_of, dlr_loss

#: AutoAttack's schedule: first checkpoint at 22% of the iterations, later ones closer by 3%
#: of the iterations each time, but never less than 6% apart.
FIRST_CHECK, CHECK_DECREASE, MIN_CHECK = 0.22, 0.03, 0.06
#: A checkpoint halves the step unless the loss rose on at least this share of the steps since
#: the previous one; the momentum weight on the new projected step. The stall condition also acts
#: at the first checkpoint, as in Croce & Hein's Algorithm 1 (AutoAttack's code skips it there:
#: docs/attacks.md, "The first checkpoint").
RHO, MOMENTUM = 0.75, 0.75


@dataclass
class APGD(GradientAttack):
    """L∞ APGD: step 2ε halved at checkpoints when progress stalls, momentum 0.75, restart from
    the best point after each halving; ``restarts`` independent random starts."""

    iterative = True
    max_iter: int = 100
    restarts: int = 1
    eot_samples: int = 20

    def __post_init__(self) -> None:
        for field, low in (("max_iter", 1), ("restarts", 1), ("eot_samples", 1)):
            if getattr(self, field) < low:
                raise ValueError(f"{field} must be at least {low}, got {getattr(self, field)}")

    def run(self, classifier: Classifier, x0: Tensor, y: Tensor, targets: Tensor | None,
            eps: float) -> Tensor:
        best_x, best_f = self._attempt(classifier, x0, y, targets, eps)
        for _ in range(self.restarts - 1):
            x, f = self._attempt(classifier, x0, y, targets, eps)
            better = f > best_f
            best_x[better], best_f[better] = x[better], f[better]
        return best_x

    def start(self, x0: Tensor, eps: float) -> Tensor:
        """AutoAttack's start: a random direction scaled so its largest entry is ε."""
        t = 2 * torch.rand_like(x0) - 1
        scale = t.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *([1] * (x0.dim() - 1)))
        return x0 + eps * t / scale

    def _attempt(self, classifier: Classifier, x0: Tensor, y: Tensor, targets: Tensor | None,
                 eps: float) -> tuple[Tensor, Tensor]:
        """One APGD run; returns the best iterate per example and its EOT-mean loss."""
        bounds = bounds_of(classifier)
        grad_of = partial(classifier.value_and_grad,
                          objective=partial(self.loss, y=y, targets=targets),
                          samples=self.eot_samples)
        n_iter = self.max_iter
        period = max(int(FIRST_CHECK * n_iter), 1)
        decrease, shortest = max(int(CHECK_DECREASE * n_iter), 1), max(int(MIN_CHECK * n_iter), 1)

        x = self.project(self.start(x0, eps), x0, eps, bounds)
        f, g = grad_of(x)
        x_best, f_best, g_best = x.clone(), f.clone(), g.clone()
        eta = torch.full((len(x0),) + (1,) * (x0.dim() - 1), 2.0 * eps, device=x0.device)
        history = [f]  # EOT-mean loss at the start and after every step
        f_best_at_check = f_best.clone()
        halved_at_check = torch.zeros_like(f, dtype=torch.bool)
        x_prev, since_check = x.clone(), 0
        for i in range(n_iter):
            a = MOMENTUM if i > 0 else 1.0
            z = self.project(x + eta * self.direction(g), x0, eps, bounds)
            x, x_prev = self.project(x + a * (z - x) + (1 - a) * (x - x_prev), x0, eps,
                                     bounds), x
            f, g = grad_of(x)
            history.append(f)
            better = f > f_best
            x_best[better], g_best[better], f_best[better] = x[better], g[better], f[better]
            since_check += 1
            if since_check == period:
                recent = torch.stack(history[-period - 1:])
                rises = (recent[1:] > recent[:-1]).sum(0)
                stalled = ~halved_at_check & (f_best_at_check >= f_best)
                halve = (rises <= period * RHO) | stalled
                eta[halve] /= 2
                x[halve], g[halve] = x_best[halve], g_best[halve]
                halved_at_check, f_best_at_check = halve, f_best.clone()
                period, since_check = max(period - decrease, shortest), 0
        return x_best, f_best


@dataclass
class APGDCE(APGD):
    """APGD on cross-entropy (towards the target when targeted)."""

    name = "apgd-ce"


@dataclass
class APGDDLR(APGD):
    """APGD on the difference-of-logits ratio (targeted form needs at least 4 classes)."""

    name = "apgd-dlr"

    def loss(self, logits: Tensor, y: Tensor, targets: Tensor | None = None) -> Tensor:
        return dlr_loss(logits, y, targets)


@hookimpl
def register_attacks(register):
    register(APGDCE)
    register(APGDDLR)
