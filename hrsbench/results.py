"""``results.jsonl``: one :class:`~hrsbench.record.ResultLine` per finished cell, appended and
fsynced as one write, so a kill loses at most the line being written, which the next load drops.

Reading migrates older lines (:mod:`hrsbench.migrate`) and validates every line, so everything
downstream sees the current schema only. Light: no torch, ART or matplotlib.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from hrsbench.errors import HrsbenchError
from hrsbench.migrate import migrate
from hrsbench.record import ResultLine, loads

if TYPE_CHECKING:
    import pandas as pd


def parse_line(raw: bytes | str) -> ResultLine:
    """One stored line (any schema version) as a validated :class:`ResultLine`."""
    data = loads(raw)
    if not isinstance(data, dict):
        raise HrsbenchError("a result line must be a JSON object")
    return ResultLine.from_dict(migrate(data))


def read_numbered(path: Path, repair: bool = False) -> list[tuple[int, ResultLine]]:
    """The lines of a results file with their line numbers; a malformed line is a one-line
    error naming file and line, except a torn last line (no newline: a killed write), which is
    dropped (and cut off if ``repair``)."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    out = []
    for i, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            out.append((i, parse_line(line)))
        except HrsbenchError as e:
            raise HrsbenchError(f"{path}:{i}: {e}") from None
    if lines[-1] != b"" and repair:
        with open(path, "r+b") as f:
            f.truncate(len(raw) - len(lines[-1]))
    return out


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
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records[line.provenance.cell_key] = line


def frame(lines: list[ResultLine]) -> pd.DataFrame:
    """Lines as a DataFrame, one flat row each (:meth:`ResultLine.row`), with ``successes``
    decoded to an int array per attack line (None where a line has none)."""
    import pandas as pd

    from hrsbench.outcomes import decode_counts

    rows = [line.row() for line in lines]
    for row in rows:
        if row.get("successes") is not None:
            row["successes"] = decode_counts(row["successes"])
    return pd.DataFrame(rows)


def load_results(*paths: str | Path) -> pd.DataFrame:
    """Result lines of one or more ``results.jsonl`` files as a DataFrame, one row per line."""
    return frame([r for p in paths for r in read_lines(Path(p))])
