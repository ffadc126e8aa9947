"""What a DES comparison is parameterised by: the base defense, the offset η, the behaviour
range, and the score itself. Light (no pandas), so the command line can offer them as defaults
without loading the reporting stack."""

from __future__ import annotations

from dataclasses import dataclass

from hrsbench.errors import HrsbenchError
from hrsbench.report.frame import missing

#: The paper's offset (footnote 2), in accuracy units (fractions, like every rate here).
ETA = 0.002
#: The defense whose lines are the reference for Δt and Δd.
BASE = "base"


@dataclass(frozen=True)
class BehaviourRange:
    """A window of behaviour to compare defenses in (section 4): DES means are taken over the
    points whose test-accuracy drop and/or defense rate fall inside (bounds included). ``None``
    leaves a side open."""

    delta_t: tuple[float | None, float | None] = (None, None)
    defense_rate: tuple[float | None, float | None] = (None, None)

    def __post_init__(self) -> None:
        for name in ("delta_t", "defense_rate"):
            lo, hi = getattr(self, name)
            if lo is not None and hi is not None and lo > hi:
                raise HrsbenchError(f"behaviour range {name}: lower bound {lo} > upper {hi}")

    def contains(self, delta_t: float, defense_rate: float) -> bool:
        return _within(delta_t, self.delta_t) and _within(defense_rate, self.defense_rate)

    def describe(self) -> str:
        parts = []
        for label, (lo, hi) in (("Δt", self.delta_t), ("defense rate", self.defense_rate)):
            if (lo, hi) != (None, None):
                lo_s = "−∞" if lo is None else f"{lo:g}"
                hi_s = "+∞" if hi is None else f"{hi:g}"
                parts.append(f"{label} ∈ [{lo_s}, {hi_s}]")
        return " and ".join(parts) if parts else "all points"


def _within(x: float, bounds: tuple[float | None, float | None]) -> bool:
    lo, hi = bounds
    if missing(x):
        return lo is None and hi is None
    return (lo is None or x >= lo) and (hi is None or x <= hi)


def des_score(delta_d: float, delta_t: float, eta: float = ETA) -> float | None:
    """``Δd / (Δt + η)``; ``None`` when ``Δt + η ≤ 0`` (a defense more accurate than the base
    by η or more), where the ratio would flip sign or divide by zero instead of rewarding it."""
    denom = delta_t + eta
    if denom <= 0:
        return None
    return delta_d / denom


