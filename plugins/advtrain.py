"""PGD adversarial training (Madry et al. 2017): the deterministic reference defense.

Every training batch is replaced by L∞ PGD examples crafted against the current weights, through
``Trainer.fit``'s ``loss_fn``: the model gets the engine's schedule, seeding, per-epoch
checkpoints, resume and progress like every other defense. ART's ``AdversarialTrainerMadryPGD``
is not used: it runs its own optimizer loop (no resume, no progress, not the engine's schedule),
round-trips every batch through NumPy, and its defaults (eps 8, step 2) assume 0-255 inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hrsbench import Dataset, Defense, HrsbenchError, Trainer, base_model, hookimpl
from hrsbench.plugin.params import as_dict

#: Training ε by dataset when not given. MNIST: Madry et al.'s 0.3. CIFAR-10: 2/255, inside
#: the paper's sweep (C.5) — Madry's 8/255 costs this small network too much clean accuracy.
DEFAULT_EPS: dict[str, float] = {"mnist": 0.3, "cifar10": 2 / 255}


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step: float,
    steps: int,
    random_start: bool = True,
) -> torch.Tensor:
    """Untargeted L∞ PGD on cross-entropy: sign steps, projection on the ε-ball and [0, 1].

    Crafted in eval mode (the deployed function, without training dropout), then the model's
    mode is restored. Only the input's gradient is taken: parameter gradients stay untouched.
    """
    was_training = model.training
    model.eval()
    try:
        x = x.detach()
        x_adv = x + torch.empty_like(x).uniform_(-eps, eps) if random_start else x.clone()
        x_adv = x_adv.clamp(0.0, 1.0)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = nn.functional.cross_entropy(model(x_adv), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() + step * grad.sign()
            x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
        return x_adv.detach()
    finally:
        model.train(was_training)


@dataclass
class AdversarialTraining(Defense):
    """Madry et al.'s min-max training on 100% PGD examples; ``eps`` is the strength.

    ``step_size`` defaults to 2.5·ε/``steps`` (Madry et al.'s rule: the walk can cross the ball
    and come back). ``steps`` = 7 is Madry et al.'s CIFAR-10 setting; every step costs one extra
    forward-backward pass, so training takes about ``steps`` + 1 times the base's time.
    """

    name = "advtrain"
    strength = "eps"
    stochastic = False

    eps: float | None = None
    steps: int = 7
    step_size: float | None = None
    random_start: bool = True

    def __post_init__(self) -> None:
        if self.eps is not None and not 0 <= self.eps <= 1:
            raise ValueError(f"eps is in [0, 1] pixel units, got {self.eps}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")

    def resolved_eps(self, dataset: str) -> float:
        if self.eps is not None:
            return self.eps
        if dataset not in DEFAULT_EPS:
            raise HrsbenchError(f"advtrain: no default eps for dataset {dataset!r}; set eps")
        return DEFAULT_EPS[dataset]

    def build(self, dataset: Dataset) -> nn.Module:
        return base_model(dataset.arch)

    def loss_fn(self, eps: float):
        """Cross-entropy on PGD examples of the batch, for ``Trainer.fit``."""
        step = self.step_size if self.step_size is not None else 2.5 * eps / self.steps

        def adversarial_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            x_adv = pgd(model, x, y, eps, step, self.steps, self.random_start)
            return nn.functional.cross_entropy(model(x_adv), y)

        return adversarial_loss

    def fit(self, model: nn.Module, trainer: Trainer, dataset: Dataset) -> None:
        eps = self.resolved_eps(dataset.name)
        trainer.fit(
            model,
            checkpoint=trainer.key_for("fit", self.name, as_dict(self), eps),
            label=self.name,
            loss_fn=self.loss_fn(eps),
        )


@hookimpl
def register_defenses(register):
    register(AdversarialTraining)
