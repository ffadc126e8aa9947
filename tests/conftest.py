"""Shared fixtures: the real data directory (skipped when absent) and isolated caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path | None:
    for candidate in (os.environ.get("HRSBENCH_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "mnist").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _data_dir()
    if d is None:
        pytest.skip("no data directory: set HRSBENCH_DATA to a folder with mnist/ and cifar10/")
    return d


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Every test trains into its own model cache, never the user's."""
    cache = tmp_path / "model-cache"
    monkeypatch.setenv("HRSBENCH_CACHE", str(cache))
    return cache
