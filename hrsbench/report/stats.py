"""Bootstrap intervals for every number a leaderboard compares, and rankings that admit ties.

The unit of resampling is the image. An attacked image's (image, target) pairs are resampled
together (a cluster bootstrap: pairs of one image are not independent), and every line of one
dataset and attacked-image count is resampled on the *same* images, so a defended line and its
base line stay paired (Δd is a difference on the same pairs) and two families' mean DES differ on
the same pairs too. Clean test images are resampled the same way for clean accuracy and Δt, the
models of one dataset and clean-image count on the same images.

Each resample of ``n`` units is a vector of multiplicities drawn from a generator seeded by the
units' name and ``n`` (:func:`resampled_sums`): the same name gives the same resamples in every
call, so the intervals are deterministic and independent of the order of the lines. The per-unit
sums (successes per image, correct predictions per clean image) are computed once; a resample is
then a matrix product, and every statistic a ratio of resampled sums (:func:`resampled_ratios`).

Lines without per-example outcomes (``successes``, ``clean_correct``) get no interval; their
point estimates are unaffected. Only numpy and pandas are used here.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hrsbench.report.behaviour import des_values
from hrsbench.report.des import BASE, ETA, GROUP, BehaviourRange
from hrsbench.report.frame import model_id
from hrsbench.results.outcomes import decode_counts

#: Resamples drawn by default: enough for stable 2.5 % and 97.5 % percentiles.
REPLICATES = 2000
#: Coverage of every interval.
LEVEL = 0.95
#: Resample weights generated at once (memory bound: 6 bytes each).
_CHUNK = 4_000_000
#: The quantities each line gets an interval for (columns ``NAME_lo`` and ``NAME_hi``).
LINE_METRICS = ("defense_rate", "clean_accuracy", "delta_t", "delta_d", "des")


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn: ``replicates`` resamples, two-sided ``level``, and a ``seed``
    that, with the name of what is resampled, fixes every resample."""

    replicates: int = REPLICATES
    level: float = LEVEL
    seed: int = 0

    def bounds(self, reps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of each column of ``reps`` (replicates × columns). Resamples that
        leave the quantity undefined (NaN: no unit drawn, ∞ − ∞) are left out while they are
        rarer than 1 %; beyond that, and for a column without values, the bounds are NaN.
        Infinite replicates (a DES whose denominator a resample takes to ≤ 0) give an infinite
        bound."""
        reps = np.atleast_2d(np.asarray(reps, dtype=float).T).T
        alpha = (1.0 - self.level) / 2
        valid = (~np.isnan(reps)).sum(axis=0)
        bad = valid < 0.99 * len(reps)
        ordered = np.sort(reps, axis=0)  # NaN last
        last = np.maximum(valid - 1, 0)
        lo = np.take_along_axis(ordered, np.rint(alpha * last).astype(int)[None], axis=0)[0]
        hi = np.take_along_axis(ordered, np.rint((1 - alpha) * last).astype(int)[None],
                                axis=0)[0]
        return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def counts_of(value: Any) -> np.ndarray | None:
    """Per-example counts as an int array, from a result line's encoded string or an already
    decoded sequence; ``None`` when the line has none."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        return _decoded(value)
    return np.asarray(value, dtype=np.int64)


@functools.lru_cache(maxsize=4096)
def _decoded(text: str) -> np.ndarray:
    """A line's counts are read by the intervals, the worst case and the sanity checks: decode
    each string once (read-only, since the cache shares it)."""
    counts = decode_counts(text)
    counts.flags.writeable = False
    return counts


def _generator(boot: Bootstrap, name: str, n: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{boot.seed}/{name}/{n}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _poisson_table() -> np.ndarray:
    """Poisson(1) weight for each of 65,536 equally likely 16-bit draws (the quantile at each
    draw's midpoint): a weight then costs two random bytes and a lookup."""
    from math import exp, factorial

    cdf = np.cumsum([exp(-1.0) / factorial(k) for k in range(20)])
    u = (np.arange(65536) + 0.5) / 65536
    return np.searchsorted(cdf, u, side="right").astype(np.float32)


_POISSON = _poisson_table()


def resampled_sums(values: np.ndarray, name: str, boot: Bootstrap) -> np.ndarray:
    """Weighted column sums of ``values`` (units × columns) under each of ``boot.replicates``
    Poisson bootstrap resamples of the units: shape (replicates, columns). A unit's weight is
    its number of copies in the resample, Poisson(1) (Hanley & MacGibbon, 2006): the multinomial
    bootstrap's weights for large n, drawn at a fraction of the cost, which matters with 10,000
    clean images. The weights depend only on ``boot``, ``name`` and the number of units: two
    calls with the same name resample the same units, which is what pairs lines across calls.
    Statistics are ratios of such sums (:func:`resampled_ratios`), since the resample's size
    varies."""
    values = np.asarray(values, dtype=np.float32)
    n = values.shape[0]
    if n * boot.replicates <= _CHUNK:  # attacked images: reused by every line and budget
        return (_small_weights(boot, name, n) @ values).astype(float)
    out = np.empty((boot.replicates, values.shape[1]))
    rng = _generator(boot, name, n)
    rows = max(1, _CHUNK // max(n, 1))
    for start in range(0, boot.replicates, rows):
        b = min(rows, boot.replicates - start)
        out[start:start + b] = _weights(rng, b, n) @ values
    return out


def _weights(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    return _POISSON[np.frombuffer(rng.bytes(2 * rows * n), dtype="<u2").reshape(rows, n)]


@functools.lru_cache(maxsize=64)
def _small_weights(boot: Bootstrap, name: str, n: int) -> np.ndarray:
    """All resample weights of a few units at once (the same as the chunked draw: one chunk)."""
    weights = _weights(_generator(boot, name, n), boot.replicates, n)
    weights.flags.writeable = False
    return weights


def resampled_ratios(num: np.ndarray, den: np.ndarray, name: str, boot: Bootstrap
                     ) -> np.ndarray:
    """Per resample of the units (rows) and column, Σ num / Σ den over the resampled units:
    (replicates, columns); NaN in a resample that leaves a denominator at 0.

    Each resample's deviation from the full-sample ratio is widened by √(n / (n − 1)): the
    bootstrap's variance of a mean is (n − 1)/n of the unbiased one, which matters with the 10
    attacked images of a small cell."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    n, k = num.shape
    sums = resampled_sums(np.concatenate([num, den], axis=1), name, boot)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = num.sum(axis=0) / den.sum(axis=0)
        reps = sums[:, :k] / np.where(sums[:, k:] > 0, sums[:, k:], np.nan)
    widen = np.sqrt(n / (n - 1)) if n > 1 else 1.0
    return point + (reps - point) * widen


def resampled_means(values: np.ndarray, name: str, boot: Bootstrap) -> np.ndarray:
    """Per Poisson resample of the rows of ``values`` (units × columns), each column's mean over
    the resampled units, widened as in :func:`resampled_ratios`: (replicates, columns).

    Identical rows are resampled as one: the sum of m Poisson(1) weights is Poisson(m), so
    drawing one Poisson(m) weight per distinct row is the same bootstrap, and 10,000 clean
    images that most models classify alike collapse to a few hundred rows. The columns stay
    paired (a row is one image across all columns), but two calls resample differently unless
    their ``values`` agree, so every column to be paired goes into one call."""
    values = np.asarray(values, dtype=float)
    n = values.shape[0]
    rows, counts = np.unique(values, axis=0, return_counts=True)
    rng = _generator(boot, f"{name}/distinct", n)
    weights = rng.poisson(counts.astype(float), size=(boot.replicates, len(counts)))
    total = weights.sum(axis=1, keepdims=True).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (weights @ rows) / np.where(total > 0, total, np.nan)
    widen = np.sqrt(n / (n - 1)) if n > 1 else 1.0
    point = values.mean(axis=0)
    return point + (reps - point) * widen


def image_sums(counts: np.ndarray, n_images: int) -> np.ndarray | None:
    """Per attacked image, the sum of its examples' counts (an image's pairs are consecutive in
    the attacked order, :func:`hrsbench.results.outcomes.pair_index`); ``None`` when the counts
    do not split evenly into ``n_images`` images."""
    if n_images <= 0 or len(counts) % n_images:
        return None
    return counts.reshape(n_images, -1).sum(axis=1)


def _value(row: Mapping[str, Any], col: str) -> Any:
    value = row.get(col)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def attacked_images(row: Mapping[str, Any]) -> str:
    """The name of a line's attacked images: lines sharing it are resampled together."""
    return f"attacked/{row['dataset']}/{_value(row, 'n_test')}"


def clean_images(row: Mapping[str, Any]) -> str:
    return f"clean/{row['dataset']}/{_value(row, 'n_clean')}"


def _accuracy_replicates(df: pd.DataFrame, boot: Bootstrap) -> dict[Hashable, np.ndarray]:
    """Clean-accuracy resamples per model, from its clean-only line's ``clean_correct``."""
    per_name: dict[str, list[tuple[Hashable, np.ndarray]]] = {}
    seen: set[Hashable] = set()
    clean = df[df["attack"] == "none"] if "clean_correct" in df.columns else df.iloc[:0]
    for row in clean.to_dict("records"):
        counts = counts_of(row.get("clean_correct"))
        model = model_id(row)
        if counts is None or model in seen or not len(counts):
            continue
        seen.add(model)
        fraction = counts / float(row.get("repeats") or 1)
        per_name.setdefault(f"{clean_images(row)}/{len(counts)}", []).append((model, fraction))
    out: dict[Hashable, np.ndarray] = {}
    for name, items in per_name.items():
        matrix = np.stack([f for _, f in items], axis=1)
        sums = np.clip(resampled_means(matrix, name, boot), 0.0, 1.0)
        out.update({model: sums[:, j] for j, (model, _) in enumerate(items)})
    return out


def outcome_columns(row: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """Per attacked image, the line's won predictions and the predictions they count against:
    all of the image's pairs × repeats when targeted, the image's correct clean draws when not."""
    wins = counts_of(row.get("successes"))
    n_images = int(_value(row, "n_test") or 0)
    if wins is None or n_images <= 0:
        return None
    num = image_sums(wins, n_images)
    if num is None:
        return None
    if bool(row["targeted"]):
        den = np.full(n_images, len(wins) // n_images * float(row.get("repeats") or 1))
    else:
        correct = counts_of(row.get("clean_correct"))
        den = None if correct is None else image_sums(correct, n_images)
    return None if den is None else (num.astype(float), den.astype(float))


def _rate_replicates(df: pd.DataFrame, boot: Bootstrap) -> dict[int, np.ndarray]:
    """Defense-rate resamples per row position of ``df``, lines of one attacked-image set on the
    same resamples."""
    per_name: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    attacked = df[df["attack"] != "none"] if "successes" in df.columns else df.iloc[:0]
    for pos, row in zip(df.index.get_indexer(attacked.index), attacked.to_dict("records"),
                        strict=True):
        cols = outcome_columns(row)
        if cols is not None:
            per_name.setdefault(attacked_images(row), []).append((int(pos), *cols))
    out: dict[int, np.ndarray] = {}
    for name, items in per_name.items():
        num = np.stack([num for _, num, _ in items], axis=1)
        den = np.stack([den for _, _, den in items], axis=1)
        rates = np.clip(1.0 - resampled_ratios(num, den, name, boot), 0.0, 1.0)
        out.update({pos: rates[:, j] for j, (pos, _, _) in enumerate(items)})
    return out


@dataclass
class Replicates:
    """Resamples (replicates × lines) of each line's clean accuracy, defense rate, Δt, Δd and DES,
    aligned with the rows of the scored frame they were drawn for (NaN where a line lacks the
    per-example outcomes, or the quantity)."""

    scored: pd.DataFrame
    boot: Bootstrap
    eta: float
    values: dict[str, np.ndarray]
    #: Clean-accuracy resamples per model (:func:`model_id`), for the worst case over attacks.
    accuracy_by_model: dict[Hashable, np.ndarray]

    def column(self, name: str, rows: pd.Index | list[Hashable]) -> np.ndarray:
        """Resamples of ``name`` for the scored rows labelled ``rows``: (replicates, len(rows))."""
        return self.values[name][:, self.scored.index.get_indexer(rows)]


def line_replicates(
    scored: pd.DataFrame, boot: Bootstrap | None = None, eta: float = ETA
) -> Replicates:
    """Resample every line of ``scored`` (:func:`hrsbench.attach_des`'s output): defense rates on
    the attacked images, clean accuracy on the clean images, and from them, paired with the base
    line each is compared with (``base_cell_key``), Δt, Δd and DES."""
    boot = boot or Bootstrap()
    n, reps = len(scored), boot.replicates
    acc_by_model = _accuracy_replicates(scored, boot)
    nan = np.full(reps, np.nan)
    accuracy = np.stack([acc_by_model.get(model_id(r), nan) for r in scored.to_dict("records")],
                        axis=1) if n else np.empty((reps, 0))
    rate = np.full((reps, n), np.nan)
    for pos, col in _rate_replicates(scored, boot).items():
        rate[:, pos] = col
    base_pos = _base_positions(scored)
    delta_t = np.full((reps, n), np.nan)
    delta_d = np.full((reps, n), np.nan)
    for pos, bpos in enumerate(base_pos):
        if bpos >= 0:
            delta_t[:, pos] = accuracy[:, bpos] - accuracy[:, pos]
            delta_d[:, pos] = rate[:, pos] - rate[:, bpos]
    has_des = scored["des"].notna().to_numpy() if n else np.zeros(0, dtype=bool)
    des = np.where(has_des[None, :], des_values(delta_d, delta_t, eta), np.nan)
    values = {"defense_rate": rate, "clean_accuracy": accuracy, "delta_t": delta_t,
              "delta_d": delta_d, "des": des}
    return Replicates(scored, boot, eta, values, acc_by_model)


def _base_positions(scored: pd.DataFrame) -> list[int]:
    """Row position of each line's base line (one with its ``base_cell_key`` in the same
    setting, a deterministic base's expanded white-box copy included), −1 without one."""
    if "base_cell_key" not in scored.columns:
        return [-1] * len(scored)
    where: dict[tuple[Any, Any], int] = {}
    for pos, (key, setting) in enumerate(zip(scored["cell_key"], scored["setting"],
                                             strict=True)):
        where.setdefault((key, setting), pos)
        where.setdefault((key, None), pos)
    out = []
    for key, setting in zip(scored["base_cell_key"], scored["setting"], strict=True):
        if key is None or (isinstance(key, float) and np.isnan(key)):
            out.append(-1)
        else:
            out.append(where.get((key, setting), where.get((key, None), -1)))
    return out


def with_intervals(scored: pd.DataFrame, reps: Replicates) -> pd.DataFrame:
    """``scored`` with ``NAME_lo`` and ``NAME_hi`` for each of :data:`LINE_METRICS` (NaN where a
    line has no interval)."""
    out = scored.copy()
    for name in LINE_METRICS:
        lo, hi = reps.boot.bounds(reps.values[name]) if len(scored) else ([], [])
        out[f"{name}_lo"] = lo
        out[f"{name}_hi"] = hi
    return out


def family_points(
    scored: pd.DataFrame, behaviour: BehaviourRange | None = None, base: str = BASE
) -> dict[tuple[Any, ...], pd.DataFrame]:
    """Per family (:data:`hrsbench.report.des.GROUP` + defense), its in-range points, as
    :func:`hrsbench.family_summary` selects them (the range is applied to the point estimates
    and held fixed across resamples)."""
    behaviour = behaviour or BehaviourRange()
    points = scored[(scored["attack"] != "none") & (scored["defense"] != base)
                    & scored["delta_t"].notna() & scored["delta_d"].notna()]
    out = {}
    for key, fam in points.groupby([*GROUP, "defense"], sort=True, dropna=False):
        inside = [behaviour.contains(t, r)
                  for t, r in zip(fam["delta_t"], fam["defense_rate"], strict=True)]
        out[tuple(key)] = fam[inside]
    return out


def slope_replicates(dt: np.ndarray, dd: np.ndarray) -> np.ndarray:
    """Least-squares slope of Δd on Δt per resample (rows), over the points (columns)."""
    x = dt - dt.mean(axis=1, keepdims=True)
    y = dd - dd.mean(axis=1, keepdims=True)
    sxx = (x * x).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 0, (x * y).sum(axis=1) / sxx, np.nan)


def family_replicates(
    reps: Replicates, behaviour: BehaviourRange | None = None, base: str = BASE
) -> dict[tuple[Any, ...], dict[str, np.ndarray]]:
    """Per family, resamples of its mean DES and of its fitted slope (absent when a point lacks
    per-example outcomes, or the point estimate itself is undefined)."""
    out: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
    if not np.isfinite(reps.values["delta_d"]).any():
        return out  # no line has per-example outcomes: no family has resamples
    for key, inside in family_points(reps.scored, behaviour, base).items():
        fam: dict[str, np.ndarray] = {}
        with_des = inside[inside["des"].notna()]
        des = reps.column("des", with_des.index)
        if len(with_des) and not np.isnan(des).any():
            fam["mean_des"] = des.mean(axis=1)
            # the attacked images' share of the error: Δt held at its estimate
            dd = reps.column("delta_d", with_des.index)
            dt_point = with_des["delta_t"].to_numpy(dtype=float)[None, :]
            fam["mean_des_attacked"] = des_values(dd, dt_point, reps.eta).mean(axis=1)
        dt, dd = reps.column("delta_t", inside.index), reps.column("delta_d", inside.index)
        distinct = inside["delta_t"].astype(float).nunique() > 1
        if distinct and not (np.isnan(dt).any() or np.isnan(dd).any()):
            fam["slope"] = slope_replicates(dt, dd)
        out[key] = fam
    return out


def summary_intervals(
    summary: pd.DataFrame, reps: Replicates, behaviour: BehaviourRange | None = None,
    base: str = BASE, fams: dict[tuple[Any, ...], dict[str, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """:func:`hrsbench.family_summary`'s table with ``mean_des_lo/hi``, ``slope_lo/hi`` and a
    ``rank`` with its range over the resamples (:func:`family_ranks`), per comparison group
    (``fams``: the :func:`family_replicates` of ``reps``, when already computed)."""
    fams = family_replicates(reps, behaviour, base) if fams is None else fams
    out = summary.copy()
    keys = [_family_key(row) for row in summary[[*GROUP, "defense"]].to_dict("records")]
    absent = np.full(reps.boot.replicates, np.nan)  # a NaN column has NaN bounds
    for name in ("mean_des", "slope"):
        columns = [fams.get(key, {}).get(name, absent) for key in keys]
        lo, hi = (reps.boot.bounds(np.stack(columns, axis=1)) if columns
                  else (np.empty(0), np.empty(0)))
        out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
    out["rank"] = ""
    for _, group in out.groupby(list(GROUP), sort=False, dropna=False):
        ranked = family_ranks(group, fams, reps.boot)
        out.loc[group.index, "rank"] = [ranked[d] for d in group["defense"]]
    order = out.assign(_rank=out["rank"].map(rank_number))
    order = order.sort_values([*GROUP, "_rank"], kind="stable", na_position="last")
    return out.loc[order.index].reset_index(drop=True)


def rank_number(rank: Any) -> float:
    """The place of a rank as the tables write it (``"2 (1–4)"`` and ``"2= (1–4)"`` → 2); no
    rank is ∞ (listed last)."""
    text = rank.split(" ")[0].rstrip("=") if isinstance(rank, str) else ""
    return float(text) if text.isdigit() else math.inf


def _family_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in (*GROUP, "defense"))


@dataclass(frozen=True)
class Comparison:
    """Two families' mean-DES difference (``better`` − ``worse`` by point estimate) and its
    interval; ``resolved`` when the interval excludes 0."""

    better: str
    worse: str
    difference: float
    lo: float
    hi: float
    #: The interval with only the attacked images resampled (Δt held at its estimate): the part
    #: of the error more attacked images shrink. ``None`` when not computed.
    attacked_lo: float | None = None
    attacked_hi: float | None = None

    @property
    def resolved(self) -> bool:
        return self.lo > 0 or self.hi < 0


def pairwise(items: list[tuple[str, float, np.ndarray]], boot: Bootstrap,
             attacked: Mapping[str, np.ndarray] | None = None) -> list[Comparison]:
    """Every pair of ``(name, estimate, resamples)`` items, higher estimate first, with the
    interval of their difference (the resamples of all items drawn on the same units); with
    ``attacked`` (resamples per name over the attacked images only), that part's interval too."""
    items = sorted(items, key=lambda h: -float(h[1]))
    attacked = attacked or {}
    out = []
    for i, (a, pa, ra) in enumerate(items):
        for b, pb, rb in items[i + 1:]:
            lo, hi = _difference_bounds(ra, rb, boot)
            part: tuple[float | None, float | None] = (None, None)
            if str(a) in attacked and str(b) in attacked:
                part = _difference_bounds(attacked[str(a)], attacked[str(b)], boot)
            out.append(Comparison(str(a), str(b), float(pa - pb), lo, hi, *part))
    return out


def _difference_bounds(ra: np.ndarray, rb: np.ndarray, boot: Bootstrap) -> tuple[float, float]:
    with np.errstate(invalid="ignore"):
        diff = ra - rb
    lo, hi = boot.bounds(diff[:, None])
    return float(lo[0]), float(hi[0])


def rank_ranges(items: list[tuple[str, float, np.ndarray | None]], boot: Bootstrap
                ) -> dict[str, str]:
    """Rank of each ``(name, estimate, resamples)`` item, highest estimate first, as the tables
    print it: the place of its estimate (1 + the number of items with a higher one; items with
    equal estimates share a place, marked ``=``) and, where every item has resamples, the
    range of its place over them at the bootstrap's level, each resample placing the items on
    their resampled values the same way: ``"2 (1–4)"``. An imprecise item's place varies from
    resample to resample, so its range is wide, where a verdict on pairs ("not resolved from the
    next") would place it as high as a precise one. Without resamples for every item, the place
    alone."""
    if not items:
        return {}
    names = [str(name) for name, _, _ in items]
    estimates = np.array([float(e) for _, e, _ in items])
    places = 1 + (estimates[None, :] > estimates[:, None]).sum(axis=1)
    shared = np.bincount(places)
    text = {name: f"{p}=" if shared[p] > 1 else str(p)
            for name, p in zip(names, places, strict=True)}
    resamples = [r for _, _, r in items]
    if any(r is None for r in resamples):
        return text
    values = np.stack([np.asarray(r, dtype=float) for r in resamples], axis=1)  # R × items
    higher = (values[:, None, :] > values[:, :, None]).sum(axis=2)  # per item: how many above
    lo, hi = boot.bounds(np.where(np.isnan(values), np.nan, 1.0 + higher))
    return {name: f"{text[name]} ({_span(lo[j], hi[j])})" for j, name in enumerate(names)}


def _span(lo: float, hi: float) -> str:
    if np.isnan(lo) or np.isnan(hi):
        return "range undefined"
    return f"{int(lo)}–{int(hi)}"


def _family_items(group: pd.DataFrame, fams: dict[tuple[Any, ...], dict[str, np.ndarray]]
                  ) -> list[tuple[str, float, np.ndarray | None]]:
    keyed = group[[*GROUP, "defense", "mean_des"]] if "mean_des" in group else group.iloc[:0]
    return [(row["defense"], float(row["mean_des"]),
             fams.get(_family_key(row), {}).get("mean_des"))
            for row in keyed.to_dict("records") if pd.notna(row["mean_des"])]


def comparisons(
    group: pd.DataFrame, fams: dict[tuple[Any, ...], dict[str, np.ndarray]], boot: Bootstrap
) -> list[Comparison]:
    """Every pair of families of one comparison group that both have mean-DES resamples, in
    the group's ranking order; the difference is resampled on the same pairs."""
    items = [h for h in _family_items(group, fams) if h[2] is not None]
    keyed = group[[*GROUP, "defense"]].to_dict("records") if len(group) else []
    attacked = {row["defense"]: fams[_family_key(row)]["mean_des_attacked"] for row in keyed
                if "mean_des_attacked" in fams.get(_family_key(row), {})}
    return pairwise(items, boot, attacked)  # type: ignore[arg-type]


def family_ranks(
    group: pd.DataFrame, fams: dict[tuple[Any, ...], dict[str, np.ndarray]], boot: Bootstrap
) -> dict[Any, str]:
    """Rank of each family in one comparison group by mean DES, with its range over the
    resamples (:func:`rank_ranges`); families without a mean DES get no rank."""
    out = rank_ranges(_family_items(group, fams), boot)
    return {d: out.get(d, "") for d in group["defense"]}


def resolution_sentence(
    group: pd.DataFrame, fams: dict[tuple[Any, ...], dict[str, np.ndarray]], boot: Bootstrap,
    n_images: int | None,
) -> str:
    """Which orderings of mean DES one comparison group resolves at the interval's level, and
    for each one it does not, a projection of the attacked images at which it would be
    resolved about half the time (:func:`images_to_resolve`: only the attacked images' share
    of the error shrinks with more of them; the clean-image error in Δt stays), or that no
    number would. Training-seed variation is not in these intervals unless the lines pool
    several seeds."""
    pairs = comparisons(group, fams, boot)
    if not pairs:
        ranked = int(group["mean_des"].notna().sum())
        return ("No ordering is checked: without per-example outcomes the families have no "
                "intervals, and their ranks follow the estimates." if ranked > 1 else "")
    pct = f"{boot.level * 100:g} %"
    done = [f"{c.better} > {c.worse}" for c in pairs if c.resolved]
    open_ = [c for c in pairs if not c.resolved]
    parts = []
    if done:
        parts.append(f"Resolved at {pct}: " + ", ".join(done) + ".")
    if open_:
        parts.append(f"Not resolved at {pct}: " + "; ".join(
            _unresolved(c, n_images) for c in open_) + ".")
    return " ".join(parts)


def _unresolved(c: Comparison, n_images: int | None) -> str:
    if np.isnan(c.lo) or np.isnan(c.hi):
        return (f"{c.better} vs {c.worse} (difference {c.difference:.2f}, interval unbounded: "
                "some resamples bring Δt + η to ≤ 0)")
    text = (f"{c.better} vs {c.worse} (difference {c.difference:.2f} "
            f"[{_fmt(c.lo)}, {_fmt(c.hi)}]")
    need = images_to_resolve(c, n_images)
    if need == NEVER:
        text += ("; more attacked images alone would not resolve it: Δt's clean-image error "
                 "is wider than the difference")
    elif need is not None:
        text += f"; projection: about {need:,} attacked images, even odds of resolving it"
    return text + ")"


#: :func:`images_to_resolve`'s answer when more attacked images cannot resolve a difference.
NEVER = -1


def images_to_resolve(c: Comparison, n_images: int | None) -> int | None:
    """Attacked images at which the interval's half-width would fall below the difference;
    ``None`` when it cannot be said (no difference, an unbounded interval), :data:`NEVER` when
    no number would do. A projection, not a promise: the difference estimated at the larger
    number is as likely to come out smaller as larger, so at that number its interval excludes
    0 about half the time (about 50 % power).

    The half-width is the distance from the estimate to the bound on zero's side (intervals of
    DES are skewed). Only the attacked images' share of it scales as 1/√n. With the interval
    over the attacked images alone (``attacked_lo/hi``), the squared half-widths are split into
    that share and the rest (the clean images' error in Δt, independent of it), and the rest
    is held: n = n₀ · h_a² / (d² − h_c²), or never when h_c ≥ |d|. Without it the whole
    half-width is scaled, which overstates what more attacked images achieve."""
    d = c.difference
    if not n_images or d == 0:
        return None
    half = d - c.lo if d > 0 else c.hi - d
    if not np.isfinite(half):
        return None
    d2 = d ** 2
    if c.attacked_lo is None or c.attacked_hi is None:
        return max(int(np.ceil(n_images * half ** 2 / d2)), n_images + 1)
    part = d - c.attacked_lo if d > 0 else c.attacked_hi - d
    if not np.isfinite(part):
        return None
    rest = max(half ** 2 - part ** 2, 0.0)
    if rest >= d2:
        return NEVER
    # an interval touching 0 is unresolved: the estimate is at least one more image
    return max(int(np.ceil(n_images * part ** 2 / (d2 - rest))), n_images + 1)


def _fmt(x: float) -> str:
    if np.isnan(x):
        return "–"
    if np.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.2f}"


def paired_difference(
    higher: dict[str, Any] | pd.Series, lower: dict[str, Any] | pd.Series,
    boot: Bootstrap | None = None,
) -> tuple[float, float] | None:
    """Interval of the success-rate difference ``higher − lower`` of two attack lines on the
    same attacked images, resampled on the same images; ``None`` unless both lines carry
    per-example outcomes on the same images."""
    boot = boot or Bootstrap()
    a, b = pd.Series(dict(higher)), pd.Series(dict(lower))
    cols = [outcome_columns(a), outcome_columns(b)]
    if None in cols or attacked_images(a) != attacked_images(b):
        return None
    (na, da), (nb, db) = cols  # type: ignore[misc]
    if len(na) != len(nb):
        return None
    asr = resampled_ratios(np.stack([na, nb], axis=1), np.stack([da, db], axis=1),
                           attacked_images(a), boot)
    lo, hi = boot.bounds((asr[:, 0] - asr[:, 1])[:, None])
    return float(lo[0]), float(hi[0])
