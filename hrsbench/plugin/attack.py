"""Attack plugins' base class and the attack settings that apply to every attack.

An attack is a dataclass whose fields are its parameters and whose ``generate`` crafts
adversarial examples against an ART classifier. The *setting* decides which classifier it gets
(white-box, EOT, fixed randomness, exact expectation), so attacks never special-case defenses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from art.estimators.classification import PyTorchClassifier


@dataclass
class Attack(ABC):
    """Subclass as a dataclass whose fields are the attack's parameters (validated against their
    type hints before a run starts) and register it with the ``register_attacks`` hook."""

    name: ClassVar[str]
    #: What the run config's ``strengths`` list sets: "eps" for norm-bounded attacks.
    strength: ClassVar[str] = "eps"
    #: Whether the attack iterates (sanity checks compare iterative attacks with single-step).
    iterative: ClassVar[bool] = False
    #: Examples crafted per batch. An execution option, not a parameter: the engine sets it on
    #: the instance from the run's ``batch_size``. It sets speed and memory, not what the attack
    #: computes (only which random draws fall on which example), so it is no dataclass field
    #: and enters no key.
    batch_size: ClassVar[int] = 256

    def loss(
        self, logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-example objective the attack maximises; the gradient-deviation metric samples
        its input gradient. Default: cross-entropy away from ``y``, or towards ``targets``."""
        if targets is not None:
            return -torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        return torch.nn.functional.cross_entropy(logits, y, reduction="none")

    @abstractmethod
    def generate(
        self,
        classifier: PyTorchClassifier,
        x: np.ndarray,
        y: np.ndarray,
        strength: float,
        targets: np.ndarray | None = None,
    ) -> np.ndarray:
        """Adversarial versions of ``x`` (true labels ``y``), towards ``targets`` if given,
        crafted ``self.batch_size`` examples at a time."""


@dataclass
class TensorAttack(Attack):
    """An attack written on tensors: :meth:`run` crafts one batch on the classifier's device,
    and :meth:`generate` feeds it ``batch_size`` examples at a time, numpy in and out, so the
    attack's loop pays no numpy round trip per step."""

    @abstractmethod
    def run(self, classifier: PyTorchClassifier, x0: torch.Tensor, y: torch.Tensor,
            targets: torch.Tensor | None, eps: float) -> torch.Tensor:
        """Adversarial versions of one batch, as tensors on the classifier's device."""

    def generate(
        self,
        classifier: PyTorchClassifier,
        x: np.ndarray,
        y: np.ndarray,
        strength: float,
        targets: np.ndarray | None = None,
    ) -> np.ndarray:
        """Batches of ``self.batch_size`` through :meth:`run`; numpy in and out."""
        device = classifier.device
        out = []
        for i in range(0, len(x), self.batch_size):
            sl = slice(i, i + self.batch_size)
            xb = torch.from_numpy(np.ascontiguousarray(x[sl], dtype=np.float32)).to(device)
            yb = torch.from_numpy(np.asarray(y[sl], dtype=np.int64)).to(device)
            tb = None if targets is None else torch.from_numpy(
                np.asarray(targets[sl], dtype=np.int64)).to(device)
            out.append(self.run(classifier, xb, yb, tb, float(strength)).cpu().numpy())
        return np.concatenate(out).astype(np.float32)
