"""Defended models as ART classifiers, and the attack settings that pick what an attack sees.

EOT lives here, at the gradient level, so every gradient-based ART attack gets it without
knowing: ``loss_gradient`` and ``class_gradient`` return the mean of ``eot_samples`` gradients,
each from a fresh forward pass through the stochastic model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from art.estimators.classification import PyTorchClassifier
from torch import nn

from hrsbench.errors import HrsbenchError

SETTINGS = ("whitebox", "eot", "fixed", "expectation")


class Opaque(nn.Module):
    """Hides an ``nn.Sequential`` from ART, which otherwise calls its children one by one and
    so bypasses any ``forward`` a defense overrides."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Classifier(PyTorchClassifier):
    """A ``PyTorchClassifier`` over inputs in [0, 1] whose gradients may be EOT averages."""

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        nb_classes: int = 10,
        eot_samples: int = 1,
        device: str = "cpu",
        loss: nn.Module | None = None,
    ) -> None:
        super().__init__(
            model=Opaque(model),
            loss=loss or nn.CrossEntropyLoss(),
            input_shape=input_shape,
            nb_classes=nb_classes,
            clip_values=(0.0, 1.0),
            device_type="gpu" if str(device).startswith("cuda") else "cpu",
        )
        self.eot_samples = int(eot_samples)

    def _mean(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        total = fn(*args, **kwargs)
        for _ in range(self.eot_samples - 1):
            total = total + fn(*args, **kwargs)
        return total / self.eot_samples if self.eot_samples > 1 else total

    def loss_gradient(self, x: Any, y: Any, **kwargs: Any) -> Any:
        return self._mean(super().loss_gradient, x, y, **kwargs)

    def class_gradient(self, x: Any, label: Any = None, **kwargs: Any) -> Any:
        return self._mean(super().class_gradient, x, label, **kwargs)


def input_shape(model_input: np.ndarray | torch.Tensor) -> tuple[int, ...]:
    return tuple(model_input.shape[1:])


def crafting_model(setting: str, defense: Any, model: nn.Module) -> nn.Module:
    """The model an attack differentiates in ``setting`` (EOT uses the deployed model)."""
    if setting in ("whitebox", "eot"):
        return model
    if setting == "fixed":
        return defense.surrogate(model)
    if setting == "expectation":
        exp = defense.expectation(model)
        if exp is None:
            raise HrsbenchError(
                f"defense {defense.name!r} has no exact expectation model; "
                "drop the 'expectation' setting for it"
            )
        return exp
    raise HrsbenchError(f"unknown attack setting {setting!r}; choose from {', '.join(SETTINGS)}")
