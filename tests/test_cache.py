"""Checkpoints are written atomically and a corrupt one fails in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from hrsbench import HrsbenchError, ModelCache


def test_roundtrip_and_corruption(tmp_path):
    cache = ModelCache(tmp_path)
    model = nn.Linear(3, 2)
    cache.save("k", model)
    assert list(tmp_path.iterdir()) == [tmp_path / "k.pt"]  # no temporary file left behind
    other = nn.Linear(3, 2)
    assert cache.load("k", other)
    assert torch.equal(other.weight, model.weight)
    assert not cache.load("missing", other)
    (tmp_path / "k.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(HrsbenchError, match=r"corrupt checkpoint .*k\.pt.*delete it and rerun"):
        cache.load("k", other)


def test_checkpoint_of_another_shape_is_an_error(tmp_path):
    cache = ModelCache(tmp_path)
    cache.save("k", nn.Linear(3, 2))
    with pytest.raises(HrsbenchError, match="does not fit the model"):
        cache.load("k", nn.Linear(4, 2))


def test_user_dirs_follow_the_environment(tmp_path, monkeypatch):
    from hrsbench.plugin.cache import default_cache_dir
    from hrsbench.plugin.dataset import default_data_dir

    monkeypatch.delenv("HRSBENCH_CACHE", raising=False)
    monkeypatch.delenv("HRSBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "hrsbench" / "models"
    assert default_data_dir() == tmp_path / "xdg" / "hrsbench" / "data"
    monkeypatch.setenv("HRSBENCH_CACHE", str(tmp_path / "m"))
    monkeypatch.setenv("HRSBENCH_DATA", str(tmp_path / "d"))
    assert (default_cache_dir(), default_data_dir()) == (tmp_path / "m", tmp_path / "d")


def test_atomic_writes_follow_the_umask(tmp_path):
    """A checkpoint or leaderboard is as readable as any file the user creates (0644 under
    umask 022), not private to its writer as the temporary file it was renamed from."""
    import os
    import stat

    from hrsbench.results.storage import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.md", lambda tmp: Path(tmp).write_text("x"))
        os.umask(0o027)
        atomic_write(tmp_path / "b.md", lambda tmp: Path(tmp).write_text("x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.md").stat().st_mode) == 0o640
