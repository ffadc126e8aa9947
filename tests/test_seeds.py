"""Lines of several training seeds pooled: per-seed means against the base of the same seed, and
intervals that cover the truth when seeds genuinely differ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hrsbench.report.behaviour import ETA
from hrsbench.report.des import attach_des
from hrsbench.report.seeds import SeedDraws, pool_seeds
from hrsbench.report.stats import Bootstrap, line_replicates, with_intervals
from hrsbench.report.worstcase import worst_case
from tests.outcome_lines import (
    N_CLEAN,
    PAIRS,
    REPEATS,
    attack_line,
    clean_line,
    draws,
    pair_probabilities,
)

FAST = Bootstrap(replicates=400)


def seeded(line: dict, seed: int) -> dict:
    """``line`` as the same configuration trained under ``seed``."""
    model = f"{line['model_key']}-s{seed}"
    return {**line, "seed": seed, "model_key": model,
            "cell_key": f"{line['cell_key']}-s{seed}"}


def lines_of(rng: np.random.Generator, defense: str, params: dict, seed: int, accuracy: float,
             success: float, n_images: int = 20) -> list[dict]:
    correct = rng.binomial(REPEATS, accuracy, N_CLEAN)
    clean = clean_line(defense, params, correct)
    wins = rng.binomial(REPEATS, success, n_images * PAIRS)
    attacked = attack_line(defense, params, clean["clean_accuracy"], wins, n_images=n_images)
    return [seeded(clean, seed), seeded(attacked, seed)]


def two_seed_study() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for seed, (base_acc, acc, base_asr, asr) in enumerate([(0.99, 0.95, 0.9, 0.3),
                                                            (0.97, 0.96, 0.8, 0.5)]):
        rows += lines_of(rng, "base", {}, seed, base_acc, base_asr)
        rows += lines_of(rng, "noise", {"sigma": 0.5}, seed, acc, asr)
    return attach_des(pd.DataFrame(rows))


def test_seeds_are_pooled_against_the_base_of_the_same_seed():
    scored = two_seed_study()
    pooled, reps = pool_seeds(scored, line_replicates(scored, FAST))
    assert len(pooled) == 4 and len(scored) == 8  # base and noise, clean and attacked
    per_seed = scored[(scored["defense"] == "noise") & (scored["attack"] != "none")]
    line = pooled[(pooled["defense"] == "noise") & (pooled["attack"] != "none")].iloc[0]
    assert line["n_seeds"] == 2 and line["seed"] == "0, 1"
    for col in ("clean_accuracy", "defense_rate", "delta_t", "delta_d"):
        assert line[col] == pytest.approx(per_seed[col].mean())
    # each seed's Δd is against the base of its own seed
    base = scored[(scored["defense"] == "base") & (scored["attack"] != "none")]
    own = per_seed["defense_rate"].to_numpy() - base["defense_rate"].to_numpy()
    assert per_seed["delta_d"].to_numpy() == pytest.approx(own)
    assert line["des"] == pytest.approx(line["delta_d"] / (line["delta_t"] + ETA))
    assert line["clean_accuracy_seed_min"] == pytest.approx(per_seed["clean_accuracy"].min())
    assert line["clean_accuracy_seed_max"] == pytest.approx(per_seed["clean_accuracy"].max())
    assert "successes" not in pooled.columns or pooled["successes"].isna().all()
    bounded = with_intervals(pooled, reps)
    row = bounded.loc[line.name]
    for col in ("defense_rate", "delta_d", "des"):
        assert row[f"{col}_lo"] <= row[col] <= row[f"{col}_hi"]


def test_one_seed_passes_through_untouched():
    scored = attach_des(pd.DataFrame([r for r in two_seed_study().to_dict("records")
                                      if r["seed"] == 0]))
    reps = line_replicates(scored, FAST)
    pooled, same = pool_seeds(scored, reps)
    assert pooled is scored and same is reps


def test_seed_spread_widens_the_interval():
    """Two seeds far apart: the pooled interval is wider than the image-only one."""
    scored = two_seed_study()
    reps = line_replicates(scored, FAST)
    pooled, preps = pool_seeds(scored, reps)
    positions = scored.index[(scored["defense"] == "noise") & (scored["attack"] != "none")]
    image_only = reps.values["defense_rate"][:, scored.index.get_indexer(positions)].mean(1)
    pos = pooled.index.get_indexer(
        pooled.index[(pooled["defense"] == "noise") & (pooled["attack"] != "none")])[0]
    lo, hi = FAST.bounds(preps.values["defense_rate"][:, [pos]])
    ilo, ihi = FAST.bounds(image_only[:, None])
    assert hi[0] - lo[0] > 2 * (ihi[0] - ilo[0])


SEEDS, N_IMAGES = 3, 30
SEED_SD, IMAGE_SD = 0.8, 1.0


def _simulated(rng: np.random.Generator, size: int, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Success probabilities per (seed, image, pair) of a base and a defense: a shared image
    effect, a per-seed effect for each model drawn afresh (the seeds genuinely differ), and
    pair noise."""
    image = rng.normal(0, IMAGE_SD, (1, size, 1))
    out = []
    for shift in (1.5, -0.5):
        logit = (shift + image + rng.normal(0, SEED_SD, (seeds, 1, 1))
                 + rng.normal(0, 0.3, (seeds, size, PAIRS)))
        out.append(1 / (1 + np.exp(-logit)))
    return out[0], out[1]


def _study(rng: np.random.Generator) -> pd.DataFrame:
    base, defended = _simulated(rng, N_IMAGES, SEEDS)
    rows = []
    for name, p in (("base", base), ("noise", defended)):
        for seed in range(SEEDS):
            wins = rng.binomial(REPEATS, p[seed]).ravel()
            line = attack_line(name, {}, 0.9, wins, n_images=N_IMAGES)
            rows.append(seeded(line, seed))
    return attach_des(pd.DataFrame(rows))


def test_coverage_when_seeds_differ():
    """150 simulated studies of 3 seeds whose true effects differ: the pooled 95 % interval of
    Δd covers the truth (the mean over the seed distribution) in at least 90 % of them, while
    the image-only interval, which ignores the seeds, covers it far less often."""
    rng = np.random.default_rng(11)
    big_base, big_defended = _simulated(rng, 500, 500)
    truth = float((big_base - big_defended).mean())  # Δd = ASR_base − ASR_defended
    boot = Bootstrap(replicates=200)
    pooled_hits = image_hits = 0
    studies = 150
    for s in range(studies):
        scored = _study(rng)
        reps = line_replicates(scored, Bootstrap(replicates=200, seed=s))
        pooled, preps = pool_seeds(scored, reps)
        at = pooled.index.get_indexer(pooled.index[pooled["defense"] == "noise"])
        lo, hi = boot.bounds(preps.values["delta_d"][:, at])
        pooled_hits += bool(lo[0] <= truth <= hi[0])
        own = scored.index.get_indexer(scored.index[scored["defense"] == "noise"])
        ilo, ihi = boot.bounds(reps.values["delta_d"][:, own].mean(axis=1)[:, None])
        image_hits += bool(ilo[0] <= truth <= ihi[0])
    assert pooled_hits >= 0.90 * studies
    assert image_hits <= 0.75 * studies


def test_leaderboard_of_two_seeds_pools_them_and_shows_the_spread(tmp_path):
    from tests.test_report_intervals import render

    raw = two_seed_study()[["dataset", "n_train", "n_test", "n_clean", "epochs", "seed",
                            "defense", "params", "strength", "attack", "attack_params",
                            "attack_strength", "setting", "targeted", "repeats", "eot_samples",
                            "clean_accuracy", "n_examples", "attack_success_rate",
                            "defense_rate", "clean_correct", "successes", "cell_key",
                            "model_key", "config_hash", "finished_at", "hrsbench_version"]]
    text = render(tmp_path, raw)
    clean = text[text.index("### Clean accuracy"):]
    clean = clean[:clean.index("\n###")]
    assert "| seeds | seed spread (min … max) |" in clean
    noise = next(r for r in clean.splitlines() if r.startswith("| noise |"))
    assert "| 0, 1 | 2 |" in noise and "…" in noise
    assert len([r for r in clean.splitlines() if r.startswith("| noise |")]) == 1
    attacked = text[text.index("### pgd"):]
    assert "mean of 2 seeds" in attacked
    assert "the brackets add the variation between seeds" in text
    head = text[text.index("## Headline"):text.index("## mnist")]
    assert "| seed spread (min … max) |" in head
    noise_rows = [r for r in head.splitlines() if "| noise |" in r]
    assert len(noise_rows) == 1  # one headline row per configuration, as in the line tables
    cells = [c.strip() for c in noise_rows[0].split("|")[1:-1]]
    assert " [" in cells[3] and "…" in cells[4] and cells[-1] == "mean of 2 seeds"
    assert "| seeds | `0`, `1` |" in text


def test_a_two_seed_run_trains_each_seed_and_its_leaderboard_pools_them(tmp_path, data_dir):
    """End to end: ``seeds = [0, 1]`` trains one model per seed, attacks each, and the
    leaderboard pools the pairs of lines into one row per configuration."""
    from hrsbench.engine.config import parse_config
    from hrsbench.engine.runner import run
    from hrsbench.report.leaderboard import write_leaderboard

    cfg = parse_config({
        "dataset": "mnist", "n_train": 256, "n_test": 2, "n_clean": 100, "epochs": 1,
        "repeats": 2, "grad_samples": 0, "seeds": [0, 1], "defenses": [{"name": "base"}],
        "attacks": [{"name": "fgsm", "strengths": [0.3]}],
    })
    lines = run(cfg, tmp_path, data_dir=data_dir, cache_dir=tmp_path / "cache")
    assert sorted((r["seed"], r["attack"]) for r in lines) == [
        (0, "fgsm"), (0, "none"), (1, "fgsm"), (1, "none")]
    assert len({r["model_key"] for r in lines}) == 2
    # the seeds train different networks: their weights (hence accuracy or outcomes) differ
    by_seed = {r["seed"]: r for r in lines if r["attack"] == "none"}
    assert by_seed[0]["clean_correct"] != by_seed[1]["clean_correct"]
    md, figures = write_leaderboard([tmp_path / "results.jsonl"], tmp_path / "lb.md",
                                    plots=tmp_path / "plots")
    assert figures
    text = md.read_text()
    clean = text[text.index("### Clean accuracy"):]
    rows = [r for r in clean[:clean.index("\n###")].splitlines() if r.startswith("| base |")]
    assert len(rows) == 1 and "| 0, 1 | 2 |" in rows[0]
    assert "mean of 2 seeds" in text


def test_differing_sanity_verdicts_name_their_seeds():
    scored = two_seed_study()
    scored["sanity"] = ["ok" if s == 0 else "possible gradient masking" for s in scored["seed"]]
    pooled, _ = pool_seeds(scored, line_replicates(scored, FAST))
    assert set(pooled["sanity"]) == {"seed 0: ok; seed 1: possible gradient masking"}
    scored["sanity"] = "ok"
    pooled, _ = pool_seeds(scored, line_replicates(scored, FAST))
    assert set(pooled["sanity"]) == {"ok"}


def test_unresolved_pooled_orderings_claim_no_image_count(tmp_path):
    """More attacked images do not shrink the seeds' part of an interval: the sentence under a
    pooled table names no image count that would resolve an ordering."""
    from tests.test_report_intervals import render

    rng = np.random.default_rng(5)
    rows = []
    for seed in (0, 1, 2):
        rows += lines_of(rng, "base", {}, seed, 0.99, 0.9)
        rows += lines_of(rng, "noise", {}, seed, 0.90 + 0.01 * seed, 0.5 - 0.1 * seed)
        rows += lines_of(rng, "blur", {}, seed, 0.91 - 0.01 * seed, 0.45 + 0.05 * seed)
    text = render(tmp_path, pd.DataFrame(rows).drop(columns=["stochastic"]))
    assert "Not resolved at 95 %: " in text
    assert "attacked images, even odds of resolving it" not in text


def three_seed_study(defenses: dict[str, tuple[float, ...]] | None = None) -> pd.DataFrame:
    """A base and stochastic defenses trained under 3 seeds, each model attacked by PGD and FGSM
    on the same 40 images; ``defenses`` gives each defense's success-logit shift per seed, so
    that its seeds genuinely differ."""
    rng = np.random.default_rng(7)
    image = rng.normal(0.0, 1.0, 40)
    models = {"base": (1.5, 1.5, 1.5), **(defenses or {"noise": (-2.5, -1.0, 0.5)})}
    rows = []
    for seed in range(3):
        for defense, shifts in models.items():
            accuracy = 0.98 if defense == "base" else 0.93
            clean = clean_line(defense, {}, rng.binomial(REPEATS, accuracy, N_CLEAN))
            rows.append(seeded(clean, seed))
            for attack, harder in (("pgd", 0.0), ("fgsm", -1.0)):
                wins, picks = draws(rng, pair_probabilities(rng, shifts[seed] + harder, image))
                rows.append(seeded(attack_line(defense, {}, clean["clean_accuracy"], wins, picks,
                                               attack=attack, n_images=len(image)), seed))
    return pd.DataFrame(rows)


def test_headline_pools_the_seeds_of_a_configuration(tmp_path):
    """One headline row per configuration, each number the mean over seeds of what the worst
    case gives each seed alone, its DES the mean Δd over the mean Δt + η."""
    from tests.test_report_intervals import render

    raw = three_seed_study()
    scored = attach_des(raw)
    table = worst_case(scored, line_replicates(scored, FAST), pool=True)
    assert sorted(table["defense"]) == ["base", "noise"]
    noise = table[table["defense"] == "noise"].iloc[0]
    assert noise["n_seeds"] == 3 and noise["seed"] == "0, 1, 2" and noise["n_lines"] == 6
    alone = [worst_case(raw[raw["seed"] == s]).set_index("defense") for s in range(3)]
    for col in ("worst_defense_rate", "whitebox_defense_rate", "clean_accuracy"):
        assert noise[col] == pytest.approx(np.mean([t.loc["noise", col] for t in alone]))
    delta_d = np.mean([t.loc["noise", "worst_defense_rate"] - t.loc["base", "worst_defense_rate"]
                       for t in alone])
    delta_t = np.mean([t.loc["base", "clean_accuracy"] - t.loc["noise", "clean_accuracy"]
                       for t in alone])
    assert noise["delta_t"] == pytest.approx(delta_t)
    assert noise["adaptive_des"] == pytest.approx(delta_d / (delta_t + ETA))
    for col in ("worst_defense_rate", "adaptive_des", "whitebox_des"):
        assert noise[f"{col}_lo"] <= noise[col] <= noise[f"{col}_hi"]
    text = render(tmp_path, raw)
    head = text[text.index("## Headline"):text.index("## mnist")]
    rows = [r for r in head.splitlines() if "| noise |" in r]
    assert len(rows) == 1 and "| mean of 3 seeds" in rows[0]
    assert "seed 0" not in head


def test_pooled_headline_intervals_add_the_seed_part(monkeypatch):
    """Seeds far apart: the pooled adaptive DES interval is far wider than its image part."""
    scored = attach_des(three_seed_study())
    reps = line_replicates(scored, FAST)

    def width() -> float:
        table = worst_case(scored, reps, pool=True)
        noise = table[table["defense"] == "noise"].iloc[0]
        return float(noise["adaptive_des_hi"] - noise["adaptive_des_lo"])

    pooled = width()
    monkeypatch.setattr(SeedDraws, "deviation", lambda self, values, seeds: 0.0)
    assert pooled > 2 * width()


def test_pooled_headline_ranks_on_the_pooled_resamples(monkeypatch):
    """Two defenses whose order swaps from seed to seed: apart on the images alone, either
    place within the noise once the seeds' variation is in the resamples the ranks compare."""
    scored = attach_des(three_seed_study({"a": (-2.5, -1.0, 0.5), "b": (0.5, -0.5, -1.5)}))
    reps = line_replicates(scored, FAST)

    def ranks() -> list[str]:
        table = worst_case(scored, reps, pool=True)
        return sorted(table.loc[table["defense"] != "base", "rank"])

    assert ranks() == ["1 (1–2)", "2 (1–2)"]
    monkeypatch.setattr(SeedDraws, "deviation", lambda self, values, seeds: 0.0)
    assert ranks() == ["1 (1–1)", "2 (2–2)"]


def test_one_seed_headline_is_left_as_it_is():
    raw = three_seed_study()
    scored = attach_des(raw[raw["seed"] == 0].reset_index(drop=True))
    reps = line_replicates(scored, FAST)
    pd.testing.assert_frame_equal(worst_case(scored, reps, pool=True), worst_case(scored, reps))
