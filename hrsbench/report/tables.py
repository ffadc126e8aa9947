"""Markdown tables and the number formats every report uses: one builder for the leaderboard,
the comparison with a paper and the reprogramming report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hrsbench.report.frame import missing


def isnum(x: Any) -> bool:
    return not missing(x)


#: Fields another part of the benchmark may add to flag a suspicious result (e.g. gradient
#: masking); shown in a column when present, in this order of preference.
FLAG_FIELDS = ("sanity", "flags", "sanity_flags")


def flags(value: Any) -> str:
    """A flag field's value as text ("" for none)."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple | set):
        return ", ".join(str(v) for v in value)
    return "" if not isnum(value) else str(value)


def pct(x: Any, std: Any = None) -> str:
    """A rate (fraction) as a percentage, with the spread of its repeats if given."""
    if missing(x):
        return "—"
    return f"{100 * x:.2f}%" + (f" ± {100 * std:.2f}" if isnum(std) else "")


def pp(x: Any) -> str:
    """A difference of two rates in percentage points, signed."""
    return f"{100 * x:+.2f}" if isnum(x) else "—"


def num(x: Any, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isnum(x) else "—"


def count(x: Any) -> str:
    """An integer-valued field (a float in a DataFrame column) without a trailing ``.0``."""
    if missing(x):
        return "—"
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def value(v: Any) -> str:
    """A parameter value as labels show it: a sequence as its items joined by "x" (HRS
    ``channels=10x10``)."""
    if isinstance(v, list | tuple):
        return "x".join(value(i) for i in v)
    return str(v)


def params(p: dict[str, Any] | None, keys: Sequence[str] | None = None) -> str:
    """``k=v`` pairs of ``keys`` (default: all, sorted), or "—" for none."""
    p = p or {}
    keys = sorted(p) if keys is None else keys
    return " ".join(f"{k}={value(p.get(k))}" for k in keys) or "—"


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   right: Sequence[bool] | None = None) -> list[str]:
    """GitHub markdown lines of a table; ``right`` marks right-aligned columns. Written by hand
    (``DataFrame.to_markdown`` needs the optional ``tabulate`` package)."""
    right = right or [False] * len(header)
    rule = "|" + "|".join("---:" if r else "---" for r in right) + "|"
    out = ["| " + " | ".join(cell(h) for h in header) + " |", rule]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def bound(x: float, scale: float, digits: int, signed: bool) -> str:
    if x == float("inf"):
        return "∞"
    if x == float("-inf"):
        return "−∞"
    return f"{scale * x:{'+' if signed else ''}.{digits}f}"


def interval(x: Any, lo: Any = None, hi: Any = None, scale: float = 100.0, digits: int = 1,
             signed: bool = False) -> str:
    """An estimate with its 95 % interval, ``54.5 [38.2, 71.9]`` (rates and differences in
    percent or percentage points with the default ``scale``; DES with ``scale=1``); the
    estimate alone where there is no interval."""
    if missing(x):
        return "—"
    text = bound(float(x), scale, digits, signed)
    if missing(lo) or missing(hi):
        return text
    return f"{text} [{bound(float(lo), scale, digits, signed)}, " \
           f"{bound(float(hi), scale, digits, signed)}]"
