"""Your own trained model, attacked from a config with no plugin of your own:

    [[defenses]]
    name = "module"
    params = { factory = "mypackage.nets:small_cnn", checkpoint = "weights.pt" }

``factory`` names a function (``module.path:function``, importable where hrsbench runs) that
returns the untrained ``nn.Module`` (inputs in [0, 1], NCHW, logits out); ``checkpoint`` is its
``state_dict``, loaded with ``weights_only=True``. Nothing is trained. ``stochastic = true``
declares a model that draws fresh randomness on every forward pass, so it is predicted
``repeats`` times and attacked under EOT too. The checkpoint's hash is part of the model's
identity: a changed file is a different model, never a cached one. A bad factory, a missing
file or weights that do not fit the module are one line each, before any attack.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hrsbench import Dataset, Defense, Trainer, hookimpl


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class Module(Defense):
    """A trained ``nn.Module`` from a factory function and a checkpoint."""

    name = "module"

    #: "package.module:function" returning the model, untrained.
    factory: str = ""
    #: Path of the model's state_dict (torch.save), loaded with weights_only=True.
    checkpoint: str = ""
    #: Whether the model draws fresh randomness on every forward pass.
    stochastic: bool = False  # type: ignore[misc]  # a parameter here, a declaration elsewhere
    #: The checkpoint's hash, filled in from the file (given, it must match the file).
    checkpoint_sha256: str = ""

    def __post_init__(self) -> None:
        if not self.factory or ":" not in self.factory:
            raise ValueError(f"factory = {self.factory!r}: name the function returning the "
                             "model as 'package.module:function'")
        path = Path(self.checkpoint).expanduser()
        if not self.checkpoint or not path.is_file():
            raise ValueError(f"checkpoint = {self.checkpoint!r}: no such file (a state_dict "
                             "saved with torch.save)")
        sha = _sha256(path)
        if self.checkpoint_sha256 and self.checkpoint_sha256 != sha:
            raise ValueError(f"checkpoint {path} changed since its cells were made (sha256 "
                             f"{sha}, recorded {self.checkpoint_sha256}); run into a new --out")
        self.checkpoint_sha256 = sha
        self._loaded()  # a model the weights do not fit fails here, before any attack

    def identity(self) -> dict[str, Any]:
        return {"checkpoint_sha256": self.checkpoint_sha256}

    def _loaded(self) -> nn.Module:
        where, _, attr = self.factory.partition(":")
        try:
            fn = getattr(importlib.import_module(where), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"factory = {self.factory!r}: {type(e).__name__}: {e}") from None
        model = fn()
        if not isinstance(model, nn.Module):
            raise ValueError(f"factory = {self.factory!r} returned {type(model).__name__}, "
                             "not an nn.Module")
        try:
            state = torch.load(Path(self.checkpoint).expanduser(), map_location="cpu",
                               weights_only=True)
        except Exception as e:  # a file torch cannot read, or one holding pickled objects
            raise ValueError(f"checkpoint {self.checkpoint}: not a state_dict torch can load "
                             f"with weights_only=True ({type(e).__name__})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            first = (str(e).splitlines() or [""])[0]
            raise ValueError(f"checkpoint {self.checkpoint} does not fit the model from "
                             f"{self.factory}: {first}") from None
        return model.eval()

    def build(self, dataset: Dataset) -> nn.Module:
        return self._loaded()

    def fit(self, model: nn.Module, trainer: Trainer, dataset: Dataset) -> None:
        """Nothing to train: the checkpoint holds the weights."""


@hookimpl
def register_defenses(register):
    register(Module)
