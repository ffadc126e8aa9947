"""Lines that differ only in the training seed, pooled into one line per defense configuration
and threat, with intervals that include the variation between seeds (docs/des.md, "Several
training seeds").

A pooled line's clean accuracy, defense rate, Δt and Δd are the means over its seeds of each
seed's values, every seed's Δt and Δd taken against the base model of the same seed; its DES is
``mean Δd / (mean Δt + η)``. Its resamples add two parts:

- the image part: the mean over seeds of each seed's image resamples (:mod:`.stats`). Every seed
  is attacked on the same images and resampled on the same weights, so this is the image
  bootstrap of the pooled estimate;
- the seed part: a Student-t multiplier bootstrap over seeds. With ``k`` seeds whose values
  ``x_i`` have mean ``x̄``, a resample adds ``√((k−1)/χ²) · Σ z_i (x_i − x̄) / √(k(k−1))`` with
  ``z_i`` standard normal per seed and ``χ²`` on ``k − 1`` degrees of freedom. For one line this
  is ``t_{k−1} · s/√k``, the classic t interval of a mean of ``k`` values; the ``z_i`` and ``χ²``
  are shared by every line of a replicate, so a difference of two lines (a family against
  another, a line against its base) is the paired t interval over seeds. Resampling ``k = 3``
  seeds with replacement instead cannot reach beyond the smallest and largest seed and covers
  about 75 % where 95 % is asked.

Nothing changes where every configuration has one seed: the frame and the resamples come back
as they went in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from hrsbench.report.behaviour import des_score, des_values
from hrsbench.report.frame import GROUP, MODEL, missing
from hrsbench.report.stats import Bootstrap, Replicates
from hrsbench.report.tables import FLAG_FIELDS, flags
from hrsbench.results.record import canonical

#: Columns a pooled line's seeds share: everything that identifies a line except the seed.
POOL = (*GROUP, "n_clean", "defense", "params_key", "n_train", "epochs", "kind",
        "via_whitebox")
#: Per-seed means, with or without per-example outcomes.
MEANS = ("clean_accuracy", "clean_accuracy_std", "defense_rate", "attack_success_rate",
         "attack_success_rate_std", "base_clean_accuracy", "base_defense_rate", "delta_t",
         "delta_d")
#: Quantities resampled per line; DES follows from Δd and Δt.
RESAMPLED = ("clean_accuracy", "defense_rate", "delta_t", "delta_d")
#: Per-seed fields that mean nothing for a pooled line.
DROPPED = ("successes", "clean_correct")


def several_seeds(scored: pd.DataFrame) -> bool:
    """Whether some configuration of ``scored`` was run under more than one seed."""
    if scored.empty or "seed" not in scored.columns:
        return False
    return bool((_groups(scored).size() > 1).any())


def _groups(scored: pd.DataFrame) -> Any:
    keys = [c for c in POOL if c in scored.columns]
    return scored.groupby(keys, sort=False, dropna=False)


def pool_seeds(scored: pd.DataFrame, reps: Replicates) -> tuple[pd.DataFrame, Replicates]:
    """``scored`` (:func:`hrsbench.attach_des`'s output) with the lines of each configuration and
    threat pooled over their seeds, and their resamples (:func:`.stats.line_replicates`) pooled
    with the seed part added; unchanged when no configuration has several seeds."""
    if not several_seeds(scored):
        return scored, reps
    draws = seed_draws(scored, reps.boot)
    rows, columns = [], []
    for _, group in _groups(scored):
        positions = scored.index.get_indexer(group.sort_values("seed", kind="stable").index)
        lines = [scored.iloc[p].to_dict() for p in positions]
        rows.append(pooled_line(lines, reps.eta))
        columns.append(draws.pooled(reps, positions, [int(r["seed"]) for r in lines]))
    pooled = pd.DataFrame(rows, columns=list(scored.columns) + ["n_seeds",
                                                                "clean_accuracy_seed_min",
                                                                "clean_accuracy_seed_max"])
    values = {name: np.stack([c[name] for c in columns], axis=1) for name in RESAMPLED}
    values["des"] = np.stack([c["des"] for c in columns], axis=1)
    has_des = pooled["des"].notna().to_numpy()
    values["des"] = np.where(has_des[None, :], values["des"], np.nan)
    return pooled, Replicates(pooled, reps.boot, reps.eta, values, reps.accuracy_by_model)


def _mean(lines: list[Mapping[str, Any]], col: str) -> float | None:
    """The mean over seeds, or None unless every seed has a value."""
    values = [line.get(col) for line in lines]
    if any(missing(v) for v in values):
        return None
    return float(np.mean([float(v) for v in values]))


def pooled_line(lines: list[Mapping[str, Any]], eta: float) -> dict[str, Any]:
    """One line for the seeds of a configuration and threat: per-seed means, the DES of the
    mean Δd and Δt, the seeds and the spread of clean accuracy over them."""
    out = dict(lines[0])
    out.update({col: _mean(lines, col) for col in MEANS if col in out})
    out.update({col: None for col in DROPPED if col in out})
    seeds = [int(r["seed"]) for r in lines]
    accuracy = [float(r["clean_accuracy"]) for r in lines]
    out.update(seed=", ".join(map(str, seeds)) if len(seeds) > 1 else seeds[0],
               n_seeds=len(seeds), clean_accuracy_seed_min=min(accuracy),
               clean_accuracy_seed_max=max(accuracy))
    out[MODEL] = "+".join(str(r[MODEL]) for r in lines)
    out["cell_key"] = "+".join(str(r["cell_key"]) for r in lines)
    out["base_cell_key"] = None
    out["des"], out["des_note"] = _des(lines, out, eta)
    for col in FLAG_FIELDS:  # a verdict per trained model
        if col in out:
            out[col] = _flags(lines, col)
    return out


def _flags(lines: list[Mapping[str, Any]], col: str) -> Any:
    """A sanity verdict shared by every seed as it is; differing ones each with its seed."""
    values = [line.get(col) for line in lines]
    if all(canonical(v) == canonical(values[0]) for v in values):
        return values[0]
    return "; ".join(f"seed {line['seed']}: {flags(v) or 'ok'}"
                     for line, v in zip(lines, values, strict=True))


def _des(lines: list[Mapping[str, Any]], out: Mapping[str, Any], eta: float
         ) -> tuple[float | None, str | None]:
    """The pooled DES where every seed has one's ingredients, else the seeds' notes."""
    scored = [not missing(r["des"]) or _no_denominator(r) for r in lines]
    if all(scored) and not missing(out["delta_d"]) and not missing(out["delta_t"]):
        score = des_score(out["delta_d"], out["delta_t"], eta)
        note = None if score is not None else str(lines[0]["des_note"] or "Δt + η ≤ 0")
        if score is None and not _no_denominator(lines[0]):
            note = "Δt + η ≤ 0 (the mean over seeds)"
        return score, note
    notes = [str(r["des_note"]) for r in lines if not missing(r["des_note"])]
    return None, "; ".join(dict.fromkeys(notes)) or None


def _no_denominator(line: Mapping[str, Any]) -> bool:
    """A seed's line scored but for Δt + η ≤ 0: pooled, the mean may still have a DES."""
    note = line.get("des_note")
    return missing(line["des"]) and isinstance(note, str) and note.startswith("Δt + η ≤ 0")


class SeedDraws:
    """The seed part's random numbers, shared by every line of a report: a standard normal per
    seed and a χ² per number of degrees of freedom, per replicate, seeded by the bootstrap's
    seed and the seeds' names, so the intervals are deterministic."""

    def __init__(self, boot: Bootstrap, seeds: list[int]) -> None:
        name = f"{boot.seed}/seeds/{','.join(map(str, seeds))}"
        digest = hashlib.sha256(name.encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        self.index = {s: i for i, s in enumerate(seeds)}
        self.z = rng.standard_normal((boot.replicates, len(seeds)))
        #: χ² on d degrees of freedom: the sum of the first d squared normals of a row.
        self.chi2 = np.cumsum(rng.standard_normal((boot.replicates, len(seeds))) ** 2, axis=1)

    def deviation(self, values: np.ndarray, seeds: list[int]) -> np.ndarray:
        """The seed part of each replicate for per-seed point values ``values`` (NaN if any
        seed lacks one; 0 with one seed, which has no spread to measure)."""
        k = len(seeds)
        if k < 2:
            return np.zeros(len(self.z))
        z = self.z[:, [self.index[s] for s in seeds]]
        scale = np.sqrt((k - 1) / self.chi2[:, k - 2])
        return scale * (z @ (values - values.mean())) / np.sqrt(k * (k - 1))

    def mean(self, per_seed: np.ndarray, points: np.ndarray, seeds: list[int], low: float
             ) -> np.ndarray:
        """Resamples of the mean over seeds: the mean of the seeds' image resamples
        (replicates × seeds) plus the seed part of their point values, kept within
        [``low``, 1] (a rate stays a rate, a difference within ±1)."""
        return np.clip(per_seed.mean(axis=1) + self.deviation(points, seeds), low, 1.0)

    def pooled(self, reps: Replicates, positions: np.ndarray, seeds: list[int]
               ) -> dict[str, np.ndarray]:
        """Resamples of one pooled line from its seeds' lines at ``positions``."""
        out = {}
        for name in RESAMPLED:
            low = -1.0 if name.startswith("delta") else 0.0
            out[name] = self.mean(reps.values[name][:, positions],
                                  per_seed_points(reps.scored, name, positions), seeds, low)
        out["des"] = des_values(out["delta_d"], out["delta_t"], reps.eta)
        return out


def seed_draws(scored: pd.DataFrame, boot: Bootstrap) -> SeedDraws:
    """The seed part's draws for every seed of ``scored``: built from the same seeds, the lines
    and the worst case over attacks share them, so their differences stay paired over seeds."""
    return SeedDraws(boot, sorted({int(s) for s in scored["seed"] if not missing(s)}))


def per_seed_points(scored: pd.DataFrame, name: str, positions: np.ndarray) -> np.ndarray:
    """The point values of ``name`` on the lines at ``positions`` (NaN where missing)."""
    return pd.to_numeric(scored[name].iloc[positions], errors="coerce").to_numpy(dtype=float)
