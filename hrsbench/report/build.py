"""What a leaderboard shows, computed once from merged lines, so the markdown and the figures
agree: every evasion line with its DES (:func:`~hrsbench.report.des.attach_des`), the family
summaries, the sanity verdict of each line's model, bootstrap intervals and ranks with ties
(:mod:`.stats`) and the worst case over attacks per model and budget (:mod:`.worstcase`); lines
that differ only in their training seed are pooled (:mod:`.seeds`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd

from hrsbench.report.des import (
    BASE,
    ETA,
    GROUP,
    BehaviourRange,
    attach_des,
    family_summary,
    varying_keys,
)
from hrsbench.report.frame import missing
from hrsbench.report.merge import Merged
from hrsbench.report.sanity import annotate
from hrsbench.report.seeds import pool_seeds
from hrsbench.report.stats import (
    Bootstrap,
    family_replicates,
    line_replicates,
    summary_intervals,
    with_intervals,
)
from hrsbench.report.tables import FLAG_FIELDS, flags
from hrsbench.report.worstcase import worst_case

#: Kinds of line the DES tables hold; threats (reprogramming) get their own section.
EVASION_KINDS = ("clean", "evasion")


@dataclass
class Report:
    """Everything a leaderboard shows, computed once so the markdown and the plots agree."""

    merged: Merged
    scored: pd.DataFrame
    summary: pd.DataFrame
    base: str = BASE
    eta: float = ETA
    behaviour: BehaviourRange = field(default_factory=BehaviourRange)
    #: Worst case over attacks per model and threat budget (:func:`.worstcase.worst_case`),
    #: pooled over seeds as the lines are.
    worst: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Per family (:data:`~hrsbench.report.des.GROUP` + defense), resamples of its mean DES and
    #: slope, for the sentence saying which orderings are resolved.
    families: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    boot: Bootstrap = field(default_factory=Bootstrap)
    #: The lines of each trained model, with intervals, where ``scored`` pools seeds
    #: (:mod:`.seeds`); ``None`` when nothing was pooled.
    unpooled: pd.DataFrame | None = None

    @property
    def per_model(self) -> pd.DataFrame:
        """Lines of one trained model each (one seed): what per-model tables read."""
        return self.scored if self.unpooled is None else self.unpooled

    @cached_property
    def flag_field(self) -> str | None:
        return next((f for f in FLAG_FIELDS if f in self.scored.columns
                     and self.scored[f].map(lambda v: flags(v) != "").any()), None)

    @cached_property
    def _summaries(self) -> dict[tuple[Any, ...], pd.DataFrame]:
        if self.summary.empty:
            return {}
        return {_hashable(k): g for k, g in self.summary.groupby(list(GROUP), sort=False,
                                                                  dropna=False)}

    def summary_of(self, key: tuple[Any, ...]) -> pd.DataFrame:
        """The family summary rows of one comparison group (:data:`GROUP`'s values)."""
        return self._summaries.get(_hashable(key), self.summary.iloc[:0])

    @cached_property
    def varying(self) -> dict[str, list[str]]:
        """Per defense, the parameters that vary over its lines: what labels show."""
        return {str(name): varying_keys(fam["params"])
                for name, fam in self.scored.groupby("defense")}

    @property
    def threats(self) -> pd.DataFrame:
        """The threat lines (reprogramming …), which the DES tables leave out."""
        return pd.DataFrame([r for r in self.merged.records if r["kind"] not in EVASION_KINDS])


def with_sanity(records: list[dict[str, Any]], reports: list[dict[str, Any]] | None = None
                ) -> list[dict[str, Any]]:
    """The records with the gradient-masking verdict of their model (:mod:`.sanity`), computed
    on the merged lines, since its checks compare attacks that different runs may hold; records
    already carrying a flag field are left as they are. ``reports``: the checks when already
    computed on these lines."""
    if any(f in r for r in records for f in FLAG_FIELDS):
        return records
    return annotate(records, reports=reports)


def _hashable(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """A group key as a dict key: a missing value (NaN, which equals nothing) as None."""
    return tuple(None if missing(v) else v for v in key)


def build_report(
    merged: Merged, base: str = BASE, eta: float = ETA, behaviour: BehaviourRange | None = None,
    sanity: list[dict[str, Any]] | None = None,
) -> Report:
    """DES of every line and the family summaries with their intervals, and the worst case over
    attacks, computed once for the markdown and plots; ``sanity``: the gradient-masking reports
    of the merged lines when already computed."""
    behaviour = behaviour or BehaviourRange()
    boot = Bootstrap()
    attacks = [r for r in merged.records if r["kind"] in EVASION_KINDS]
    scored = attach_des(pd.DataFrame(with_sanity(attacks, sanity)), base=base, eta=eta)
    reps = line_replicates(scored, boot, eta)
    worst = worst_case(scored, reps, base, eta, pool=True)
    pooled, preps = pool_seeds(scored, reps)
    unpooled = None if pooled is scored else with_intervals(scored, reps)
    families = family_replicates(preps, behaviour, base)
    summary = summary_intervals(family_summary(pooled, behaviour, base=base), preps, behaviour,
                                base, families)
    return Report(merged, with_intervals(pooled, preps), summary, base, eta, behaviour,
                  worst, families, boot, unpooled)
