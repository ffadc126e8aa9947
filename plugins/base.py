"""The undefended base model: the reference every DES is measured against."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hrsbench import Dataset, Defense, Trainer, base_model, hookimpl


@dataclass
class Base(Defense):
    name = "base"

    def build(self, dataset: Dataset) -> nn.Module:
        return base_model(dataset.arch)

    def fit(self, model: nn.Module, trainer: Trainer, dataset: Dataset) -> None:
        """The plain schedule, shared with SAP (whose weights are the base's)."""
        trainer.fit_standard(model, label=self.name)


@hookimpl
def register_defenses(register):
    register(Base)
