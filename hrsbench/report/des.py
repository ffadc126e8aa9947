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

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from hrsbench.report.behaviour import BASE, ETA, BehaviourRange, des_score
from hrsbench.report.frame import GROUP, MATCH, choose_base, missing, prepare, row_key
from hrsbench.report.tables import value
from hrsbench.results.record import canonical

__all__ = ["BASE", "ETA", "GROUP", "MATCH", "BehaviourRange", "attach_des", "canonical",
           "des_score", "deterministic_defenses", "expand_settings", "family_summary",
           "fit_line", "prepare", "variant_labels", "varying_keys"]

#: What a base line must share beside the threat: the note on a line without a base says so.
EVALUATION = ("dataset", "n_test", "n_clean", "seed")


def _declared_stochastic(df: pd.DataFrame, name: str) -> bool | None:
    """Whether defense ``name`` is stochastic as its lines record it (the plugin's declaration
    at run time); ``None`` when they do not say, or disagree."""
    values = {bool(v) for v in df.loc[df["defense"] == name, "stochastic"] if not missing(v)}
    return values.pop() if len(values) == 1 else None


def deterministic_defenses(df: pd.DataFrame) -> set[str]:
    """Defenses whose white-box line also stands for the other attack settings.

    The runner writes only white-box lines for a deterministic defense, since EOT, fixed
    randomness and expectation attacks are the white-box attack on such a model. A defense is
    taken as deterministic when its lines say so, and where they do not (hand-made lines), when
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
    identity = [*MATCH, "defense", "params_key", "n_train", "epochs"]
    existing = {row_key(r, identity) for r in attacked[identity].to_dict("records")}
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
            fresh = [row_key(r, identity) not in existing
                     for r in extra[identity].to_dict("records")]
            copies.append(extra[fresh])
    if not copies:
        return df
    return pd.concat([df, *copies], ignore_index=True)


def attach_des(df: pd.DataFrame, base: str = BASE, eta: float = ETA) -> pd.DataFrame:
    """Result lines (settings expanded, see :func:`expand_settings`) with the base line each is
    compared against and ``delta_t``, ``delta_d``, ``des``; ``des_note`` says why a line has no
    DES. A base line matches on the threat and the evaluation (:data:`MATCH`;
    :func:`~hrsbench.report.frame.choose_base` picks one of several); clean-only lines (attack
    "none") match the base's clean-only line and get Δt only."""
    df = expand_settings(df)
    lines = df.to_dict("records")  # rows as dicts: far faster to walk than iterrows()
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for i, row in enumerate(lines):
        if row["defense"] == base:
            by_key.setdefault(row_key(row, MATCH), []).append(i)
    evaluations = {row_key(lines[i], EVALUATION) for found in by_key.values() for i in found}

    out: dict[str, list[Any]] = {k: [] for k in (
        "base_cell_key", "base_clean_accuracy", "base_defense_rate", "delta_t", "delta_d", "des",
        "des_note")}
    chosen: dict[tuple[Any, ...], Any] = {}  # one choice per base key and training
    for i, line in enumerate(lines):
        match = row_key(line, MATCH)
        found = by_key.get(match, [])
        if line["defense"] == base and i in found:
            ref = line  # a base line is its own reference, whatever other base lines exist
        elif found:
            memo = (match, *row_key(line, ("n_train", "epochs")))
            if memo not in chosen:
                chosen[memo] = choose_base(line, [lines[j] for j in found])
            ref = chosen[memo]
        else:
            ref = None
        row = _compare(line, ref, base, eta, evaluations)
        for k, v in row.items():
            out[k].append(v)
    return df.assign(**out)


def _compare(
    line: Mapping[str, Any], ref: Mapping[str, Any] | None, base: str, eta: float,
    evaluations: set[tuple[Any, ...]],
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "base_cell_key": None, "base_clean_accuracy": None, "base_defense_rate": None,
        "delta_t": None, "delta_d": None, "des": None, "des_note": None,
    }
    if ref is None:
        if row_key(line, EVALUATION) not in evaluations:
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
    if missing(line["defense_rate"]) or missing(ref["defense_rate"]):
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
        shown = " ".join(f"{k}={value((params or {}).get(k))}" for k in varying[name])
        labels.append(f"{name} {shown}".strip())
    return pd.Series(labels, index=df.index, dtype=object)
