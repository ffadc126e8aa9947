"""Shared fixtures: the real data directory (skipped when absent), isolated caches, and Ray
instances kept out of the user's home."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The user's real home as this session found it: nothing in it may change
#: (tests/test_ray_places.py).
HOME = Path.home()
#: Where Ray would put its default token, ``~/.ray``: Ray writes one there when it starts a
#: local instance with token authentication and finds none, and from then on every
#: ``ray start --head`` on the machine turns token authentication on.
RAY_HOME = HOME / ".ray"


def _data_dir() -> Path | None:
    for candidate in (os.environ.get("HRSBENCH_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "mnist").is_dir():
            return Path(candidate)
    return None


def listing(folder: Path) -> dict[str, int]:
    """Every path under ``folder`` with its modification time (empty when it is absent)."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


#: ``~/.ray`` before any test ran.
RAY_HOME_BEFORE = listing(RAY_HOME)


#: The session's temporary folder for Ray and hrsbench's defaults (:func:`pytest_configure`).
SESSION_ROOT = Path(tempfile.mkdtemp(prefix="hrsbench-tests-"))
_ENV = pytest.MonkeyPatch()


def pytest_configure(config: pytest.Config) -> None:
    """For the whole session, set before any test module imports Ray (its processes read the
    authentication mode when Ray is imported, and its workers inherit the environment at
    ``ray.init``): Ray's session files and its token in a temporary folder, never ``/tmp/ray``
    or ``~/.ray``; token authentication on, as a new local instance has it by default, with
    that token; no cluster address from the user's environment; and hrsbench's default data
    and model folders away from ``~/.cache/hrsbench``. The folder's name is short: Ray's socket
    paths under it must stay under 108 characters."""
    token = SESSION_ROOT / "ray-auth-token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    _ENV.setenv("RAY_TMPDIR", str(SESSION_ROOT))
    _ENV.setenv("RAY_AUTH_MODE", "token")
    _ENV.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    for name in ("RAY_AUTH_TOKEN", "RAY_ADDRESS"):
        _ENV.delenv(name, raising=False)
    _ENV.setenv("HRSBENCH_CACHE", str(SESSION_ROOT / "models"))
    data = _data_dir()
    _ENV.setenv("HRSBENCH_DATA", str(data) if data else str(SESSION_ROOT / "data"))


def pytest_unconfigure(config: pytest.Config) -> None:
    _ENV.undo()
    shutil.rmtree(SESSION_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def session_places() -> Path:
    """The session's temporary folder holding Ray's files (``ray/``) and its token."""
    return SESSION_ROOT


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
