"""Defense plugins' base class.

A defense is a dataclass whose fields are its parameters. The engine builds it on a dataset's
base architecture, trains it (or loads it from the cache) once per parameter set, and asks it for
the models each attack setting needs: the deployed model, its fixed-randomness surrogate and,
where one exists, its exact expectation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from hrsbench.plugin.dataset import Dataset
from hrsbench.plugin.params import as_dict
from hrsbench.plugin.training import Trainer


@dataclass
class Defense(ABC):
    """Subclass as a dataclass whose fields are the defense's parameters (validated against
    their type hints before a run starts) and register it with the ``register_defenses`` hook."""

    name: ClassVar[str]
    #: The parameter that sets the defense's strength, swept for DES (e.g. a dropout rate).
    strength: ClassVar[str | None] = None
    #: Whether the deployed model draws fresh randomness on every forward pass.
    stochastic: ClassVar[bool] = False

    @abstractmethod
    def build(self, dataset: Dataset) -> nn.Module:
        """An untrained model for ``dataset``; stochastic layers must ignore ``module.training``
        (ART puts models in eval mode before every query)."""

    def fit(self, model: nn.Module, trainer: Trainer, dataset: Dataset) -> None:
        """Train ``model`` (built by :meth:`build` for ``dataset``) in place on ``trainer``'s
        training split; the default is the paper's schedule on all weights, checkpointed under
        the defense's name and parameters."""
        trainer.fit(model, checkpoint=trainer.key_for("fit", self.name, as_dict(self)),
                    label=self.name)

    def identity(self) -> dict[str, Any]:
        """Values derived from the parameters that decide the trained model without being
        written in the config (a checkpoint file's hash): added to the model's parameters, and
        so to its cache key and every cell key of it. Each must be a field, so that the engine
        can instantiate the defense from a result line's parameters."""
        return {}

    def surrogate(self, model: nn.Module) -> nn.Module:
        """The model with its randomness removed or frozen, for the ``fixed`` attack setting."""
        return model

    def expectation(self, model: nn.Module) -> nn.Module | None:
        """A deterministic model giving the expected output (mean softmax), if computable."""
        return None
