"""Inter-process locks (``filelock``): one run per output directory, and one training per cached
model, so two processes sharing a folder never do the same work twice or interleave results.

The operating system drops a lock when its holder dies (even by ``kill -9``), so a lock left by
a crashed run never blocks the next one; the owner note beside it only names the holder.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from hrsbench.errors import HrsbenchError

T = TypeVar("T")

RUN_LOCK = ".hrsbench.lock"

#: Folders whose run lock this thread holds: the CLI holds it around a run and its reports, and
#: the runner it calls takes it again without deadlocking on itself.
_HELD = threading.local()


def _owner() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}"


def _holder(note: Path) -> str:
    try:
        return note.read_text().strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def run_lock(
    out: Path, wait: bool = False, on_wait: Callable[[str], None] | None = None,
    advice: str = "let it finish, add --wait to start after it, or choose another --out",
) -> Iterator[None]:
    """Hold ``out``'s run lock for the block. Another holder means a one-line refusal naming it
    and ending in ``advice``, or, with ``wait``, blocking until it finishes (``on_wait`` hears
    whom it waits for)."""
    held: set[Path] = _HELD.__dict__.setdefault("paths", set())
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() in held:
        yield
        return
    lock, note = FileLock(out / RUN_LOCK), out / f"{RUN_LOCK}.owner"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _holder(note)
        if not wait:
            raise HrsbenchError(
                f"{out} is in use by another hrsbench run ({holder}); {advice}"
            ) from None
        if on_wait:
            on_wait(holder)
        lock.acquire()
    held.add(out.resolve())
    try:
        note.write_text(_owner() + "\n")
        yield
    finally:
        held.discard(out.resolve())
        note.unlink(missing_ok=True)
        lock.release()


def holding_run_lock(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorate ``fn(cfg, out, ...)`` to run holding ``out``'s run lock (refusing at once)."""

    @functools.wraps(fn)
    def wrapper(cfg: Any, out: Path, *args: Any, **kwargs: Any) -> T:
        with run_lock(Path(out)):
            return fn(cfg, out, *args, **kwargs)

    return wrapper


@contextmanager
def model_lock(
    path: Path, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the lock of one cached model file while it is looked up and, if missing, trained: a
    second process wanting the same model waits, then finds it in the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path.with_name(path.name + ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
