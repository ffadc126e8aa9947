"""The worst case over attacks: hand-made lines, no upward bias when every line is the same
attack on a stochastic defense, never weaker than its strongest line, and its error against a
known per-example truth in simulation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from hrsbench.report.des import attach_des
from hrsbench.report.stats import Bootstrap, line_replicates
from hrsbench.report.worstcase import cross_fit, naive_maximum, worst_case
from tests.outcome_lines import attack_line, clean_line, draws


def test_deterministic_worst_case_takes_each_examples_best_attack():
    """Three examples; FGSM breaks the first, PGD the third: two of three are broken."""
    lines = pd.DataFrame([
        attack_line("base", {}, 0.99, np.array([1, 0, 0]), attack="fgsm", repeats=1,
                    stochastic=False, n_images=3),
        attack_line("base", {}, 0.99, np.array([0, 0, 1]), attack="pgd", repeats=1,
                    stochastic=False, n_images=3),
        attack_line("base", {}, 0.99, np.array([0, 0, 1]), attack="pgd", repeats=1,
                    stochastic=False, n_images=3, eps=0.3),  # another budget
    ])
    table = worst_case(lines)
    at = table.set_index("attack_strength")
    assert at.loc[0.1, "n_lines"] == 2
    assert at.loc[0.1, "worst_defense_rate"] == pytest.approx(1 / 3)
    assert at.loc[0.3, "worst_defense_rate"] == pytest.approx(2 / 3)
    assert at.loc[0.1, "strongest"] in {"fgsm (whitebox)", "pgd (whitebox)"}


def test_cross_fit_picks_on_one_half_and_scores_on_the_other():
    # two lines, one example, 4 draws (picking half: draws 0-1)
    successes = np.array([[2], [3]])
    picks = np.array([[2], [1]])
    # picked on the first half: line 0 (2 > 1), scored on its other draws: 0 of 2
    # picked on the second half: line 1 (2 > 0), scored on its first draws: 1 of 2
    assert cross_fit(successes, picks, 4).tolist() == [0.25]
    assert naive_maximum(successes, 4).tolist() == [0.75]
    with pytest.raises(ValueError):
        cross_fit(successes, picks, 1)


def test_cross_fit_scores_lines_tied_in_the_picking_half_by_their_mean():
    """Three lines, one example, 4 draws: lines 0 and 1 tie at 2 wins in the picking half and
    score 0 and 2 of 2 on the other; their mean counts, whichever order the lines come in."""
    successes = np.array([[2], [4], [1]])
    picks = np.array([[2], [2], [0]])
    # second half: line 1 (2 wins) picked, scored 2 of 2 on the first half
    assert cross_fit(successes, picks, 4).tolist() == [(0.5 + 1.0) / 2]
    order = [2, 1, 0]
    assert cross_fit(successes[order], picks[order], 4).tolist() == [0.75]


def test_worst_case_of_one_attack_repeated_is_unbiased():
    """Eight lines that are the same attack (same success probability per example, fresh draws):
    the worst case must estimate the common rate, where the per-example maximum on the same
    draws overstates it by far."""
    rng = np.random.default_rng(3)
    p = rng.beta(0.6, 1.2, 20_000)
    runs = [draws(rng, p, repeats=5) for _ in range(8)]
    successes = np.stack([w for w, _ in runs])
    picks = np.stack([k for _, k in runs])
    assert cross_fit(successes, picks, 5).mean() == pytest.approx(p.mean(), abs=0.005)
    assert naive_maximum(successes, 5).mean() > p.mean() + 0.15


def test_worst_case_table_gives_adaptive_des_with_intervals():
    rng = np.random.default_rng(0)
    n_img, pairs, repeats = 30, 9, 4
    image = rng.normal(0, 1, (n_img, 1))
    rows = []
    for defense, acc, shifts in (("base", 0.98, {"whitebox": 2.0}),
                                 ("noise", 0.90, {"whitebox": -2.0, "eot": 0.0})):
        clean = clean_line(defense, {}, rng.binomial(repeats, acc, 300), repeats=repeats)
        rows.append(clean)
        for setting, shift in shifts.items():
            p = 1 / (1 + np.exp(-(shift + image + rng.normal(0, 0.3, (n_img, pairs)))))
            wins, picks = draws(rng, p, repeats)
            rows.append(attack_line(defense, {}, clean["clean_accuracy"], wins, picks,
                                    setting=setting, repeats=repeats, n_images=n_img,
                                    stochastic=defense != "base"))
    scored = attach_des(pd.DataFrame(rows))
    table = worst_case(scored, line_replicates(scored, Bootstrap(replicates=300)))
    noise = table[table["defense"] == "noise"].iloc[0]
    assert noise["n_lines"] == 2 and noise["strongest"] == "pgd (eot)"
    # the EOT line breaks far more than white-box: the adaptive DES is below the white-box DES
    assert noise["worst_defense_rate"] < noise["whitebox_defense_rate"]
    assert noise["adaptive_des"] < noise["whitebox_des"]
    for name in ("worst_defense_rate", "adaptive_des", "whitebox_des"):
        assert noise[f"{name}_lo"] <= noise[name] <= noise[f"{name}_hi"]
    base = table[table["defense"] == "base"].iloc[0]
    assert base["adaptive_des"] is None or pd.isna(base["adaptive_des"])


def test_stochastic_lines_with_one_draw_get_no_worst_case():
    lines = pd.DataFrame([attack_line("noise", {}, 0.9, np.array([1, 0]), repeats=1,
                                      n_images=2)])
    row = worst_case(lines).iloc[0]
    assert pd.isna(row["worst_defense_rate"]) and "2+ draws" in row["des_note"]


def test_worst_case_table_of_one_attack_under_eight_seeds_is_the_attacks_rate():
    """The same through the report: eight lines of one attack (fresh draws each, as eight
    seeds of an attack whose examples the defense resists alike) on a stochastic model."""
    rng = np.random.default_rng(11)
    p = rng.beta(0.6, 1.2, (400, 9))
    lines = [attack_line("noise", {}, 0.9, *draws(rng, p, repeats=6), repeats=6, n_images=400,
                         tag=str(seed))
             for seed in range(8)]
    row = worst_case(pd.DataFrame(lines)).iloc[0]
    assert row["n_lines"] == 8
    assert row["worst_defense_rate"] == pytest.approx(1 - p.mean(), abs=0.01)
    single = np.mean([line["defense_rate"] for line in lines])
    assert abs(row["worst_defense_rate"] - single) < 0.01


def _benchmark(name: str) -> ModuleType:
    """A script of ``benchmarks/`` as a module (the folder is not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_ties_in_the_picking_half_go_to_the_strongest_line():
    """Two picking draws: every line wins both on the one example, so they tie there; the line
    winning most picking draws over all examples is scored, not the mean with a weak line."""
    successes = np.array([[5, 5, 0], [2, 5, 0], [5, 5, 5]])
    picks = np.array([[2, 2, 0], [1, 2, 0], [2, 2, 2]])
    # example 1: all tie at 2; line 2 has most picking wins overall (6): its rest 3 of 3
    # counts, not the mean (3 + 3 + 3) / 3 either way; example 0: lines 0 and 2 tie at 2 and
    # line 2 is the stronger; example 2: line 2 alone
    assert cross_fit(successes, picks, 5).tolist() == [1.0, 1.0, 1.0]


def test_worst_case_is_never_weaker_than_a_line_at_the_point_or_in_any_resample():
    """A model whose per-example pick, with 2 picking draws and eleven lines (three weak), falls
    below its best line: the worst case is at that line, noted, and every resample of it is at
    most every line's resample of the same images."""
    from hrsbench.report.worstcase import budget_of, worst_rate

    rng = np.random.default_rng(1)
    bias = _benchmark("worstcase_bias")
    p = bias.SCENARIOS["copies"](rng)
    rows = [clean_line("noise", {}, rng.binomial(5, 0.9, 300), repeats=5)]
    for k, probabilities in enumerate(p):
        wins, picks = draws(rng, probabilities, repeats=5)
        rows.append(attack_line("noise", {}, 0.9, wins, picks, repeats=5, n_images=10,
                                tag=str(k)))
    scored = attach_des(pd.DataFrame(rows))
    boot = Bootstrap(replicates=400)
    reps = line_replicates(scored, boot)
    row = worst_case(scored, reps).iloc[0]
    attacked = scored[scored["attack"] != "none"]
    assert row["worst_defense_rate"] == attacked["defense_rate"].min()
    assert row["des_note"].startswith("at its strongest single line, pgd (whitebox)")
    found = worst_rate(budget_of(attacked), boot)
    line_reps = reps.column("defense_rate", attacked.index)
    assert (found.reps[:, None] <= line_reps + 1e-6).all()  # sums in float32
    assert row["worst_defense_rate_lo"] <= row["worst_defense_rate"] <= row[
        "worst_defense_rate_hi"]


def test_simulated_worst_case_against_the_per_example_truth():
    """The estimate never falls below the strongest line; with distinct attacks (a weak, a
    strong and a third breaking other examples) its mean error is within 1 point of the
    per-example truth; with noisy copies of one attack it is below the truth, by the floor's
    selection on noise, as docs/des.md reports (benchmarks/worstcase_bias.py)."""
    bias = _benchmark("worstcase_bias")
    distinct = bias.simulate("distinct", 5, studies=150)
    assert abs(distinct.bias) <= 1.0 and distinct.shortfall == 0
    copies = bias.simulate("copies", 5, studies=150)
    assert -4.0 < copies.bias < -1.0 and copies.shortfall == 0
    assert copies.floored > 0.5
    for scenario in ("graded", "published-like", "near-copies"):
        assert bias.simulate(scenario, 5, studies=40).shortfall == 0


def test_published_headlines_are_at_most_every_line():
    """On the published MNIST and CIFAR-10 lines, no headline worst case is weaker than a
    single line of its model and budget."""
    check = _benchmark("headline_floor").check
    root = Path(__file__).resolve().parents[1] / "leaderboards"
    for paths in ([root / "mnist-paper" / "results.jsonl",
                   root / "mnist-paper" / "headline" / "results.jsonl"],
                  [root / "cifar10-paper-cpu" / "results.jsonl"]):
        found = check(paths)
        assert found and not [r for r in found if r["violation"]]
