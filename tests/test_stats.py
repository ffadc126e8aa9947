"""Bootstrap intervals: deterministic, paired, clustered, covering the truth at their level;
ranks with their ranges over the resamples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hrsbench.report.des import attach_des, family_summary
from hrsbench.report.stats import (
    NEVER,
    Bootstrap,
    Comparison,
    family_replicates,
    images_to_resolve,
    line_replicates,
    rank_number,
    resampled_means,
    resampled_ratios,
    resampled_sums,
    resolution_sentence,
    summary_intervals,
    with_intervals,
)
from tests.outcome_lines import N_IMAGES, PAIRS, REPEATS, study

FAST = Bootstrap(replicates=500)


def scored_study(**kwargs) -> pd.DataFrame:
    return attach_des(study(**kwargs))


def test_resamples_are_deterministic_and_shared_by_name():
    values = np.arange(30.0).reshape(10, 3)
    a = resampled_sums(values, "attacked/mnist/10", FAST)
    assert a.shape == (500, 3)
    # the same name resamples the same units, whichever columns come along
    assert np.allclose(a[:, :1], resampled_sums(values[:, :1], "attacked/mnist/10", FAST))
    assert not np.array_equal(a, resampled_sums(values, "attacked/mnist/11", FAST))
    assert a.mean(axis=0) == pytest.approx(values.sum(axis=0), rel=0.05)


def test_line_intervals_bracket_the_recorded_rates():
    scored = scored_study()
    out = with_intervals(scored, line_replicates(scored, FAST))
    attacked = out[out["attack"] != "none"]
    for col in ("defense_rate", "delta_d"):
        assert (attacked[f"{col}_lo"] <= attacked[col] + 1e-12).all()
        assert (attacked[col] <= attacked[f"{col}_hi"] + 1e-12).all()
    defended = out[(out["attack"] != "none") & (out["defense"] != "base")]
    assert (defended["delta_t_lo"] < defended["delta_t"]).all()
    assert (defended["des_lo"] < defended["des"]).all()


def test_delta_d_is_paired_on_the_same_pairs():
    """A defense that wins exactly one draw fewer than the base on every pair has a Δd known
    without error, although each rate alone varies a lot with the images drawn."""
    df = study()
    base = df[(df["defense"] == "base") & (df["attack"] == "pgd")].iloc[0]
    from hrsbench.results.outcomes import decode_counts, encode_counts

    wins = decode_counts(base["successes"]).clip(1, None)
    df.loc[base.name, "successes"] = encode_counts(wins)
    df.loc[base.name, "attack_success_rate"] = wins.mean() / REPEATS
    df.loc[base.name, "defense_rate"] = 1 - wins.mean() / REPEATS
    target = df[(df["defense"] == "weak") & (df["attack"] == "pgd")].index[0]
    df.loc[target, "successes"] = encode_counts(wins - 1)
    df.loc[target, "defense_rate"] = 1 - (wins - 1).mean() / REPEATS
    out = with_intervals(attach_des(df), line_replicates(attach_des(df), FAST))
    row = out[(out["defense"] == "weak") & (out["attack"] == "pgd")
              & (out["cell_key"] == df.loc[target, "cell_key"])].iloc[0]
    assert row["delta_d"] == pytest.approx(1 / REPEATS)
    assert row["delta_d_hi"] - row["delta_d_lo"] < 1e-9
    assert row["defense_rate_hi"] - row["defense_rate_lo"] > 0.05


def test_lines_without_outcomes_keep_their_numbers_without_intervals():
    df = study().drop(columns=["successes", "successes_pick", "clean_correct"])
    scored = attach_des(df)
    out = with_intervals(scored, line_replicates(scored, FAST))
    assert out["des_lo"].isna().all() and out["defense_rate_lo"].isna().all()
    assert out["des"].notna().sum() == 4
    summary = summary_intervals(family_summary(scored), line_replicates(scored, FAST))
    assert summary["mean_des_lo"].isna().all()
    assert list(summary["rank"]) == ["1", "2"]  # the point estimates' order, no ties claimed


def test_coverage_of_paired_clustered_delta_d():
    """1,000 simulated studies with a known Δd: base and defense attacked on the same images,
    pairs of one image alike. The 95 % interval must cover the truth in 93–97 % of them."""
    rng = np.random.default_rng(7)
    n, pairs, repeats = 100, PAIRS, 5

    def probabilities(size: int) -> tuple[np.ndarray, np.ndarray]:
        logit = rng.normal(0, 1.5, (size, 1)) + rng.normal(0, 0.5, (size, pairs))
        return 1 / (1 + np.exp(-(1.0 + logit))), 1 / (1 + np.exp(-logit))

    base, defended = probabilities(200_000)
    truth = float((base - defended).mean())  # Δd = ASR_base − ASR_defended
    boot = Bootstrap(replicates=400)
    covered = 0
    for s in range(1000):
        pb, pd_ = probabilities(n)
        per_image = np.stack([rng.binomial(repeats, pb).sum(1), rng.binomial(repeats, pd_).sum(1)],
                             axis=1)
        asr = resampled_ratios(per_image, np.full_like(per_image, pairs * repeats),
                               f"study-{s}", boot)
        lo, hi = boot.bounds((asr[:, 0] - asr[:, 1])[:, None])
        covered += bool(lo[0] <= truth <= hi[0])
    assert 930 <= covered <= 970


def test_families_apart_are_ranked_and_close_ones_share_a_range():
    scored = scored_study(families={"strong": [-3.0, -2.5], "weak": [0.6, 0.8],
                                    "weaker": [0.7, 0.9]})
    reps = line_replicates(scored, FAST)
    summary = summary_intervals(family_summary(scored), reps)
    ranks = dict(zip(summary["defense"], summary["rank"], strict=True))
    assert ranks["strong"] == "1 (1–1)"
    assert {ranks["weak"], ranks["weaker"]} == {"2 (2–3)", "3 (2–3)"}
    assert (summary["mean_des_lo"] <= summary["mean_des"]).all()
    sentence = resolution_sentence(summary, family_replicates(reps), reps.boot, N_IMAGES)
    assert "Resolved at 95 %: strong > weak, strong > weaker." in sentence
    assert "Not resolved at 95 %: weak" in sentence or "Not resolved at 95 %: weaker" in sentence


def test_images_needed_scale_as_the_square_of_the_interval():
    c = Comparison("a", "b", difference=2.0, lo=-2.0, hi=6.0)  # half-width 4: twice the gap
    assert not c.resolved
    assert images_to_resolve(c, 10) == 40
    assert images_to_resolve(Comparison("a", "b", 0.0, -1.0, 1.0), 10) is None


def test_only_the_attacked_images_share_of_the_interval_shrinks_with_more_of_them():
    """The half-width on zero's side is 4 for a gap of 2. With 3 of it from the attacked
    images, the rest (in squares 16 − 9 = 7) exceeds the squared gap 4 whatever their number;
    with 3.9 of it, the rest 0.79 leaves n = 10 · 3.9² / (4 − 0.79)."""
    c = Comparison("a", "b", 2.0, -2.0, 6.0, attacked_lo=-1.0, attacked_hi=4.0)
    assert images_to_resolve(c, 10) == NEVER
    c = Comparison("a", "b", 2.0, -2.0, 6.0, attacked_lo=-1.9, attacked_hi=5.0)
    rest = 16 - 3.9 ** 2
    assert images_to_resolve(c, 10) == int(np.ceil(10 * 3.9 ** 2 / (4 - rest)))
    assert images_to_resolve(c, 10) > images_to_resolve(
        Comparison("a", "b", 2.0, -2.0, 6.0), 10)  # more than scaling the whole interval
    # the bound on zero's side counts, not the far one
    skewed = Comparison("a", "b", 2.0, -2.0, 100.0)
    assert images_to_resolve(skewed, 10) == 40


def test_clean_means_resample_distinct_rows_as_the_images_they_stand_for():
    """10,000 images collapse to a few distinct rows; the spread is still that of a mean over
    10,000 images, and two models are resampled on the same images."""
    rng = np.random.default_rng(5)
    a = (rng.random(10_000) < 0.9).astype(float)
    b = a.copy()
    b[:100] = 1.0 - b[:100]  # differs from a on 100 images only
    reps = resampled_means(np.stack([a, b], axis=1), "clean/mnist/10000", FAST)
    assert reps[:, 0].std() == pytest.approx(np.sqrt(0.09 / 10_000), rel=0.15)
    difference = reps[:, 0] - reps[:, 1]
    assert difference.std() < reps[:, 0].std() / 2  # paired: far tighter than either alone
    assert np.array_equal(reps, resampled_means(np.stack([a, b], axis=1), "clean/mnist/10000",
                                                FAST))


def test_ranks_without_resamples_follow_the_estimates_and_mark_equal_ones():
    from hrsbench.report.stats import Bootstrap, rank_ranges

    items = [("sap", 0.0, None), ("gaussian", 0.0, None), ("hrs", 5.0, None), ("x", -1.0, None)]
    assert rank_ranges(items, Bootstrap()) == {"hrs": "1", "sap": "2=", "gaussian": "2=",
                                               "x": "4"}


def test_rank_ranges_of_hand_made_families():
    """Each resample places the families on its own values: a precise family's range is
    narrow, an imprecise one's spans the places its noise reaches, and equal estimates share a
    place (marked =) whatever their ranges."""
    from hrsbench.report.stats import Bootstrap, rank_ranges

    rng = np.random.default_rng(0)
    n = FAST.replicates
    items = [("a", 10.0, rng.normal(10.0, 0.5, n)), ("b", 2.0, rng.normal(2.0, 0.5, n)),
             ("c", 1.0, rng.normal(1.0, 30.0, n)), ("d", 1.0, rng.normal(1.0, 0.1, n)),
             ("e", -20.0, np.full(n, -20.0))]
    ranks = rank_ranges(items, FAST)
    assert ranks["a"] == "1 (1–2)"  # c, far noisier, tops it in some resamples
    assert ranks["b"] == "2 (2–3)"  # a always above, c in about half the resamples
    assert ranks["c"] == "3= (1–5)"  # as high as first, as low as last
    assert ranks["d"] == "3= (3–4)"
    assert ranks["e"] == "5 (4–5)"
    # place ranges are percentiles of ranks drawn per resample: the 95 % range of the rank
    places = 1 + (np.stack([r for *_, r in items], 1)[:, None, :]
                  > np.stack([r for *_, r in items], 1)[:, :, None]).sum(axis=2)
    assert np.mean(places[:, 2] == 1) > 0.025
    assert rank_ranges([("only", 3.0, np.zeros(n))], Bootstrap(replicates=n)) == {
        "only": "1 (1–1)"}


def test_tables_list_families_by_the_place_of_their_estimate():
    """A far ahead of B, C's interval too wide to tell it from either: C is listed after B (its
    estimate is lower), and its range shows it could be first or last."""
    scored = scored_study(families={"a": [-3.0], "b": [-1.0], "c": [-0.9]})
    reps = line_replicates(scored, FAST)
    summary = family_summary(scored)
    fams = family_replicates(reps)
    key = {d: next(k for k in fams if k[-1] == d) for d in ("a", "b", "c")}
    rng = np.random.default_rng(0)
    n = FAST.replicates
    fams[key["a"]]["mean_des"] = rng.normal(10.0, 0.5, n)
    fams[key["b"]]["mean_des"] = rng.normal(2.0, 0.5, n)
    fams[key["c"]]["mean_des"] = rng.normal(1.0, 30.0, n)
    summary["mean_des"] = summary["defense"].map({"a": 10.0, "b": 2.0, "c": 1.0})
    ranked = summary_intervals(summary, reps, fams=fams)
    assert list(zip(ranked["defense"], ranked["rank"], strict=True)) == [
        ("a", "1 (1–2)"), ("b", "2 (2–3)"), ("c", "3 (1–3)")]
    assert [rank_number(r) for r in ("1 (1–1)", "2= (1–4)", "3", "", None)] == [
        1, 2, 3, math.inf, math.inf]
