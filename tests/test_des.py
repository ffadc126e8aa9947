"""DES, its base matching, mean DES over a sweep and the fitted line, on hand-made result lines
whose expected values are worked out by hand in the comments."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from hrsbench.errors import HrsbenchError
from hrsbench.report.des import (
    BehaviourRange,
    attach_des,
    des_score,
    expand_settings,
    family_summary,
    fit_line,
    variant_labels,
)


def line(defense: str, params: dict[str, Any], clean: float, attack: str = "pgd",
         eps: float = 0.1, setting: str = "whitebox", asr: float | None = None,
         **extra: Any) -> dict[str, Any]:
    """A result line as the runner writes it, with only what DES reads varying; the defense's
    ``stochastic`` trait as the built-in plugins declare it (None for others)."""
    strength_param = {"dropout": "test_rate", "hrs": "width"}.get(defense)
    stochastic = {"base": False, "dropout": True, "hrs": True}.get(defense)
    rec = {
        "dataset": "mnist", "n_train": None, "n_test": 20, "n_clean": 100, "epochs": 5,
        "seed": 0, "defense": defense, "params": params,
        "strength": params.get(strength_param) if strength_param else None,
        "attack": attack, "attack_params": {} if attack == "none" else {"max_iter": 40},
        "attack_strength": 0.0 if attack == "none" else eps,
        "setting": "none" if attack == "none" else setting, "targeted": True,
        "repeats": 1, "eot_samples": 1, "clean_accuracy": clean, "clean_accuracy_std": 0.0,
        "n_examples": 0 if attack == "none" else 180, "attack_success_rate": asr,
        "attack_success_rate_std": None if asr is None else 0.01,
        "defense_rate": None if asr is None else 1 - asr,
        "cell_key": f"{defense}-{sorted(params.items())}-{attack}-{eps}-{setting}",
        "config_hash": "c0", "finished_at": "2026-01-01T00:00:00+00:00",
        "hrsbench_version": "0.1.0", "stochastic": stochastic,
    }
    rec.update(extra)
    return rec


def sweep() -> pd.DataFrame:
    """A deterministic base, a dropout sweep (stochastic: white-box and EOT lines), an HRS sweep
    more accurate than the base, and lines that cannot be matched."""
    return pd.DataFrame([
        line("base", {}, 0.99, "none"),
        line("base", {}, 0.99, asr=0.90),                         # defense rate 0.10
        line("dropout", {"test_rate": 0.1}, 0.98, "none"),
        line("dropout", {"test_rate": 0.1}, 0.98, asr=0.70),      # defense rate 0.30
        line("dropout", {"test_rate": 0.1}, 0.98, setting="eot", asr=0.80),  # 0.20
        line("dropout", {"test_rate": 0.3}, 0.95, asr=0.50),      # 0.50
        line("hrs", {"width": 5}, 0.995, asr=0.40),               # 0.60, more accurate than base
        line("hrs", {"width": 10}, 0.991, asr=0.30),              # 0.70
        line("dropout", {"test_rate": 0.1}, 0.97, asr=0.60, seed=1),  # no seed-1 base
        line("dropout", {"test_rate": 0.1}, 0.98, "fgsm", asr=0.5),   # base never ran fgsm
    ])


def by(df: pd.DataFrame, defense: str, setting: str = "whitebox", attack: str = "pgd",
       seed: int = 0, **params: Any) -> pd.Series:
    rows = df[(df["defense"] == defense) & (df["setting"] == setting) & (df["attack"] == attack)
              & (df["seed"] == seed) & df["params"].map(lambda p: p == params)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_des_score_offsets_by_eta() -> None:
    # 0.20 / (0.01 + 0.002) = 0.20 / 0.012 = 16.666…
    assert des_score(0.20, 0.01) == pytest.approx(16.6666667)
    # Δt = 0: the offset alone, 0.10 / 0.002 = 50
    assert des_score(0.10, 0.0) == pytest.approx(50.0)
    # a custom η: 0.10 / (0.0 + 0.01) = 10
    assert des_score(0.10, 0.0, eta=0.01) == pytest.approx(10.0)
    # more accurate than the base but by less than η: 0.60 / (−0.001 + 0.002) = 600
    assert des_score(0.60, -0.001) == pytest.approx(600.0)
    # more accurate by η or more: Δt + η ≤ 0, no DES rather than a negative or infinite one
    assert des_score(0.60, -0.002) is None
    assert des_score(0.60, -0.005) is None


def test_des_is_zero_where_the_defense_gains_nothing() -> None:
    """Δd = 0 gives DES 0 whatever Δt + η; ±∞ only where Δd ≠ 0 and Δt + η ≤ 0. A point
    estimate with Δt + η ≤ 0 still has no DES: its 0 would be the accident of Δd."""
    import numpy as np

    from hrsbench.report.behaviour import des_values

    assert des_score(0.0, 0.01) == 0.0 and des_score(0.0, -0.001) == 0.0
    assert des_score(0.0, -0.005) is None
    out = des_values(np.array([0.0, 0.0, 0.1, -0.1, 0.1, np.nan]),
                     np.array([-0.01, 0.01, -0.01, -0.01, 0.01, 0.01]))
    assert out[:5].tolist() == [0.0, 0.0, np.inf, -np.inf, pytest.approx(0.1 / 0.012)]
    assert np.isnan(out[5])


def test_resampled_des_is_zero_where_each_resample_gains_nothing() -> None:
    """Base and defense break the same examples; the defense is about as accurate as the base,
    so some resamples put Δt + η ≤ 0: with Δd = 0 in every resample, every resampled DES is 0
    and the interval [0, 0], not unbounded."""
    import numpy as np

    from hrsbench.report.stats import Bootstrap, line_replicates, with_intervals
    from hrsbench.report.worstcase import worst_case
    from tests.outcome_lines import attack_line, clean_line

    rng = np.random.default_rng(4)
    wins = rng.binomial(4, 0.5, 20 * 9)
    base = rng.binomial(4, 0.97, 300)
    noise = base.copy()
    noise[:12] = rng.binomial(4, 0.97, 12)  # a few images classified differently
    noise[0] = base[0] - 1  # and one draw fewer correct: Δt = 1/1200, Δt + η > 0
    rows = []
    for defense, correct in (("base", base), ("noise", noise)):
        clean = clean_line(defense, {}, correct)
        rows += [clean, attack_line(defense, {}, clean["clean_accuracy"], wins, wins // 2,
                                    n_images=20, stochastic=False)]
    scored = attach_des(pd.DataFrame(rows))
    reps = line_replicates(scored, Bootstrap(replicates=400))
    line = with_intervals(scored, reps).iloc[3]
    assert line["delta_t"] + 0.002 > 0 and line["delta_d"] == 0
    assert (reps.values["delta_t"][:, 3] + 0.002 <= 0).any()
    assert (line["des"], line["des_lo"], line["des_hi"]) == (0.0, 0.0, 0.0)
    noisy = worst_case(scored, reps).set_index("defense").loc["noise"]
    assert (noisy["adaptive_des"], noisy["adaptive_des_lo"], noisy["adaptive_des_hi"]) == (
        0.0, 0.0, 0.0)


def test_attach_des_matches_base_and_explains_gaps() -> None:
    scored = attach_des(sweep())

    d1 = by(scored, "dropout", test_rate=0.1)
    # Δt = 0.99 − 0.98 = 0.01; Δd = 0.30 − 0.10 = 0.20; DES = 0.20 / 0.012 = 16.667
    assert d1["delta_t"] == pytest.approx(0.01)
    assert d1["delta_d"] == pytest.approx(0.20)
    assert d1["des"] == pytest.approx(16.6666667)
    assert d1["base_cell_key"] == by(scored, "base")["cell_key"]

    # EOT: the deterministic base has only a white-box line, which stands for EOT:
    # Δd = 0.20 − 0.10 = 0.10; DES = 0.10 / 0.012 = 8.333
    d1e = by(scored, "dropout", "eot", test_rate=0.1)
    assert d1e["delta_d"] == pytest.approx(0.10)
    assert d1e["des"] == pytest.approx(8.3333333)

    # Δt = 0.99 − 0.95 = 0.04; Δd = 0.50 − 0.10 = 0.40; DES = 0.40 / 0.042 = 9.5238
    assert by(scored, "dropout", test_rate=0.3)["des"] == pytest.approx(9.5238095)

    # HRS width 10 is more accurate than the base: Δt = 0.99 − 0.991 = −0.001, Δt + η = 0.001,
    # Δd = 0.70 − 0.10 = 0.60, DES = 0.60 / 0.001 = 600
    h10 = by(scored, "hrs", width=10)
    assert h10["delta_t"] == pytest.approx(-0.001)
    assert h10["des"] == pytest.approx(600.0)
    # width 5: Δt = 0.99 − 0.995 = −0.005 ≤ −η: Δd = 0.50 is kept, the ratio is not
    h5 = by(scored, "hrs", width=5)
    assert h5["delta_d"] == pytest.approx(0.50)
    assert pd.isna(h5["des"])
    assert "Δt + η ≤ 0" in h5["des_note"]

    # clean-only line: Δt = 0.01 against the base's clean-only line, no Δd or DES
    clean = by(scored, "dropout", "none", "none", test_rate=0.1)
    assert clean["delta_t"] == pytest.approx(0.01)
    assert pd.isna(clean["des"]) and clean["des_note"] == "clean-only line"

    # the base itself: zero differences, no DES
    b = by(scored, "base")
    assert (b["delta_t"], b["delta_d"]) == (0.0, 0.0) and pd.isna(b["des"])

    # unmatched lines keep their numbers but say why they have no DES
    other_seed = by(scored, "dropout", seed=1, test_rate=0.1)
    assert pd.isna(other_seed["des"])
    assert "same dataset, n_test, n_clean and seed" in other_seed["des_note"]
    fgsm = by(scored, "dropout", attack="fgsm", test_rate=0.1)
    assert pd.isna(fgsm["des"]) and "not attacked with fgsm" in fgsm["des_note"]


def test_base_must_share_the_evaluation() -> None:
    # same model and attack but another n_test: the base's rates are not comparable
    lines = pd.DataFrame([line("base", {}, 0.99, asr=0.9, n_test=50),
                          line("dropout", {"test_rate": 0.1}, 0.98, asr=0.7)])
    scored = attach_des(lines)
    assert pd.isna(by(scored, "dropout", test_rate=0.1)["des"])


def test_stochastic_base_uses_its_own_setting_lines() -> None:
    # a base with EOT lines is not deterministic: its EOT line is the reference for EOT.
    # Δd = (1 − 0.80) − (1 − 0.85) = 0.05, Δt = 0.01, DES = 0.05 / 0.012 = 4.1667
    lines = pd.DataFrame([
        line("noisy", {}, 0.99, asr=0.90), line("noisy", {}, 0.99, setting="eot", asr=0.85),
        line("dropout", {"test_rate": 0.1}, 0.98, setting="eot", asr=0.80),
    ])
    scored = attach_des(lines, base="noisy")
    assert by(scored, "dropout", "eot", test_rate=0.1)["des"] == pytest.approx(4.1666667)
    assert not scored["via_whitebox"].any()


def test_expand_settings_copies_deterministic_whitebox_lines() -> None:
    expanded = expand_settings(sweep())
    copies = expanded[expanded["via_whitebox"]]
    # the base (white-box only) gets an EOT copy of its pgd line; dropout has real EOT lines and
    # fgsm was only run white-box, so nothing else is copied
    assert list(zip(copies["defense"], copies["attack"], copies["setting"], strict=True)) == [
        ("base", "pgd", "eot")]


def test_stochastic_field_overrides_the_whitebox_only_guess() -> None:
    # "custom" is no installed plugin and has white-box lines only, which alone would make it
    # deterministic; its lines saying stochastic keeps its white-box line out of EOT
    lines = pd.DataFrame([
        line("base", {}, 0.99, asr=0.9),
        line("dropout", {"test_rate": 0.1}, 0.98, setting="eot", asr=0.8),
        line("custom", {}, 0.98, asr=0.7, stochastic=True),
        line("custom2", {}, 0.98, asr=0.7),
    ])
    copies = expand_settings(lines).query("via_whitebox")
    assert sorted(copies["defense"]) == ["base", "custom2"]


def test_family_summary_mean_std_and_fit() -> None:
    summary = family_summary(attach_des(sweep()))
    wb = summary[(summary["setting"] == "whitebox") & (summary["attack"] == "pgd")]
    # ranked by mean DES: hrs (600) before dropout (13.1)
    assert list(wb["defense"]) == ["hrs", "dropout"]

    dropout = wb[wb["defense"] == "dropout"].iloc[0]
    # seed 0 points only (the seed-1 line has no base): (Δt, Δd) = (0.01, 0.20), (0.04, 0.40)
    # mean DES = (16.6667 + 9.5238) / 2 = 13.0952; sample std = |16.6667 − 9.5238| / √2 = 5.0508
    assert dropout["n_points"] == 2 and dropout["n_des"] == 2
    assert dropout["mean_des"] == pytest.approx(13.0952381)
    assert dropout["std_des"] == pytest.approx(5.0507627)
    # slope = (0.40 − 0.20) / (0.04 − 0.01) = 6.6667; intercept = 0.20 − 6.6667·0.01 = 0.13333
    assert dropout["slope"] == pytest.approx(6.6666667)
    assert dropout["intercept"] == pytest.approx(0.1333333)

    hrs = wb[wb["defense"] == "hrs"].iloc[0]
    # both points fit the line, only width 10 has a DES: mean 600, no std from one value
    # slope = (0.60 − 0.50) / (−0.001 − (−0.005)) = 0.10 / 0.004 = 25; intercept = 0.60 + 0.025
    assert (hrs["n_points"], hrs["n_des"]) == (2, 1)
    assert hrs["mean_des"] == pytest.approx(600.0)
    assert pd.isna(hrs["std_des"])
    assert hrs["slope"] == pytest.approx(25.0)
    assert hrs["intercept"] == pytest.approx(0.625)

    eot = summary[summary["setting"] == "eot"].iloc[0]
    assert (eot["defense"], eot["mean_des"]) == ("dropout", pytest.approx(8.3333333))


def test_behaviour_ranges_restrict_the_mean() -> None:
    scored = attach_des(sweep())

    def means(behaviour: BehaviourRange) -> dict[str, float]:
        s = family_summary(scored, behaviour)
        s = s[(s["setting"] == "whitebox") & (s["attack"] == "pgd")]
        return dict(zip(s["defense"], s["mean_des"], strict=True))

    # Δt ∈ [0, 0.02]: only dropout 0.1 (Δt 0.01, DES 16.667); HRS's Δt are negative
    by_dt = means(BehaviourRange(delta_t=(0.0, 0.02)))
    assert by_dt["dropout"] == pytest.approx(16.6666667)
    assert pd.isna(by_dt["hrs"])
    # defense rate ≥ 0.4: dropout 0.3 (0.50 → 9.5238) and HRS (0.60 no DES, 0.70 → 600)
    by_rate = means(BehaviourRange(defense_rate=(0.4, None)))
    assert by_rate["dropout"] == pytest.approx(9.5238095)
    assert by_rate["hrs"] == pytest.approx(600.0)
    with pytest.raises(HrsbenchError, match="lower bound"):
        BehaviourRange(delta_t=(0.1, 0.0))


def test_fit_line_needs_two_distinct_x() -> None:
    # y = 2x + 1 exactly
    assert fit_line([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]) == pytest.approx((2.0, 1.0))
    # least squares through (0, 0), (1, 1), (2, 1): x̄ = 1, ȳ = 2/3, Sxy = 1, Sxx = 2:
    # slope 0.5, intercept 2/3 − 0.5 = 1/6
    assert fit_line([0, 1, 2], [0, 1, 1]) == pytest.approx((0.5, 1 / 6))
    assert fit_line([0.01], [0.2]) is None
    assert fit_line([0.01, 0.01], [0.2, 0.3]) is None


def test_variant_labels_show_only_varying_params() -> None:
    df = pd.DataFrame([line("dropout", {"test_rate": 0.1, "train_rate": None}, 0.9),
                       line("dropout", {"test_rate": 0.3, "train_rate": None}, 0.9),
                       line("base", {}, 0.9)])
    assert list(variant_labels(df)) == ["dropout test_rate=0.1", "dropout test_rate=0.3", "base"]
