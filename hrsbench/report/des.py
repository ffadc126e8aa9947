"""Defense Efficiency Score (paper section 4, footnote 2): defense-rate gain per test-accuracy
drop, both measured against the undefended base model under the same threat.

``DES = Δd / (Δt + η)`` where ``Δd`` is the defense rate of a defended model minus that of the
base model under the same attack, and ``Δt`` is the base model's clean accuracy minus the
defended model's. ``η`` (0.002 in the paper) keeps the score finite when a defense costs almost
no accuracy, where training noise can even make ``Δt`` slightly negative.

Everything here works on the DataFrame of result lines (:func:`hrsbench.load_results`), so a
leaderboard, a plot and a notebook all compute the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hrsbench.errors import HrsbenchError

#: The paper's offset (footnote 2), in accuracy units (fractions, like every rate here).
ETA = 0.002
#: The defense whose lines are the reference for Δt and Δd.
BASE = "base"
#: The threat a defense rate was measured under: a base line must share all of it.
THREAT = ("dataset", "attack", "attack_params_key", "attack_strength", "targeted", "setting")
#: The evaluation a line was measured on: a base line must share it too, or Δt and Δd would
#: compare different test images (n_test, n_clean) or differently seeded models (seed).
EVALUATION = ("n_test", "n_clean", "seed")
#: Columns grouping lines into one comparison (one leaderboard table, one DES scatter).
GROUP = ("dataset", "attack", "attack_params_key", "attack_strength", "setting", "targeted")
#: Optional columns older or hand-made lines may lack; they read as missing (None).
OPTIONAL = ("n_test", "n_clean", "n_train", "epochs", "cell_key", "finished_at", "defense_rate",
            "attack_success_rate_std", "clean_accuracy_std", "attack_params")


def canonical(value: Any) -> str:
    """A parameter dict as a stable string: dicts are unhashable, so grouping and matching use
    this instead, and two dicts with the same items in another order compare equal."""
    return json.dumps(value if value is not None else {}, sort_keys=True, default=str)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` with every optional column present, hashable parameter keys, and the
    defense rate filled in from the attack success rate where a line lacks it."""
    df = df.copy()
    if df.empty:
        df = pd.DataFrame(columns=["dataset", "defense", "params", "attack", "attack_strength",
                                   "setting", "targeted", "clean_accuracy",
                                   "attack_success_rate", "seed"])
    for col in OPTIONAL:
        if col not in df.columns:
            df[col] = None
    df = df.astype({c: object for c in OPTIONAL})
    df["params_key"] = df["params"].map(canonical)
    df["attack_params_key"] = df["attack_params"].map(canonical)
    asr = df["attack_success_rate"]
    rate = df["defense_rate"]
    df["defense_rate"] = [
        (None if _missing(a) else 1.0 - a) if _missing(r) else r
        for r, a in zip(rate, asr, strict=True)
    ]
    if "via_whitebox" not in df.columns:
        df["via_whitebox"] = False
    return df.reset_index(drop=True)


def _declared_stochastic(df: pd.DataFrame, name: str) -> bool | None:
    """Whether defense ``name`` is stochastic, as its lines record it (a ``stochastic`` field) or
    else as its installed plugin declares it; ``None`` when neither says."""
    if "stochastic" in df.columns:
        values = {bool(v) for v in df.loc[df["defense"] == name, "stochastic"] if not _missing(v)}
        if len(values) == 1:
            return values.pop()
    from hrsbench.plugins import registry

    try:
        return bool(registry().get("defense", name).stochastic)
    except HrsbenchError:  # not installed here (a leaderboard of someone else's plugin's runs)
        return None


def deterministic_defenses(df: pd.DataFrame) -> set[str]:
    """Defenses whose white-box line also stands for the other attack settings.

    The runner writes only white-box lines for a deterministic defense, since EOT, fixed
    randomness and expectation attacks are the white-box attack on such a model. A defense is
    taken as deterministic when its lines or its installed plugin say so, and failing both, when
    all its attack lines are white-box ones.
    """
    attacked = df[df["attack"] != "none"]
    settings = attacked.groupby("defense")["setting"].agg(set)
    out = set()
    for name, present in settings.items():
        stochastic = _declared_stochastic(df, str(name))
        if stochastic is False or (stochastic is None and present == {"whitebox"}):
            out.add(name)
    return out


def expand_settings(df: pd.DataFrame) -> pd.DataFrame:
    """Add, for every white-box line of a deterministic defense, a copy under each other setting
    that other defenses were attacked in (same dataset, attack, attack params and targeting),
    marked ``via_whitebox``: the comparison tables, the base matching and Figure 4 then see
    every defense in every setting, as the paper's figures do."""
    df = prepare(df)
    attacked = df[df["attack"] != "none"]
    det = deterministic_defenses(df)
    if not det or attacked.empty:
        return df
    scope = ["dataset", "attack", "attack_params_key", "targeted"]
    settings = attacked.groupby(scope)["setting"].agg(set)
    identity = [*scope, "defense", "params_key", "attack_strength", "setting", *EVALUATION,
                "n_train", "epochs"]
    existing = {_key(r, identity) for _, r in attacked.iterrows()}
    copies = []
    for key, present in settings.items():
        others = sorted(present - {"whitebox"})
        if not others:
            continue
        mask = (attacked["defense"].isin(det)) & (attacked["setting"] == "whitebox")
        for col, val in zip(scope, key, strict=True):
            mask &= attacked[col] == val
        for setting in others:
            extra = attacked[mask].copy()
            extra["setting"] = setting
            extra["via_whitebox"] = True
            fresh = [_key(r, identity) not in existing for _, r in extra.iterrows()]
            copies.append(extra[fresh])
    if not copies:
        return df
    return pd.concat([df, *copies], ignore_index=True)


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
    if _missing(x):
        return lo is None and hi is None
    return (lo is None or x >= lo) and (hi is None or x <= hi)


def des_score(delta_d: float, delta_t: float, eta: float = ETA) -> float | None:
    """``Δd / (Δt + η)``; ``None`` when ``Δt + η ≤ 0`` (a defense more accurate than the base
    by η or more), where the ratio would flip sign or divide by zero instead of rewarding it."""
    denom = delta_t + eta
    if denom <= 0:
        return None
    return delta_d / denom


def _base_choice(line: pd.Series, candidates: pd.DataFrame) -> pd.Series:
    """Among base lines matching a line, the one trained like it (same n_train and epochs),
    then the most recent, then by cell key: a deterministic pick whatever the file order."""
    same_training = [
        int(_same(c["n_train"], line["n_train"]) and _same(c["epochs"], line["epochs"]))
        for _, c in candidates.iterrows()
    ]
    ranked = candidates.assign(
        _same=same_training,
        _at=candidates["finished_at"].map(lambda v: "" if _missing(v) else str(v)),
        _key=candidates["cell_key"].map(lambda v: "" if _missing(v) else str(v)),
    ).sort_values(["_same", "_at", "_key"], ascending=False, kind="stable")
    return ranked.iloc[0]


def _same(a: Any, b: Any) -> bool:
    return (_missing(a) and _missing(b)) or a == b


def _key(row: pd.Series, cols: Iterable[str]) -> tuple[Any, ...]:
    return tuple(None if _missing(row[c]) else row[c] for c in cols)


def attach_des(df: pd.DataFrame, base: str = BASE, eta: float = ETA) -> pd.DataFrame:
    """Result lines (settings expanded, see :func:`expand_settings`) with the base line each is
    compared against and ``delta_t``, ``delta_d``, ``des``; ``des_note`` says why a line has no
    DES. A base line matches on the threat (:data:`THREAT`) and the evaluation
    (:data:`EVALUATION`); clean-only lines (attack "none") match the base's clean-only line and
    get Δt only."""
    df = expand_settings(df)
    bases = df[df["defense"] == base]
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for i, row in bases.iterrows():
        by_key.setdefault(_key(row, THREAT + EVALUATION), []).append(i)
    evaluations = {_key(row, ("dataset",) + EVALUATION) for _, row in bases.iterrows()}

    out: dict[str, list[Any]] = {k: [] for k in (
        "base_cell_key", "base_clean_accuracy", "base_defense_rate", "delta_t", "delta_d", "des",
        "des_note")}
    chosen: dict[tuple[Any, ...], pd.Series] = {}  # one choice per base key and training
    for i, line in df.iterrows():
        key = _key(line, THREAT + EVALUATION)
        found = by_key.get(key, [])
        if line["defense"] == base and i in found:
            ref = line  # a base line is its own reference, whatever other base lines exist
        elif found:
            memo = (key, *_key(line, ("n_train", "epochs")))
            if memo not in chosen:
                chosen[memo] = _base_choice(line, df.loc[found])
            ref = chosen[memo]
        else:
            ref = None
        row = _compare(line, ref, base, eta, evaluations)
        for k, v in row.items():
            out[k].append(v)
    return df.assign(**out)


def _compare(
    line: pd.Series, ref: pd.Series | None, base: str, eta: float,
    evaluations: set[tuple[Any, ...]],
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "base_cell_key": None, "base_clean_accuracy": None, "base_defense_rate": None,
        "delta_t": None, "delta_d": None, "des": None, "des_note": None,
    }
    if ref is None:
        if _key(line, ("dataset",) + EVALUATION) not in evaluations:
            result["des_note"] = (f"no {base!r} line with the same dataset, n_test, n_clean and "
                                  "seed")
        elif line["attack"] == "none":
            result["des_note"] = f"no clean-only {base!r} line"
        else:
            result["des_note"] = (f"{base!r} was not attacked with {line['attack']} "
                                  f"ε={line['attack_strength']:g} ({line['setting']})")
        return result
    result["base_cell_key"] = ref["cell_key"]
    result["base_clean_accuracy"] = ref["clean_accuracy"]
    result["delta_t"] = ref["clean_accuracy"] - line["clean_accuracy"]
    if line["attack"] == "none":
        result["des_note"] = "clean-only line"
        return result
    result["base_defense_rate"] = ref["defense_rate"]
    if _missing(line["defense_rate"]) or _missing(ref["defense_rate"]):
        result["des_note"] = "no defense rate"
        return result
    result["delta_d"] = line["defense_rate"] - ref["defense_rate"]
    if line["defense"] == base:
        result["des_note"] = "the base model itself"
        return result
    score = des_score(result["delta_d"], result["delta_t"], eta)
    if score is None:
        result["des_note"] = f"Δt + η ≤ 0 (more accurate than {base!r} by at least η)"
    result["des"] = score
    return result


def fit_line(x: Iterable[float], y: Iterable[float]) -> tuple[float, float] | None:
    """Least-squares ``y = slope·x + intercept`` (Figure 2's solid lines); ``None`` with fewer
    than two distinct x values, where no line is determined."""
    xs = np.asarray(list(x), dtype=float)
    ys = np.asarray(list(y), dtype=float)
    if len(xs) < 2:
        return None
    dx = xs - xs.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0:
        return None
    slope = float(dx @ (ys - ys.mean())) / sxx
    return slope, float(ys.mean() - slope * xs.mean())


SUMMARY_COLUMNS = (*GROUP, "defense", "n_points", "n_des", "mean_des", "std_des", "slope",
                   "intercept", "delta_t_min", "delta_t_max", "rate_min", "rate_max")


def family_summary(
    scored: pd.DataFrame, behaviour: BehaviourRange | None = None, base: str = BASE
) -> pd.DataFrame:
    """Per comparison group and defense family (all parameter sets of one defense, i.e. its
    strength sweep): how many points fall in the behaviour range, the mean and sample standard
    deviation of their DES, and the least-squares line of Δd against Δt through them.

    ``scored`` is :func:`attach_des`'s output. The fit uses every in-range point with Δt and Δd;
    the mean uses those that also have a DES (see :func:`des_score`), so ``n_des`` may be below
    ``n_points``. Rows are ranked by mean DES within each group, families without one last.
    """
    behaviour = behaviour or BehaviourRange()
    points = scored[(scored["attack"] != "none") & (scored["defense"] != base)
                    & scored["delta_t"].notna() & scored["delta_d"].notna()]
    rows = []
    for key, fam in points.groupby([*GROUP, "defense"], sort=True, dropna=False):
        inside = fam[[behaviour.contains(t, r)
                      for t, r in zip(fam["delta_t"], fam["defense_rate"], strict=True)]]
        scores = inside["des"].dropna().astype(float)
        fit = fit_line(inside["delta_t"], inside["delta_d"])
        rows.append({
            **dict(zip((*GROUP, "defense"), key, strict=True)),
            "n_points": len(inside),
            "n_des": len(scores),
            "mean_des": float(scores.mean()) if len(scores) else None,
            "std_des": float(scores.std(ddof=1)) if len(scores) > 1 else None,
            "slope": fit[0] if fit else None,
            "intercept": fit[1] if fit else None,
            "delta_t_min": float(inside["delta_t"].min()) if len(inside) else None,
            "delta_t_max": float(inside["delta_t"].max()) if len(inside) else None,
            "rate_min": float(inside["defense_rate"].min()) if len(inside) else None,
            "rate_max": float(inside["defense_rate"].max()) if len(inside) else None,
        })
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    if summary.empty:
        return summary
    numeric = [c for c in SUMMARY_COLUMNS[len(GROUP) + 1:]]
    summary[numeric] = summary[numeric].apply(pd.to_numeric)
    summary["_has"] = summary["mean_des"].notna()
    summary = summary.sort_values(
        [*GROUP, "_has", "mean_des", "defense"],
        ascending=[True] * len(GROUP) + [False, False, True], kind="stable",
    )
    return summary.drop(columns="_has").reset_index(drop=True)


def varying_keys(dicts: Iterable[dict[str, Any] | None]) -> list[str]:
    """Keys whose values differ across ``dicts``: what tells configurations apart in a label,
    where the shared ones (a batch size, a default) would only add noise."""
    dicts = [d or {} for d in dicts]
    keys = sorted({k for d in dicts for k in d})
    return [k for k in keys if len({canonical(d.get(k)) for d in dicts}) > 1]


def variant_labels(df: pd.DataFrame) -> pd.Series:
    """A short name for each line's defense configuration: the defense name plus the parameters
    that vary within that defense in ``df`` (a sweep's strength, usually), e.g.
    ``dropout test_rate=0.3``."""
    varying = {name: varying_keys(fam["params"]) for name, fam in df.groupby("defense")}
    labels = []
    for name, params in zip(df["defense"], df["params"], strict=True):
        shown = " ".join(f"{k}={(params or {}).get(k)}" for k in varying[name])
        labels.append(f"{name} {shown}".strip())
    return pd.Series(labels, index=df.index, dtype=object)
