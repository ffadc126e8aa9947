"""Defensive dropout (Wang et al. 2018): dropout between the two dense layers, kept at inference.

It replaces the base model's training-only dropout stage, so the model has exactly one dropout
layer, at the place the paper puts it (section 6.1: between the first and second fully connected
layers), with one rate for training and one for deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hrsbench import Dataset, Defense, Trainer, base_stages, hookimpl, replace_stage
from hrsbench.plugin.models import without


class AlwaysOnDropout(nn.Module):
    """Inverted dropout that never switches off.

    ``module.training`` selects *which* rate applies, never *whether* dropout applies: the
    Trainer puts the model in train mode for every epoch (``train_rate``) and ART puts it in eval
    mode before every predict or gradient query, i.e. every deployed use (``test_rate``). Survivors
    are scaled by 1/(1 - rate), so the expected activation equals the input and the dropout-free
    surrogate needs no rescaling.
    """

    def __init__(self, train_rate: float, test_rate: float) -> None:
        super().__init__()
        for rate in (train_rate, test_rate):
            _check_rate(rate)
        self.train_rate = float(train_rate)
        self.test_rate = float(test_rate)

    @property
    def rate(self) -> float:
        return self.train_rate if self.training else self.test_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(x, self.rate, training=True)

    def extra_repr(self) -> str:
        return f"train_rate={self.train_rate}, test_rate={self.test_rate}"


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"a dropout rate must be in [0, 1), got {rate}")


@dataclass
class DefensiveDropout(Defense):
    """``test_rate`` is the deployed dropout rate and the strength swept for DES.

    ``train_rate`` defaults to ``test_rate``: the network learns under the noise level it will be
    deployed with, and C.5's sweep moves the training and testing rates together (0.1 to 0.9).
    The default 0.3 is the middle of the paper's three settings (0.1, 0.3, 0.7) and MNIST's own
    training dropout; 0.7 is the paper's CIFAR-10-only setting (it ruins MNIST accuracy).
    """

    name = "dropout"
    strength = "test_rate"
    stochastic = True

    test_rate: float = 0.3
    train_rate: float | None = None

    def __post_init__(self) -> None:
        _check_rate(self.test_rate)
        if self.train_rate is not None:
            _check_rate(self.train_rate)

    @property
    def effective_train_rate(self) -> float:
        return self.test_rate if self.train_rate is None else self.train_rate

    def build(self, dataset: Dataset) -> nn.Module:
        layer = AlwaysOnDropout(self.effective_train_rate, self.test_rate)
        return nn.Sequential(replace_stage(base_stages(dataset.arch), "dropout", layer))

    def fit(self, model: nn.Module, trainer: Trainer, dataset: Dataset) -> None:
        """At the base model's own training rate (0.3 on MNIST, 0.7 on CIFAR-10) training is the
        base's bit for bit (same parameters, initialisation order and seeded dropout masks), so
        it shares the base's one standard training instead of repeating it."""
        if self.effective_train_rate == dataset.arch.train_dropout:
            trainer.fit_standard(model, label=self.name)
        else:
            super().fit(model, trainer, dataset)

    def surrogate(self, model: nn.Module) -> nn.Module:
        """No dropout at all; inverted dropout means the scale is already right."""
        return without(model, AlwaysOnDropout)


@hookimpl
def register_defenses(register):
    register(DefensiveDropout)
