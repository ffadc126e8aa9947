"""Attack plugins' base class and the attack settings that apply to every attack.

An attack is a dataclass whose fields are its parameters and whose ``generate`` crafts
adversarial examples against an ART classifier. The *setting* decides which classifier it gets
(white-box, EOT, fixed randomness, exact expectation), so attacks never special-case defenses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from art.estimators.classification import PyTorchClassifier


@dataclass
class Attack:
    name: ClassVar[str]
    #: What the run config's ``strengths`` list sets: "eps" for norm-bounded attacks.
    strength: ClassVar[str] = "eps"

    def generate(
        self,
        classifier: PyTorchClassifier,
        x: np.ndarray,
        y: np.ndarray,
        strength: float,
        targets: np.ndarray | None = None,
    ) -> np.ndarray:
        """Adversarial versions of ``x`` (true labels ``y``), towards ``targets`` if given."""
        raise NotImplementedError
