"""Progress as plain log lines, for output that is not a terminal (``hrsbench run > log``): a
live bar there would print nothing until the run ends, so each finished cell, each new model or
attack, and otherwise one line per ``every`` seconds goes out with the elapsed time."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class LogProgress:
    """A runner progress callback (task, label, done, total) writing plain, flushed lines."""

    def __init__(self, stream: TextIO | None = None, every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stdout
        self.every = every
        self.clock = clock
        self.start = clock()
        self.last = -float("inf")
        self.labels: dict[str, str] = {}
        self.cells = ""

    def __call__(self, task: str, label: str, done: int, total: int) -> None:
        now = self.clock()
        if task in ("cells", "models", "pieces"):
            self.cells = f"cells {done}/{total}" if task == "cells" else self.cells
            self._line(now, f"{task} {done}/{total}")
            return
        new = self.labels.get(task) != label
        self.labels[task] = label
        if new or done >= total or now - self.last >= self.every:
            percent = f" ({100 * done // max(total, 1)} %)" if task == "train" else ""
            unit = " steps" if task == "train" else ""
            cells = f"{self.cells} · " if self.cells else ""
            self._line(now, f"{cells}{task} {label}: {done}/{total}{unit}{percent}")

    def _line(self, now: float, text: str) -> None:
        self.last = now
        print(f"[{_clock(now - self.start)}] {text}", file=self.stream, flush=True)
