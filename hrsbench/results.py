"""``results.jsonl``: one JSON object per finished cell, appended and fsynced as one write, so a
kill loses at most the line being written, which the next load drops."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from hrsbench.errors import HrsbenchError

REQUIRED = (
    "dataset", "defense", "params", "strength", "attack", "attack_strength", "setting",
    "targeted", "n_examples", "clean_accuracy", "attack_success_rate", "seed",
    "hrsbench_version", "config_hash",
)


def read_lines(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Parse a results file; a malformed line is a one-line error naming file and line, except a
    torn last line (no newline: a killed write), which is dropped (and cut off if ``repair``)."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = lines[-1] != b""
    records = []
    for i, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise HrsbenchError(f"{path}:{i}: malformed result line ({e.msg})") from None
        missing = [k for k in REQUIRED if k not in rec]
        if missing:
            raise HrsbenchError(f"{path}:{i}: result line lacks field {missing[0]!r}")
        records.append(rec)
    if torn and repair:
        with open(path, "r+b") as f:
            f.truncate(len(raw) - len(lines[-1]))
    return records


class ResultStore:
    """The results of one output directory, keyed by cell key."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records = {r["cell_key"]: r for r in read_lines(self.path, repair=True)}

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records[record["cell_key"]] = record


def load_results(*paths: str | Path) -> pd.DataFrame:
    """Result lines of one or more ``results.jsonl`` files as a DataFrame, one row per line."""
    rows = [r for p in paths for r in read_lines(Path(p))]
    return pd.DataFrame(rows)
