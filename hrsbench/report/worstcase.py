"""The worst case over attacks: per model and threat budget, each attacked example counted as
broken by the attack × setting that breaks it best, as AutoAttack reports robustness.

A threat budget is the dataset, ε (the strength of attacks whose strength parameter is ``eps``),
targeting and the attacked images; every attack line of a model within one budget competes.

**Picked on some draws, scored on others, never weaker than one line.** Taking, per example,
the largest success frequency over lines measured on the same prediction draws is biased
upwards on a stochastic defense: with eight lines of one and the same attack the maximum of
eight noisy frequencies exceeds their common mean. Each attack line therefore stores its wins on
the first ``repeats // 2`` draws (``successes_pick``) beside those on all draws (``successes``).
For each example the line winning most picking draws is scored on the other draws, and the line
winning most of those other draws is scored on the picking draws; the two scores add up to the
example's worst-case success over all draws (a cross-fit, :func:`cross_fit`). With 2 picking
draws most examples tie between several lines; a tie goes to the line strongest over all
examples on the same draws, not to the mean of the tied lines, which weak lines would pull
down. A noisy pick can only lower the estimate, so the worst case is floored at its strongest
single line (:func:`worst_rate`): a real attack, never weaker than any line it is made of, per
resample as well as at the point. A model whose lines record ``stochastic: false`` predicts the
same on every draw, so its per-example maximum is exact, also with one draw. docs/des.md gives
both biases as a simulation measures them (``benchmarks/worstcase_bias.py``).

Worst-case rates get intervals from the same resamples as the lines (:mod:`hrsbench.report.stats`),
paired with the base model's worst case in the same budget; the **adaptive DES** is
Δd / (Δt + η) with Δd the difference of worst-case defense rates over all settings, the
**white-box DES** the same over non-adaptive white-box lines only (:func:`_whitebox`).

**Several training seeds.** Asked to pool, models that differ only in their training seed become
one row per configuration and budget, pooled as :mod:`.seeds` pools lines: rates, Δt and Δd are
means over seeds, each seed against the base model of the same seed, the DES is
``mean Δd / (mean Δt + η)``, and the resamples are the mean of the seeds' image resamples plus
the seed part drawn by the lines' own :class:`~hrsbench.report.seeds.SeedDraws`, so that a
headline row and the lines stay paired over seeds.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

from hrsbench.report.behaviour import des_score, des_values
from hrsbench.report.des import BASE, ETA
from hrsbench.report.frame import adaptive, missing, model_id
from hrsbench.report.seeds import SeedDraws, seed_draws
from hrsbench.report.stats import (
    Bootstrap,
    Replicates,
    attacked_images,
    counts_of,
    rank_ranges,
    resampled_ratios,
)

#: Columns, besides the model, that make one threat budget.
BUDGET = ("dataset", "attack_strength", "targeted", "n_test", "n_clean", "seed")
#: The columns of the lines the worst case reads.
_USED = frozenset((*BUDGET, "model_key", "defense", "params", "params_key", "n_train", "epochs",
                   "cell_key", "attack", "setting", "repeats", "stochastic", "clean_accuracy",
                   "defense_rate", "successes", "successes_pick", "clean_correct", "attack_params"))
#: Columns of :func:`worst_case`'s table.
COLUMNS = (
    "dataset", "defense", "params", "model", "attack_strength", "targeted", "n_test", "n_lines",
    "clean_accuracy", "delta_t", "worst_defense_rate", "worst_defense_rate_lo",
    "worst_defense_rate_hi", "whitebox_defense_rate", "whitebox_defense_rate_lo",
    "whitebox_defense_rate_hi", "adaptive_des", "adaptive_des_lo", "adaptive_des_hi",
    "whitebox_des", "whitebox_des_lo", "whitebox_des_hi", "strongest", "des_note", "rank",
    "saturated",
)
#: Columns a pooled table adds (:func:`worst_case` with ``pool``), as pooled lines do.
SEED_COLUMNS = ("n_seeds", "seed", "clean_accuracy_seed_min", "clean_accuracy_seed_max")
#: Where a model's key (:func:`_groups`) holds its seed: the model, then :data:`BUDGET`.
_SEED_AT = 1 + BUDGET.index("seed")


def cross_fit(successes: np.ndarray, picks: np.ndarray, repeats: int) -> np.ndarray:
    """Per example, the worst case's success frequency over the lines (rows of the K × n count
    arrays), picked on one half of the draws and scored on the other, both ways round
    (:func:`_score_of_pick`); the two scores add up over all draws, each draw counted once, so
    that one line, or lines that agree, get their own rate. The scoring draws take no part in
    the pick, so a noisy pick can lower the estimate but never inflate it."""
    if repeats // 2 < 1:
        raise ValueError("a cross-fitted worst case needs at least 2 prediction draws")
    rest = successes - picks
    return (_score_of_pick(picks, rest) + _score_of_pick(rest, picks)) / repeats


def _score_of_pick(choose: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per column (example), ``score`` of the row (line) that wins most of ``choose``'s draws.

    With 2 or 3 choosing draws most examples tie between several lines. A tie goes to the line
    winning most choosing draws over all examples: the strongest line overall is the best guess
    where an example's own draws cannot tell, whereas averaging the tied lines would let weak
    ones (FGSM beside APGD) pull the estimate below the strongest single line. Lines tied on
    both counts are scored by their mean, so the result does not depend on the order of the
    lines. Only ``choose`` decides: ``score`` stays independent of the pick."""
    total = choose.sum(axis=1, keepdims=True)
    tied = choose == choose.max(axis=0, keepdims=True)
    strength = np.where(tied, total, -1)
    top = tied & (strength == strength.max(axis=0, keepdims=True))
    return (score * top).sum(axis=0) / top.sum(axis=0)


def naive_maximum(successes: np.ndarray, repeats: int) -> np.ndarray:
    """Per example, the largest success frequency over lines on the same draws: exact for a
    deterministic model, biased upwards for a stochastic one (compare :func:`cross_fit`)."""
    return successes.max(axis=0) / repeats


@dataclass(frozen=True)
class Budget:
    """One model's attack lines in one threat budget, with their per-example counts."""

    lines: pd.DataFrame
    successes: np.ndarray  # K × n
    picks: np.ndarray | None  # K × n, None when a line lacks the picking half
    repeats: int
    deterministic: bool
    #: Per line and example (K × n), the share of correct clean draws: an untargeted rate's
    #: denominator; None for a targeted budget, whose examples all count.
    correct: np.ndarray | None

    def scores(self) -> np.ndarray | None:
        """Per-example worst-case success frequency; None when it cannot be estimated without
        bias (a stochastic model with one draw or without the picking half)."""
        if self.deterministic:
            return naive_maximum(self.successes, self.repeats)
        if self.picks is None or self.repeats < 2:
            return None
        return cross_fit(self.successes, self.picks, self.repeats)

    def strongest(self) -> str:
        """The attack × setting that attains an example's highest success most often (credit
        shared among ties; examples no line broke do not count)."""
        best = self.successes.max(axis=0)
        hit = (self.successes == best[None]) & (best[None] > 0)
        credit = (hit / np.maximum(hit.sum(axis=0), 1)).sum(axis=1)
        if not credit.any():
            return ""
        labels = [f"{a} ({s})" for a, s in zip(self.lines["attack"], self.lines["setting"],
                                                strict=True)]
        totals: dict[str, float] = {}
        for label, c in zip(labels, credit, strict=True):
            totals[label] = totals.get(label, 0.0) + float(c)
        return max(sorted(totals), key=lambda k: totals[k])


def _eps_lines(df: pd.DataFrame) -> pd.DataFrame:
    """Evasion attack lines whose strength is an ε, one per cell (no expanded copies)."""
    keep = df["attack"] != "none"
    if "kind" in df.columns:
        keep &= df["kind"].isin(["evasion", "attack"]) | df["kind"].isna()
    if "attack_strength_param" in df.columns:
        param = df["attack_strength_param"]
        keep &= param.isna() | (param == "eps")
    if "via_whitebox" in df.columns:
        keep &= ~df["via_whitebox"].fillna(False).astype(bool)
    out = df[keep]
    if "cell_key" in out.columns:
        out = out[~out["cell_key"].duplicated() | out["cell_key"].isna()]
    return out


def _stack(lines: pd.DataFrame, col: str) -> np.ndarray | None:
    arrays = [counts_of(v) for v in lines[col]] if col in lines.columns else [None]
    if any(a is None for a in arrays) or len({len(a) for a in arrays}) != 1:
        return None
    return np.stack(arrays)


def budget_of(lines: pd.DataFrame) -> Budget | None:
    """The lines' counts as one :class:`Budget`, or None when they lack per-example outcomes or
    disagree on the number of examples or draws."""
    if "cell_key" in lines.columns:
        lines = lines.iloc[np.argsort(lines["cell_key"].astype(str).to_numpy(), kind="stable")]
    successes = _stack(lines, "successes")
    repeats = {int(r) for r in lines["repeats"]} if "repeats" in lines else {1}
    if successes is None or len(repeats) != 1:
        return None
    r = repeats.pop()
    stochastic = lines["stochastic"] if "stochastic" in lines.columns else pd.Series([None])
    deterministic = bool((stochastic == False).all())  # noqa: E712 (None is unknown, not False)
    correct = None
    if not bool(lines["targeted"].iloc[0]):
        cc = _stack(lines, "clean_correct")
        if cc is None:
            return None
        correct = cc / r
    return Budget(lines, successes, _stack(lines, "successes_pick"), r, deterministic, correct)


@dataclass(frozen=True)
class Worst:
    """A worst-case defense rate with its resamples (None where intervals are not possible)."""

    rate: float
    reps: np.ndarray | None
    #: The single line the rate is floored at, where that line is stronger than the per-example
    #: pick (:func:`worst_rate`); "" where the pick is at least as strong.
    floor: str = ""


def worst_rate(budget: Budget, boot: Bootstrap | None) -> Worst | None:
    """Worst-case defense rate of a budget, and its resamples over the attacked images (the
    same resamples as every line on those images).

    The worst case is a real attack, so it is never weaker than its strongest single line:
    the rate is the lower of the per-example pick's (:meth:`Budget.scores`) and every line's
    own defense rate on the same examples, and each resample the lower of theirs in that
    resample, so that the interval agrees with the point. Where the floor binds it errs on the
    attack's side: the best line is chosen on the draws that score it (docs/des.md)."""
    scores = budget.scores()
    if scores is None:
        return None
    per_line = budget.successes / budget.repeats
    line_den = np.ones_like(per_line) if budget.correct is None else budget.correct
    den = line_den.mean(axis=0)
    if den.sum() <= 0:
        return Worst(float("nan"), None)
    picked = 1.0 - scores.sum() / den.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        computed = 1.0 - per_line.sum(axis=1) / line_den.sum(axis=1)
    # the lines' own rates as their tables print them (an untargeted line records the mean of
    # its per-draw rates, which may differ slightly from the pooled ratio)
    recorded = pd.to_numeric(budget.lines["defense_rate"], errors="coerce").to_numpy(dtype=float)
    line_rates = np.where(np.isnan(recorded), computed, recorded)
    best = int(np.nanargmin(line_rates)) if not np.isnan(line_rates).all() else -1
    floored = best >= 0 and line_rates[best] < picked
    rate = float(line_rates[best]) if floored else float(picked)
    floor = _label(budget.lines.iloc[best]) if floored else ""
    row = budget.lines.iloc[0]
    n_images = int(row["n_test"])
    if boot is None or len(scores) % n_images:
        return Worst(rate, None, floor)
    num = np.concatenate([scores[None], per_line]).T
    dens = np.concatenate([den[None], line_den]).T
    ratios = resampled_ratios(_per_image(num, n_images), _per_image(dens, n_images),
                              attacked_images(row), boot)
    reps = np.fmin.reduce(np.clip(1.0 - ratios, 0.0, 1.0), axis=1)
    return Worst(rate, reps, floor)


def _per_image(values: np.ndarray, n_images: int) -> np.ndarray:
    """Per attacked image, the sums of ``values`` (examples × columns) over its examples."""
    return values.reshape(n_images, -1, values.shape[1]).sum(axis=1)


def _label(line: pd.Series) -> str:
    return f"{line['attack']} ({line['setting']})"


def _groups(lines: pd.DataFrame) -> dict[tuple[Hashable, ...], pd.DataFrame]:
    models = [model_id(r) for r in lines.to_dict("records")]
    columns = [lines[c].tolist() if c in lines.columns else [None] * len(lines) for c in BUDGET]
    out: dict[tuple[Hashable, ...], list[int]] = {}
    for pos, key in enumerate(zip(models, *columns, strict=True)):
        out.setdefault(key, []).append(pos)
    return {k: lines.iloc[v] for k, v in out.items()}


def _interval(boot: Bootstrap | None, reps: np.ndarray | None) -> tuple[float, float]:
    if boot is None or reps is None:
        return float("nan"), float("nan")
    lo, hi = boot.bounds(reps[:, None])
    return float(lo[0]), float(hi[0])


def worst_case(
    df: pd.DataFrame, reps: Replicates | None = None, base: str = BASE, eta: float = ETA,
    pool: bool = False,
) -> pd.DataFrame:
    """One row per model and threat budget (:data:`COLUMNS`): the worst-case defense rate over
    all its attack lines and over its white-box lines, and the adaptive and white-box DES
    against the base model's worst case in the same budget, with intervals when ``reps``
    (:func:`hrsbench.report.stats.line_replicates`) is given and the lines carry per-example
    outcomes. With ``pool``, where some configuration was trained under several seeds, one row
    per configuration and budget instead, pooled over its seeds (:data:`SEED_COLUMNS` added), as
    :func:`hrsbench.report.seeds.pool_seeds` pools the lines."""
    boot = reps.boot if reps is not None else None
    lines = _eps_lines(df)
    lines = lines[[c for c in lines.columns if c in _USED]]  # cheaper copies per budget
    groups = _groups(lines)
    rows = [_model_row(key, group, boot) for key, group in groups.items()]
    keys = list(groups)
    _attach_des(rows, keys, reps, base, eta)
    if pool and "seed" in df.columns:
        draws = seed_draws(df, boot) if boot is not None else None
        rows, keys = _pooled_rows(rows, keys, draws, boot, base, eta)
    _rank(rows, keys, boot)
    pooled = any("n_seeds" in r for r in rows)
    table = pd.DataFrame(rows, columns=list(COLUMNS) + (list(SEED_COLUMNS) if pooled else []))
    if table.empty:
        return table
    return table.sort_values(["dataset", "attack_strength", "targeted", "n_test", "defense"],
                             kind="stable").reset_index(drop=True)


def _whitebox(lines: pd.DataFrame) -> pd.DataFrame:
    """The lines a non-adaptive evaluation would report: white-box, not adaptive (APGD with its
    own EOT is adaptive, :func:`hrsbench.report.frame.adaptive`)."""
    keep = [r["setting"] == "whitebox" and not adaptive(r) for r in lines.to_dict("records")]
    return lines[keep]


def _model_row(key: tuple[Hashable, ...], group: pd.DataFrame, boot: Bootstrap | None
               ) -> dict[str, Any]:
    """One model's row in one budget, before DES: the worst case over its lines, or without
    per-example outcomes its strongest single line."""
    budget = budget_of(group)
    if budget is None:
        found = (best_line(group), best_line(_whitebox(group)))
        row = _row(key, group, _strongest_line(group), found, boot)
        row["des_note"] = SINGLE_LINE
        return row
    white = budget_of(_whitebox(group))
    found = (worst_rate(budget, boot), worst_rate(white, boot) if white else None)
    row = _row(key, group, budget.strongest(), found, boot)
    if found[0] is not None and found[0].floor:
        row["des_note"] = f"{FLOOR} {found[0].floor}"
    return row


#: The note of a row whose worst case is its strongest single line (:func:`worst_rate`).
FLOOR = "at its strongest single line,"


#: The note of a budget whose lines lack per-example outcomes.
SINGLE_LINE = "strongest single line (no per-example outcomes: no worst case over attacks)"


def best_line(lines: pd.DataFrame) -> Worst | None:
    """Without per-example outcomes, the lowest defense rate of any one line: a lower bound on
    the worst case's strength (an upper bound on the worst-case defense rate)."""
    rates = pd.to_numeric(lines["defense_rate"], errors="coerce").dropna()
    return Worst(float(rates.min()), None) if len(rates) else None


def _strongest_line(lines: pd.DataFrame) -> str:
    rates = pd.to_numeric(lines["defense_rate"], errors="coerce")
    if rates.notna().sum() == 0:
        return ""
    row = lines.loc[rates.idxmin()]
    return f"{row['attack']} ({row['setting']})"


def _row(key: tuple[Hashable, ...], group: pd.DataFrame, strongest: str,
         found: tuple[Worst | None, Worst | None], boot: Bootstrap | None) -> dict[str, Any]:
    """A model's row; the keys with a leading underscore carry what DES and pooling over seeds
    read and the table leaves out."""
    first = group.iloc[0]
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update({
        "dataset": first["dataset"], "defense": first["defense"], "params": first.get("params"),
        "model": key[0], "attack_strength": first["attack_strength"],
        "targeted": bool(first["targeted"]), "n_test": first.get("n_test"),
        "n_lines": len(group), "clean_accuracy": first["clean_accuracy"],
        "strongest": strongest,
        "_config": tuple(None if missing(v) else v for v in (
            first["defense"], first.get("params_key", str(first.get("params"))),
            first.get("n_train"), first.get("epochs"))),
    })
    _rates(row, found, boot)
    if found[0] is None:
        row["des_note"] = "no unbiased worst case: a stochastic model needs 2+ draws per line"
    return row


def _rates(row: dict[str, Any], found: tuple[Worst | None, Worst | None],
           boot: Bootstrap | None) -> None:
    """The worst-case and white-box defense rates of a row, with their intervals."""
    row["_found"] = found
    for name, w in zip(("worst_defense_rate", "whitebox_defense_rate"), found, strict=True):
        if w is not None:
            row[name] = w.rate
            row[f"{name}_lo"], row[f"{name}_hi"] = _interval(boot, w.reps)


def _attach_des(rows: list[dict[str, Any]], keys: list[tuple[Hashable, ...]],
                reps: Replicates | None, base: str, eta: float) -> None:
    """Fill Δt, Δd and both DES of each row (``keys`` in the order of the rows) against the base
    model of its budget."""
    base_of: dict[tuple[Any, ...], int] = {}
    for i, (key, row) in enumerate(zip(keys, rows, strict=True)):
        if row["defense"] == base:
            base_of.setdefault(key[1:], i)
    for i, (key, row) in enumerate(zip(keys, rows, strict=True)):
        b = base_of.get(key[1:])
        if b is None:
            row["des_note"] = row["des_note"] or f"no {base!r} model"
        row["_note"] = row["des_note"]  # what pooled seeds share, before any Δt is known
        if b is None or b == i:
            continue
        row["delta_t"] = float(rows[b]["clean_accuracy"]) - float(row["clean_accuracy"])
        row["_delta_t_reps"] = _delta_t_reps(reps, keys[b][0], key[0])
        row["_delta_d"] = tuple(_difference(mine, theirs) for mine, theirs in
                                zip(row["_found"], rows[b]["_found"], strict=True))
        _score(row, reps.boot if reps is not None else None, base, eta)


def _difference(mine: Worst | None, theirs: Worst | None) -> Worst | None:
    """Δd of two worst cases on the same images, its resamples paired."""
    if mine is None or theirs is None:
        return None
    reps = None if mine.reps is None or theirs.reps is None else mine.reps - theirs.reps
    return Worst(mine.rate - theirs.rate, reps)


def _score(row: dict[str, Any], boot: Bootstrap | None, base: str, eta: float) -> None:
    """Both DES of a row from its Δt and Δd, with the notes that its Δt calls for."""
    if -eta < row["delta_t"] < 0:
        row["des_note"] = "; ".join(filter(None, [
            row["des_note"], f"more accurate than {base!r}: Δt + η = "
            f"{100 * (row['delta_t'] + eta):.2f} pp makes DES large"]))
    for name, delta_d in zip(("adaptive_des", "whitebox_des"), row["_delta_d"], strict=True):
        _des_cell(row, name, delta_d, row["_delta_t_reps"], eta, boot)


def _delta_t_reps(reps: Replicates | None, base_model: Hashable,
                  model: Hashable) -> np.ndarray | None:
    if reps is None:
        return None
    a, b = reps.accuracy_by_model.get(base_model), reps.accuracy_by_model.get(model)
    return None if a is None or b is None else a - b


def _des_cell(row: dict[str, Any], name: str, delta_d: Worst | None,
              dt_reps: np.ndarray | None, eta: float, boot: Bootstrap | None) -> None:
    if delta_d is None:
        return
    score = des_score(delta_d.rate, float(row["delta_t"]), eta)
    if score is None:
        if "Δt + η ≤ 0" not in (row["des_note"] or ""):
            row["des_note"] = "; ".join(filter(None, [row["des_note"], "no DES: Δt + η ≤ 0"]))
        return
    row[name] = score
    if boot is None or dt_reps is None or delta_d.reps is None:
        return
    des = des_values(delta_d.reps, dt_reps, eta)
    row[f"{name}_lo"], row[f"{name}_hi"] = _interval(boot, des)
    row[f"_{name}_reps"] = des


def _pooled_rows(rows: list[dict[str, Any]], keys: list[tuple[Hashable, ...]],
                 draws: SeedDraws | None, boot: Bootstrap | None, base: str, eta: float
                 ) -> tuple[list[dict[str, Any]], list[tuple[Hashable, ...]]]:
    """The rows (and their keys) of each configuration and budget pooled over their seeds;
    unchanged where no configuration has several, as the lines are. A pooled key's seed is
    None, so that every configuration of a budget is ranked together."""
    seeds = [_seed(k) for k in keys]
    configs: dict[tuple[Hashable, ...], list[int]] = {}
    for i, (key, row, seed) in enumerate(zip(keys, rows, seeds, strict=True)):
        alone = key[0] if seed is None else None  # no seed: nothing to pool with
        budget = (*key[1:_SEED_AT], None, *key[_SEED_AT + 1:])
        configs.setdefault((row["_config"], alone, *budget), []).append(i)
    if all(len(members) == 1 for members in configs.values()):
        return rows, keys
    out_rows, out_keys = [], []
    for (_, _, *budget), members in configs.items():
        ordered = sorted(members, key=lambda i: seeds[i] or 0)
        out_rows.append(_pooled_row([rows[i] for i in ordered], [seeds[i] for i in ordered],
                                    draws, boot, base, eta))
        out_keys.append((out_rows[-1]["model"], *budget))
    return out_rows, out_keys


def _seed(key: tuple[Hashable, ...]) -> int | None:
    """A model key's training seed (a float where the column also holds missing seeds)."""
    seed = key[_SEED_AT]
    return int(seed) if isinstance(seed, Real) and not missing(seed) else None


def _pooled_row(rows: list[dict[str, Any]], seeds: list[int | None], draws: SeedDraws | None,
                boot: Bootstrap | None, base: str, eta: float) -> dict[str, Any]:
    """One row for the seeds of a configuration in one budget (``rows`` in the order of
    ``seeds``): per-seed means, each seed against the base of the same seed, and resamples with
    the seed part added."""
    accuracy = [r["clean_accuracy"] for r in rows]
    known = not any(missing(a) for a in accuracy)
    out: dict[str, Any] = {c: None for c in COLUMNS}
    out.update({c: rows[0][c] for c in ("dataset", "defense", "params", "attack_strength",
                                        "targeted", "n_test")})
    out.update({
        "model": "+".join(str(r["model"]) for r in rows),
        "n_lines": sum(int(r["n_lines"]) for r in rows),
        "clean_accuracy": float(np.mean(accuracy)) if known else None,
        "strongest": _most_frequent([r["strongest"] for r in rows]),
        "n_seeds": len(rows), "seed": ", ".join(map(str, seeds)) if len(seeds) > 1 else seeds[0],
        "clean_accuracy_seed_min": min(accuracy) if known else None,
        "clean_accuracy_seed_max": max(accuracy) if known else None,
    })
    found = tuple(_pooled([r["_found"][j] for r in rows], seeds, draws, 0.0) for j in range(2))
    _rates(out, (found[0], found[1]), boot)
    out["des_note"] = "; ".join(dict.fromkeys(str(r["_note"]) for r in rows if r["_note"])) or None
    out["_note"] = out["des_note"]
    if not any(missing(r["delta_t"]) for r in rows):
        delta_t = _pooled([Worst(float(r["delta_t"]), r["_delta_t_reps"]) for r in rows],
                          seeds, draws, -1.0)
        assert delta_t is not None  # every seed has its Δt
        out["delta_t"], out["_delta_t_reps"] = delta_t.rate, delta_t.reps
        out["_delta_d"] = tuple(_pooled([r["_delta_d"][j] for r in rows], seeds, draws, -1.0)
                                for j in range(2))
        _score(out, boot, base, eta)
    return out


def _pooled(found: list[Worst | None], seeds: list[int | None], draws: SeedDraws | None,
            low: float) -> Worst | None:
    """The mean over seeds of a rate (or difference, down to ``low``), resampled as the mean of
    the seeds' image resamples plus the seed part; None unless every seed has one."""
    present = [w for w in found if w is not None]
    if len(present) < len(found):
        return None
    points = np.array([w.rate for w in present], dtype=float)
    rate = float(points.mean())
    reps = [w.reps for w in present if w.reps is not None]
    if draws is None or len(reps) < len(present):
        return Worst(rate, None)
    return Worst(rate, draws.mean(np.stack(reps, axis=1), points, seeds, low))


def _most_frequent(values: list[str]) -> str:
    """The strongest attack most seeds share (ties: the first in sorted order, as
    :meth:`Budget.strongest` breaks them); "" where no seed's attacks broke anything."""
    named = [v for v in values if v]
    return max(sorted(set(named)), key=named.count) if named else ""


def _rank(rows: list[dict[str, Any]], keys: list[tuple[Hashable, ...]],
          boot: Bootstrap | None) -> None:
    """Rank the models of each budget by adaptive DES, each rank with its range over the
    resamples (:func:`~hrsbench.report.stats.rank_ranges`); a saturated budget
    (:func:`saturated`) ranks nobody."""
    budgets: dict[tuple[Any, ...], list[int]] = {}
    for i, key in enumerate(keys):
        budgets.setdefault(key[1:], []).append(i)
    for members in budgets.values():
        rates = [rows[i]["worst_defense_rate"] for i in members]
        full = saturated(rates)
        for i in members:
            rows[i]["saturated"] = full
        if full:
            continue
        items = [(str(i), float(rows[i]["adaptive_des"]), rows[i].get("_adaptive_des_reps"))
                 for i in members if rows[i]["adaptive_des"] is not None]
        ranked = rank_ranges(items, boot or Bootstrap())
        for i in members:
            rows[i]["rank"] = ranked.get(str(i))


def saturated(rates: list[Any]) -> bool:
    """Whether defense rates (of every model in a budget, the base included, or of every line
    in a table) all sit at 0 % or all at 100 %: every attacked example broken, or none. Every
    DES there is 0 in every resample, and a ranking would only order equal numbers."""
    known = [float(r) for r in rates if not missing(r)]
    if not known or len(known) < len(rates):
        return False
    return all(r <= 0.0 for r in known) or all(r >= 1.0 for r in known)
