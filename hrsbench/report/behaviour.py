"""What a DES comparison is parameterised by: the base defense, the offset η, the behaviour
range, and the score itself. Light (no pandas), so the command line can offer them as defaults
without loading the reporting stack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def des_values(delta_d: Any, delta_t: Any, eta: float = ETA) -> Any:
    """``Δd / (Δt + η)`` elementwise, for point estimates and resamples alike: the one definition
    of DES every report computes it with (numbers or numpy arrays in, a float array out).

    - Δd = 0 gives 0, whatever the denominator: a defense that gains nothing scores nothing,
      also in a resample where it costs no accuracy (a saturated budget, every model broken or
      none, has Δd = 0 in every resample).
    - Δd ≠ 0 with Δt + η ≤ 0 gives ±∞ (the sign of Δd): the ratio would flip sign or divide by
      zero, and a resample there makes the interval unbounded on that side, which is the
      honest answer where Δt is within its noise of −η.
    - A missing Δd or Δt gives NaN.
    """
    import numpy as np  # here, not above: the command line reads this module without numpy

    dd = np.asarray(delta_d, dtype=float)
    denominator = np.asarray(delta_t, dtype=float) + eta
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denominator > 0, dd / denominator, np.where(dd < 0, -np.inf, np.inf))
    out = np.where(dd == 0, 0.0, out)
    return np.where(np.isnan(dd) | np.isnan(denominator), np.nan, out)


def des_score(delta_d: float, delta_t: float, eta: float = ETA) -> float | None:
    """A point estimate's DES (:func:`des_values`); ``None`` where ``Δt + η ≤ 0``: a defense
    more accurate than the base by η or more gets no DES, whatever its Δd, since 0 or ±∞
    there would rank it by the accident of Δd (the tables say "no DES: Δt + η ≤ 0")."""
    if delta_t + eta <= 0:
        return None
    return float(des_values(delta_d, delta_t, eta))
