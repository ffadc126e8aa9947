"""``results.jsonl``: one :class:`~hrsbench.results.record.ResultLine` per finished cell, appended
and fsynced as one write, so a kill loses at most the line being written, which the next load drops.

Reading migrates older lines (:mod:`hrsbench.results.migrate`) and validates every line, so
everything downstream sees the current schema only. Light: no torch, ART or matplotlib.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from hrsbench.errors import HrsbenchError
from hrsbench.results.migrate import migrate
from hrsbench.results.record import ResultLine, loads
from hrsbench.results.storage import atomic_write

if TYPE_CHECKING:
    import pandas as pd


def parse_line(raw: bytes | str) -> ResultLine:
    """One stored line (any schema version) as a validated :class:`ResultLine`."""
    data = loads(raw)
    if not isinstance(data, dict):
        raise HrsbenchError("a result line must be a JSON object")
    try:
        return ResultLine.from_dict(migrate(data))
    except (ValueError, TypeError, KeyError, AttributeError) as e:  # a field of the wrong type
        raise HrsbenchError(f"invalid result line ({type(e).__name__}: {e})") from None


class ResultsWarning(UserWarning):
    """A results-file problem that does not stop the read: a torn last line, skipped lines."""


def repair_hint(path: Path) -> str:
    return (f"run `hrsbench repair {path}` to keep every good line and move the bad ones to "
            f"{path}.bad, or pass --skip-bad to the leaderboard")


def read_numbered(
    path: Path, repair: bool = False, skip_bad: bool = False
) -> list[tuple[int, ResultLine]]:
    """The lines of a results file with their line numbers.

    A malformed line is a one-line error naming file, line and the repair, or, with
    ``skip_bad``, left out with a warning naming it. A torn last line (no newline: a write cut
    off by a kill) is dropped with a warning, and cut off the file if ``repair``.
    """
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    out, bad = [], []
    for i, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            out.append((i, parse_line(line)))
        except HrsbenchError as e:
            if not skip_bad:
                raise HrsbenchError(f"{path}:{i}: {e}; {repair_hint(path)}") from None
            bad.append(i)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} bad line(s): line {_numbers(bad)}",
                      ResultsWarning, stacklevel=2)
    if lines[-1] != b"":
        _torn(path, len(raw) - len(lines[-1]), len(lines), repair)
    return out


def _numbers(bad: list[int]) -> str:
    shown = ", ".join(map(str, bad[:10]))
    return shown + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")


def _torn(path: Path, keep: int, number: int, repair: bool) -> None:
    """A last line without its newline: the write a kill cut off. Its cell reruns."""
    done = "cut it off; its cell runs again" if repair else "ignored it"
    warnings.warn(f"{path}:{number}: the last line is incomplete (a write cut off by a kill); "
                  f"{done}", ResultsWarning, stacklevel=3)
    if repair:
        with open(path, "r+b") as f:
            f.truncate(keep)


def repair(path: Path) -> tuple[int, int]:
    """Keep every good line of a results file and move the bad ones (malformed, invalid or
    torn) to ``PATH.bad``; returns (kept, moved). The good lines keep their bytes and order."""
    path = Path(path)
    good, bad = [], []
    for line in path.read_bytes().splitlines(keepends=True):
        if not line.strip():
            continue
        try:
            if not line.endswith(b"\n"):
                raise HrsbenchError("torn")
            parse_line(line)
            good.append(line)
        except HrsbenchError:
            bad.append(line if line.endswith(b"\n") else line + b"\n")
    if bad:
        with open(path.with_name(path.name + ".bad"), "ab") as f:
            f.write(b"".join(bad))
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(b"".join(good)))
    return len(good), len(bad)


def read_lines(path: Path, repair: bool = False) -> list[ResultLine]:
    """The lines of a results file (see :func:`read_numbered`)."""
    return [line for _, line in read_numbered(path, repair)]


class ResultStore:
    """The results of one output directory, keyed by cell key."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records = {r.provenance.cell_key: r for r in read_lines(self.path, repair=True)}

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def append(self, line: ResultLine) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (line.to_json() + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
        except OSError as e:
            # Cut off what part of the line got written (a full disk): the next append must
            # start on a fresh line, not extend a torn one into a malformed middle line.
            os.ftruncate(fd, size)
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        finally:
            os.close(fd)
        self.records[line.provenance.cell_key] = line


#: Per-example counts stored encoded (:mod:`hrsbench.results.outcomes`), decoded in DataFrames.
COUNT_FIELDS = ("successes", "successes_pick", "clean_correct")


def frame(lines: list[ResultLine]) -> pd.DataFrame:
    """Lines as a DataFrame, one flat row each (:meth:`ResultLine.row`), with the per-example
    counts (:data:`COUNT_FIELDS`: ``successes`` of length ``n_examples`` on an attack line)
    decoded to int arrays; None where a line has none (lines written before they existed)."""
    import pandas as pd

    from hrsbench.results.outcomes import decode_counts

    rows = [line.row() for line in lines]
    for row in rows:
        for name in COUNT_FIELDS:
            if row.get(name) is not None:
                row[name] = decode_counts(row[name])
    return pd.DataFrame(rows)


def load_results(*paths: str | Path) -> pd.DataFrame:
    """Result lines of one or more ``results.jsonl`` files as a DataFrame, one row per line."""
    return frame([r for p in paths for r in read_lines(Path(p))])
