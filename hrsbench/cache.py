"""Atomic checkpoint files and the model cache keyed by what determines a model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from hrsbench.errors import HrsbenchError
from hrsbench.storage import atomic_write, stable_hash

__all__ = ["ModelCache", "atomic_save", "atomic_write", "safe_load", "stable_hash", "user_dir"]


def atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def safe_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with a one-line error on a corrupt file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise HrsbenchError(
            f"corrupt checkpoint {path} ({type(e).__name__}); delete it and rerun to retrain"
        ) from None


def user_dir(env: str, leaf: str) -> Path:
    """``$env`` when set, else ``$XDG_CACHE_HOME/hrsbench/leaf`` (``~/.cache`` without it): data
    and models are per-user caches, never part of a project checkout."""
    if value := os.environ.get(env):
        return Path(value)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hrsbench" / leaf


def default_cache_dir() -> Path:
    return user_dir("HRSBENCH_CACHE", "models")


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

    def save(self, key: str, model: torch.nn.Module) -> None:
        atomic_save(model.state_dict(), self.path(key))
