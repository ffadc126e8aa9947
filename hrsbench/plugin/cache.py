"""Atomic checkpoint files and the model cache keyed by what determines a model."""

from __future__ import annotations

import errno
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from hrsbench.errors import HrsbenchError
from hrsbench.locks import model_lock
from hrsbench.paths import default_cache_dir, user_dir
from hrsbench.results.storage import atomic_write, stable_hash

__all__ = ["ModelCache", "atomic_save", "atomic_write", "default_cache_dir", "safe_load",
           "stable_hash", "user_dir"]


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` atomically; a failed write (torch reports a full disk as a RuntimeError)
    is an OSError naming the file, which the CLI prints as one line."""
    try:
        atomic_write(path, lambda tmp: torch.save(obj, tmp))
    except RuntimeError as e:
        raise OSError(errno.EIO, f"cannot write the checkpoint ({str(e).splitlines()[0]}); "
                      "is the disk full?", str(path)) from e


def safe_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with a one-line error on a corrupt file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise HrsbenchError(
            f"corrupt checkpoint {path} ({type(e).__name__}); delete it and rerun to retrain"
        ) from None


class ModelCache:
    """Trained weights by key, one file each; the key is a hash of everything that made them."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str, model: torch.nn.Module) -> bool:
        """Fill ``model`` from the cache; False when nothing is cached under ``key``."""
        p = self.path(key)
        if not p.exists():
            return False
        state = safe_load(p)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            raise HrsbenchError(
                f"checkpoint {p} does not fit the model ({str(e).splitlines()[0]}); "
                "delete it and rerun"
            ) from None
        return True

    def lock(self, key: str, on_wait: Callable[[], None] | None = None) -> AbstractContextManager:
        """Hold while looking up and, if missing, training the model under ``key``: another
        process sharing the cache waits, then loads what this one trained."""
        return model_lock(self.path(key), on_wait)

    def save(self, key: str, model: torch.nn.Module) -> None:
        atomic_save(model.state_dict(), self.path(key))
