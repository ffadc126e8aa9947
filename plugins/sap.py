"""Stochastic activation pruning (SAP, Dhillon et al. 2018) between the two dense layers.

The paper (section 6.1) applies SAP to the base model between the first and second fully
connected layers. Dhillon et al. apply SAP post hoc to a normally trained network, so the weights
here are trained exactly as the base model's (SAP absent) and pruning only acts at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hrsbench import Dataset, Defense, Trainer, base_stages, hookimpl, insert_stages
from hrsbench.plugin.models import without

#: Below this, a probability counts as zero (keeps 1/p and log1p(-p) finite).
_TINY = 1e-12


class StochasticActivationPruning(nn.Module):
    """Keep a random subset of activations, drawn in proportion to their magnitude, rescaled.

    Per sample, ``k`` indices are drawn with replacement with probabilities p_i = |h_i| / Σ|h|.
    Unit i survives with probability q_i = 1 - (1 - p_i)^k and a survivor is divided by q_i,
    so E[output_i] = h_i: the pruned layer is an unbiased estimate of the unpruned one, which is
    what lets SAP keep the base model's accuracy. Randomness ignores ``self.training`` because
    ART puts models in eval mode before every query.
    """

    def __init__(self, draws: float) -> None:
        super().__init__()
        if draws <= 0:
            raise ValueError(f"draws must be positive, got {draws}")
        self.draws = float(draws)

    def n_draws(self, units: int) -> int:
        """``draws`` is a fraction of the layer's width, as in Dhillon et al."""
        return max(1, round(self.draws * units))

    def keep_probability(self, h: torch.Tensor) -> torch.Tensor:
        """q_i = 1 - (1 - p_i)^k for a batch of flattened activations (computed stably)."""
        mag = h.abs()
        p = mag / mag.sum(dim=1, keepdim=True).clamp_min(_TINY)
        k = self.n_draws(h.shape[1])
        # p == 1 (a single active unit) would make log1p(-p) = -inf and its gradient NaN.
        return -torch.expm1(k * torch.log1p(-p.clamp(max=1 - 1e-6)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        mag = h.abs()
        nonzero = mag > 0
        # An all-zero row has nothing to prune; sample it uniformly only to keep multinomial
        # well defined (its draws are discarded by ``nonzero`` below).
        weights = torch.where(nonzero.any(dim=1, keepdim=True), mag, torch.ones_like(mag))
        idx = torch.multinomial(weights.detach(), self.n_draws(h.shape[1]), replacement=True)
        kept = torch.zeros_like(nonzero).scatter_(1, idx, True) & nonzero
        q = self.keep_probability(h)
        # where() on both branches: a 1/0 in the unselected branch would still poison gradients.
        scale = torch.where(kept, 1.0 / torch.where(kept, q, torch.ones_like(q)), 0.0)
        return (h * scale).view_as(x)

    def extra_repr(self) -> str:
        return f"draws={self.draws}"


@dataclass
class SAP(Defense):
    """SAP after ``relu_fc1``; ``draws`` = number of draws as a fraction of that layer's width.

    The default 1.0 (k = 200 draws on MNIST's 200 units, 256 on CIFAR-10) is Dhillon et al.'s
    "SAP-100", their main setting: it keeps accuracy at the base's while pruning the many small
    activations. Fewer draws prune more (stronger randomness, lower accuracy); more draws approach
    the unpruned model. ``draws`` is the strength swept for DES, decreasing = stronger.
    """

    name = "sap"
    strength = "draws"
    stochastic = True

    draws: float = 1.0

    def __post_init__(self) -> None:
        if self.draws <= 0:
            raise ValueError(f"draws must be positive, got {self.draws}")

    def build(self, dataset: Dataset) -> nn.Module:
        def after_relu_fc1(name: str, _: nn.Module) -> tuple[str, nn.Module] | None:
            return ("sap", StochasticActivationPruning(self.draws)) if name == "relu_fc1" else None

        return nn.Sequential(insert_stages(base_stages(dataset.arch), after_relu_fc1))

    def fit(self, model: nn.Module, trainer: Trainer, dataset: Dataset) -> None:
        """Standard training with SAP absent (post hoc, as Dhillon et al.), cached once for
        every ``draws``; the model's parameters and initialisation order are the base's."""
        trainer.fit_standard(self.surrogate(model), label=self.name)
        model.eval()

    def surrogate(self, model: nn.Module) -> nn.Module:
        """Same weights, no pruning: since pruning is unbiased, this is also the model whose
        penultimate activations are SAP's expectation."""
        return without(model, StochasticActivationPruning)


@hookimpl
def register_defenses(register):
    register(SAP)
