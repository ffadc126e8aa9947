"""The result rows as every report reads them: the one definition of which model a row belongs
to, of a missing value, of the columns naming a threat and a comparison, and of which base line
a defended line is compared with.

Rows come from :func:`hrsbench.load_results` (or :meth:`hrsbench.ResultLine.row`); hand-made
frames with fewer columns are accepted, their absent optional columns read as missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hrsbench.results.record import COMPARISON_COLUMNS, THREAT_COLUMNS, canonical
from hrsbench.results.vocabulary import is_adaptive

if TYPE_CHECKING:
    import pandas as pd

#: The column naming the trained model a row belongs to (:meth:`hrsbench.ResultLine.model_id`).
MODEL = "model_key"
#: Columns naming the threat a rate was measured under and on how many attacked images: one
#: leaderboard table, one DES scatter. Merged runs may attack a threat on several image sets;
#: a family's points must share one, or its mean DES would count a model once per set.
GROUP = (*THREAT_COLUMNS, "n_test")
#: Columns a defended row and its base row share: the threat, attacked images, clean images and
#: seed, or Δt and Δd would compare different images or differently seeded models.
MATCH = COMPARISON_COLUMNS
#: Columns hand-made rows may lack; they read as missing (None).
OPTIONAL = ("n_test", "n_clean", "n_train", "epochs", "cell_key", "finished_at", "defense_rate",
            "attack_success_rate_std", "clean_accuracy_std", "attack_params", "stochastic",
            "model_key", "strength", "kind")
#: The columns of an empty frame, so every report can select them.
REQUIRED = ("dataset", "defense", "params", "attack", "attack_strength", "setting", "targeted",
            "clean_accuracy", "attack_success_rate", "seed")


def missing(value: Any) -> bool:
    """None or NaN (pandas' missing number in a float column): the one test for "no value"."""
    return value is None or (isinstance(value, float) and value != value)


def several_image_sets(lines: pd.DataFrame) -> bool:
    """Whether ``lines`` were attacked on more than one set of attacked images (merged runs):
    their titles and file names then name the count, or tables and figures would collide."""
    return bool(lines["n_test"].nunique(dropna=False) > 1)


def adaptive(row: Mapping[str, Any]) -> bool:
    """Whether a line's attack adapted to the defense's randomness: an adaptive setting, or an
    attack that averages its own gradients over several draws of a stochastic model (APGD's
    ``eot_samples``, AutoAttack's version for randomized defenses), even in the white-box
    setting. White-box lines without either are what a non-adaptive evaluation reports."""
    if is_adaptive(row.get("setting")):
        return True
    params = row.get("attack_params")
    own = params.get("eot_samples", 1) if isinstance(params, Mapping) else 1
    stochastic = row.get("stochastic")
    deterministic = not missing(stochastic) and not bool(stochastic)
    return not deterministic and isinstance(own, int | float) and own > 1


def model_id(row: Mapping[str, Any]) -> str:
    """Which trained model a row belongs to: its model key, or for a hand-made row without
    one, its dataset, defense, parameters, seed and training budget."""
    key = row.get(MODEL)
    if not missing(key):
        return str(key)
    return canonical([row.get("dataset"), row.get("defense"), canonical(row.get("params")),
                      row.get("seed"), row.get("n_train"), row.get("epochs")])


def row_key(row: Mapping[str, Any], cols: Iterable[str]) -> tuple[Any, ...]:
    """The values of ``cols`` with every missing value as None, for matching and grouping."""
    return tuple(None if missing(row[c]) else row[c] for c in cols)


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` with every optional column present, hashable parameter keys, the model
    id, the kind, and the defense rate filled in from the attack success rate where missing."""
    import pandas as pd

    df = df.copy()
    if df.empty:
        df = pd.DataFrame(columns=list(REQUIRED))
    for col in OPTIONAL:
        if col not in df.columns:
            df[col] = None
    df = df.astype({c: object for c in OPTIONAL})
    df["params_key"] = df["params"].map(canonical)
    df["attack_params_key"] = df["attack_params"].map(canonical)
    cols = [MODEL, "dataset", "defense", "params", "seed", "n_train", "epochs"]
    df[MODEL] = [model_id(dict(zip(cols, values, strict=True)))
                 for values in zip(*(df[c] for c in cols), strict=True)]
    df["kind"] = [("clean" if a == "none" else "evasion") if missing(k) else k
                  for k, a in zip(df["kind"], df["attack"], strict=True)]
    df["defense_rate"] = [
        (None if missing(a) else 1.0 - a) if missing(r) else r
        for r, a in zip(df["defense_rate"], df["attack_success_rate"], strict=True)
    ]
    if "via_whitebox" not in df.columns:
        df["via_whitebox"] = False
    return df.reset_index(drop=True)


def choose_base(line: Mapping[str, Any],
                candidates: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """Among base rows matching ``line`` (on :data:`MATCH`), the one trained like it (same
    n_train and epochs), then the most recently finished, then the highest cell key: a
    deterministic pick whatever the file order (the first of equals)."""

    def rank(c: Mapping[str, Any]) -> tuple[int, str, str]:
        same = _same(c["n_train"], line["n_train"]) and _same(c["epochs"], line["epochs"])
        return (int(same), "" if missing(c["finished_at"]) else str(c["finished_at"]),
                "" if missing(c["cell_key"]) else str(c["cell_key"]))

    return max(candidates, key=rank)


def _same(a: Any, b: Any) -> bool:
    return (missing(a) and missing(b)) or a == b
