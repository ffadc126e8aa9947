"""Standard L∞ attacks from ART. Budgets are in [0, 1] pixel units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

from hrsbench import Attack, hookimpl


@dataclass
class FGSM(Attack):
    name = "fgsm"
    batch_size: int = 256

    def generate(self, classifier, x, y, strength, targets=None):
        attack = FastGradientMethod(
            classifier, norm=np.inf, eps=strength, targeted=targets is not None,
            batch_size=self.batch_size,
        )
        # ART takes the model's own (random) predictions when y is None: always pass labels.
        return attack.generate(x, y=targets if targets is not None else y)


@dataclass
class PGD(Attack):
    """L∞ PGD with sign steps; ``step`` defaults to Madry et al.'s 2.5·ε/iterations."""

    name = "pgd"
    max_iter: int = 100
    step: float | None = None
    random_init: bool = False
    batch_size: int = 256

    def generate(self, classifier, x, y, strength, targets=None):
        step = self.step if self.step is not None else 2.5 * strength / self.max_iter
        attack = ProjectedGradientDescent(
            classifier, norm=np.inf, eps=strength, eps_step=step, max_iter=self.max_iter,
            targeted=targets is not None, num_random_init=int(self.random_init),
            batch_size=self.batch_size, verbose=False,
        )
        return attack.generate(x, y=targets if targets is not None else y)


@hookimpl
def register_attacks(register):
    register(FGSM)
    register(PGD)
