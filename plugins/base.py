"""The undefended base model: the reference every DES is measured against."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hrsbench import Dataset, Defense, base_model, hookimpl


@dataclass
class Base(Defense):
    name = "base"

    def build(self, dataset: Dataset) -> nn.Module:
        return base_model(dataset.arch)


@hookimpl
def register_defenses(register):
    register(Base)
