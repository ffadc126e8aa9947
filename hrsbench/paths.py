"""Where hrsbench reads and writes: the per-user default folders, and checks that a place a
command will write to is usable, made before any work so a bad ``--out`` fails in one line
instead of after training. Light: no torch, so ``--help`` can show the true defaults."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from hrsbench.errors import HrsbenchError


def user_dir(env: str, leaf: str) -> Path:
    """``$env`` when set, else ``$XDG_CACHE_HOME/hrsbench/leaf`` (``~/.cache`` without it): data
    and models are per-user caches, never part of a project checkout."""
    if value := os.environ.get(env):
        return Path(value)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hrsbench" / leaf


def default_data_dir() -> Path:
    return user_dir("HRSBENCH_DATA", "data")


def default_cache_dir() -> Path:
    return user_dir("HRSBENCH_CACHE", "models")


def run_places(data_dir: str | Path | None, cache_dir: str | Path | None) -> tuple[Path, Path]:
    """A run's data and model-cache folders as its driver resolves them, once, for every task:
    the folder given, else this process's ``$HRSBENCH_DATA`` / ``$HRSBENCH_CACHE``, else the
    per-user default; absolute, so a task in another directory or on another node uses the
    same paths. A Ray worker's own environment (which may differ) never decides them. Symlinks
    are kept: a link every node has names the same place on each, its target may not."""
    data = Path(data_dir) if data_dir else default_data_dir()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return Path(os.path.abspath(data)), Path(os.path.abspath(cache))


def check_node_places(cache_dir: Path, data_dir: Path | None, where: str) -> None:
    """Prove, where a task runs (``where`` names the node), that the run's model cache can be
    written and, when given, its data folder read. Every task uses the folders the driver
    resolved, so a node that does not see them fails here in one line naming the node and the
    fix, instead of deep inside a dataset's loader or a checkpoint's save."""
    if data_dir is not None:
        try:
            with os.scandir(data_dir) as entries:
                next(entries, None)
        except OSError as e:
            raise HrsbenchError(
                f"{where} cannot read the data folder {data_dir} "
                f"({e.strerror or type(e).__name__}); every node must see it at the same path: "
                "mount it there on every node, or pass --data-dir a folder every node shares"
            ) from None
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache_dir):
            pass
    except OSError as e:
        raise HrsbenchError(
            f"{where} cannot write the model cache {cache_dir} "
            f"({e.strerror or type(e).__name__}); every node must be able to write it at the "
            "same path: mount it there on every node, or pass --cache-dir a folder every node "
            "shares"
        ) from None


#: What to do about an OS error, by errno: the message names the file, this names the fix.
FIXES = {
    errno.EACCES: "check its permissions or choose another place",
    errno.EPERM: "check its permissions or choose another place",
    errno.EROFS: "it is on a read-only file system; choose another place",
    errno.ENOTDIR: "a part of that path is a file, not a folder; choose another place",
    errno.EISDIR: "it is a folder; give a file name",
    errno.ENOSPC: "the disk is full; free some space and rerun (finished work is kept)",
    errno.EDQUOT: "the disk quota is exhausted; free some space and rerun",
    errno.ENAMETOOLONG: "shorten the path",
    errno.ENOENT: "check the path",
    errno.EEXIST: "remove or rename it",
}


def os_error_line(e: OSError, name_file: bool = True) -> str:
    """An OS error as one line naming the file (unless the caller names it) and the fix."""
    where = f"{e.filename}: " if e.filename and name_file else ""
    fix = FIXES.get(e.errno or 0)
    return f"{where}{e.strerror or e}" + (f"; {fix}" if fix else "")


def writable_dir(path: Path, option: str) -> Path:
    """Create ``path`` if needed and prove a file can be written in it; one line if not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HrsbenchError(f"{option} {path} is a file, not a folder; choose a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise HrsbenchError(
            f"{option} {path}: cannot write there: {os_error_line(e, name_file=False)}"
        ) from None
    return path


def writable_file(path: Path, option: str) -> Path:
    """A file a command will (re)write: not a folder, and its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise HrsbenchError(f"{option} {path} is a folder; give a file name, e.g. "
                            f"{path / 'leaderboard.md'}")
    writable_dir(path.parent, f"{option} {path}: its folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise HrsbenchError(f"{option} {path} is read-only; check its permissions or choose "
                            "another file")
    return path
