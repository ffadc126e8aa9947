"""Inter-process locks (``filelock``): one run per output directory, and one training per cached
model, so two processes sharing a folder never do the same work twice or interleave results.

The operating system drops a lock when its holder dies (even by ``kill -9``), so a lock left by
a crashed run never blocks the next one; the owner note beside it only names the holder.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from hrsbench.errors import HrsbenchError

RUN_LOCK = ".hrsbench.lock"


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
    out.mkdir(parents=True, exist_ok=True)
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
    try:
        note.write_text(_owner() + "\n")
        yield
    finally:
        note.unlink(missing_ok=True)
        lock.release()


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
