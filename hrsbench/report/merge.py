"""Result files from any number of runs and machines merged into one set of lines.

Merging is deterministic: a cell (same cell key) found more than once keeps its most recently
finished line, ties broken by a hash of the line's content, so the same files give the same
report in any order; every resolved duplicate is listed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrsbench.errors import HrsbenchError
from hrsbench.results.record import ResultLine
from hrsbench.results.store import frame, read_numbered

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Origin:
    """Where a result line came from, for the duplicate report."""

    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Duplicate:
    """One cell found on several lines, and which line was kept and why."""

    cell_key: str
    kept: Origin
    dropped: list[Origin]
    reason: str
    record: dict[str, Any]


@dataclass
class Merged:
    """The deduplicated result lines of several files, with what merging them involved."""

    results: list[ResultLine]
    sources: list[tuple[Path, int]] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)

    @cached_property
    def records(self) -> list[dict[str, Any]]:
        """The lines as flat rows (:meth:`ResultLine.row`), computed once."""
        return [line.row() for line in self.results]

    @property
    def lines(self) -> pd.DataFrame:
        return frame(self.results)


def content_hash(line: ResultLine) -> str:
    """A hash of a line's content, independent of key order: the tie-breaker between two lines
    for one cell finished in the same second."""
    return hashlib.sha256(line.to_json().encode()).hexdigest()


def finished(line: ResultLine) -> datetime:
    """When a line's cell finished (the earliest time for a line that does not say)."""
    try:
        at = datetime.fromisoformat(str(line.provenance.finished_at))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def merge_results(*paths: str | Path, skip_bad: bool = False) -> Merged:
    """Read and merge result files; a missing file, a malformed line or a line lacking a
    required field is an :class:`HrsbenchError` naming the file (and line), except that with
    ``skip_bad`` bad lines are left out with a warning naming them."""
    if not paths:
        raise HrsbenchError("no result files given")
    found: dict[str, list[tuple[ResultLine, Origin]]] = {}
    sources = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise HrsbenchError(f"{path}: no such results file")
        numbered = read_numbered(path, skip_bad=skip_bad)
        sources.append((path, len(numbered)))
        for number, line in numbered:
            found.setdefault(line.provenance.cell_key, []).append((line, Origin(path, number)))
    kept, duplicates = [], []
    for key, versions in found.items():
        if len(versions) == 1:
            kept.append(versions[0][0])
            continue
        ranked = sorted(versions, key=lambda v: (finished(v[0]), content_hash(v[0])),
                        reverse=True)
        kept.append(ranked[0][0])
        duplicates.append(_duplicate(key, ranked))
    if not kept:  # a report of nothing, dated now, would read as a finished one
        raise HrsbenchError(f"no result lines in {', '.join(str(p) for p in paths)}; run "
                            "hrsbench run first, or give the results.jsonl of a finished run")
    return Merged(kept, sources, duplicates)


def _duplicate(key: str, ranked: list[tuple[ResultLine, Origin]]) -> Duplicate:
    winner = ranked[0][0]
    if len({content_hash(r) for r, _ in ranked}) == 1:
        reason = "identical lines"
    elif finished(ranked[1][0]) < finished(winner):
        reason = "most recent finished_at"
    else:
        reason = "same finished_at; highest content hash"
    return Duplicate(key, ranked[0][1], [o for _, o in ranked[1:]], reason, winner.row())


def last_finished(lines: list[ResultLine]) -> datetime | None:
    """When the newest line was written: a leaderboard dated by its data, not by the clock, is
    byte-identical when rewritten from unchanged results (a resumed run that had nothing to
    do leaves the published file untouched)."""
    times = [finished(r) for r in lines if r.provenance.finished_at]
    return max(times) if times else None
