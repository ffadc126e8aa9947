"""Defended models through ART: randomness survives eval mode, EOT averages fresh gradients."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hrsbench import Classifier


class AlwaysOnNoise(nn.Module):
    def forward(self, x):
        return x + torch.randn_like(x)


def noisy_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), AlwaysOnNoise(), nn.Linear(4, 3))


def test_stochastic_model_stays_stochastic_through_art():
    clf = Classifier(noisy_model(), (1, 2, 2), nb_classes=3)
    x = np.random.rand(8, 1, 2, 2).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.zeros(8, dtype=int)]  # ART's attacks pass one-hot labels
    assert not np.allclose(clf.predict(x), clf.predict(x))
    assert not np.allclose(clf.loss_gradient(x, y), clf.loss_gradient(x, y))


class Overridden(nn.Sequential):
    """A Sequential whose forward is not the chain of its children (as HRS's switch is not)."""

    def forward(self, x):
        return super().forward(x) * 0 + 1.0


def test_art_does_not_bypass_an_overridden_forward():
    model = Overridden(nn.Flatten(), nn.Linear(4, 3))
    clf = Classifier(model, (1, 2, 2), nb_classes=3)
    np.testing.assert_allclose(clf.predict(np.random.rand(2, 1, 2, 2).astype(np.float32)), 1.0)


def test_eot_is_the_mean_of_fresh_gradients():
    x = np.random.rand(4, 1, 2, 2).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.zeros(4, dtype=int)]
    torch.manual_seed(1)
    single = Classifier(noisy_model(), (1, 2, 2), nb_classes=3)
    draws = [single.loss_gradient(x, y) for _ in range(5)]
    torch.manual_seed(1)
    eot = Classifier(noisy_model(), (1, 2, 2), nb_classes=3, eot_samples=5)
    np.testing.assert_allclose(eot.loss_gradient(x, y), np.mean(draws, axis=0), rtol=1e-5,
                               atol=1e-7)
