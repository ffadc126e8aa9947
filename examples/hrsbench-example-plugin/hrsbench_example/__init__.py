"""A complete third-party defense: uniform noise added to every input, at training and test time.

It is here to show the plugin API in one screen, not as a recommended defense.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

import hrsbench


class InputNoise(nn.Module):
    """Adds U(-width, width) noise; draws on every call, whatever ``module.training`` says,
    because ART puts models in eval mode before each query."""

    def __init__(self, width: float) -> None:
        super().__init__()
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (torch.rand_like(x) * 2 - 1) * self.width


@dataclass
class NoisyInput(hrsbench.Defense):
    name = "noisy-input"
    strength = "width"  # the parameter a DES sweep varies (set its values under grid)
    stochastic = True

    width: float = 0.1

    def build(self, dataset: hrsbench.Dataset) -> nn.Module:
        stages = hrsbench.base_stages(dataset.arch)
        return nn.Sequential(OrderedDict([("noise", InputNoise(self.width)), *stages.items()]))

    def surrogate(self, model: nn.Module) -> nn.Module:
        # The same weights without the noise stage: the "fixed randomness" attack target.
        return nn.Sequential(OrderedDict((k, m) for k, m in model.named_children() if k != "noise"))


@hrsbench.hookimpl
def register_defenses(register):
    register(NoisyInput)
