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


class Session:
    """What :func:`pytest_configure` sets up for the session (nothing at import: Ray workers
    import this module when they unpickle a test's function)."""

    #: The temporary folder for Ray's files and token and hrsbench's default folders.
    root: Path
    #: ``~/.ray`` before any test ran (:func:`listing`).
    ray_home_before: dict[str, int]
    env = pytest.MonkeyPatch()


def pytest_configure(config: pytest.Config) -> None:
    """For the whole session, set before any test module imports Ray (its processes read the
    authentication mode when Ray is imported, and its workers inherit the environment at
    ``ray.init``): Ray's session files and its token in a temporary folder, never ``/tmp/ray``
    or ``~/.ray``; token authentication on, as a new local instance has it by default, with
    that token; no cluster address from the user's environment; and hrsbench's default data
    and model folders away from ``~/.cache/hrsbench``. The folder's name is short: Ray's socket
    paths under it must stay under 108 characters."""
    Session.ray_home_before = listing(RAY_HOME)
    Session.root = root = Path(tempfile.mkdtemp(prefix="hrsbench-tests-"))
    token = root / "ray-auth-token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = Session.env
    env.setenv("RAY_TMPDIR", str(root))
    env.setenv("RAY_AUTH_MODE", "token")
    env.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    for name in ("RAY_AUTH_TOKEN", "RAY_ADDRESS"):
        env.delenv(name, raising=False)
    env.setenv("HRSBENCH_CACHE", str(root / "models"))
    data = _data_dir()
    env.setenv("HRSBENCH_DATA", str(data) if data else str(root / "data"))


def pytest_unconfigure(config: pytest.Config) -> None:
    Session.env.undo()
    shutil.rmtree(Session.root, ignore_errors=True)


@pytest.fixture(scope="session")
def session_places() -> Path:
    """The session's temporary folder holding Ray's files (``ray/``) and its token."""
    return Session.root


@pytest.fixture(scope="session")
def ray_home_before() -> dict[str, int]:
    """``~/.ray`` as it was before any test ran (:func:`listing`)."""
    return Session.ray_home_before


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
