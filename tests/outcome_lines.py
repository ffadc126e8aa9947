"""Hand-made result lines that carry per-example outcomes, drawn from known probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hrsbench.results.outcomes import encode_counts

N_IMAGES, PAIRS, REPEATS, N_CLEAN = 40, 9, 4, 300


def clean_line(defense: str, params: dict[str, Any], correct: np.ndarray,
               repeats: int = REPEATS, **extra: Any) -> dict[str, Any]:
    model = f"{defense}-{sorted(params.items())}"
    return {
        "dataset": "mnist", "n_train": None, "n_test": N_IMAGES, "n_clean": len(correct),
        "epochs": 5, "seed": 0, "defense": defense, "params": params, "strength": None,
        "attack": "none", "attack_params": {}, "attack_strength": 0.0, "setting": "none",
        "targeted": True, "repeats": repeats, "eot_samples": 1,
        "clean_accuracy": float(correct.mean() / repeats), "n_examples": 0,
        "attack_success_rate": None, "defense_rate": None, "clean_correct": encode_counts(correct),
        "cell_key": f"{model}-none", "model_key": model, "config_hash": "c0",
        "finished_at": "2026-01-01T00:00:00+00:00", "hrsbench_version": "0.1.0", **extra,
    }


def attack_line(defense: str, params: dict[str, Any], clean_accuracy: float, wins: np.ndarray,
                picks: np.ndarray | None = None, attack: str = "pgd", setting: str = "whitebox",
                repeats: int = REPEATS, eps: float = 0.1, stochastic: bool = True,
                targeted: bool = True, n_images: int = N_IMAGES, **extra: Any) -> dict[str, Any]:
    model = f"{defense}-{sorted(params.items())}"
    asr = float(wins.mean() / repeats)
    rec = {
        "dataset": "mnist", "n_train": None, "n_test": n_images, "n_clean": N_CLEAN,
        "epochs": 5, "seed": 0, "defense": defense, "params": params, "strength": None,
        "attack": attack, "attack_params": {"max_iter": 10}, "attack_strength": eps,
        "setting": setting, "targeted": targeted, "repeats": repeats, "eot_samples": 1,
        "clean_accuracy": clean_accuracy, "n_examples": len(wins), "attack_success_rate": asr,
        "defense_rate": 1.0 - asr, "successes": encode_counts(wins), "stochastic": stochastic,
        "cell_key": f"{model}-{attack}-{setting}-{eps}-{extra.get('tag', '')}",
        "model_key": model, "config_hash": "c0", "finished_at": "2026-01-01T00:00:00+00:00",
        "hrsbench_version": "0.1.0",
    }
    if picks is not None:
        rec["successes_pick"] = encode_counts(picks)
    extra.pop("tag", None)
    rec.update(extra)
    return rec


def draws(rng: np.random.Generator, p: np.ndarray, repeats: int = REPEATS
          ) -> tuple[np.ndarray, np.ndarray]:
    """Per example, wins over all ``repeats`` draws and over the first ``repeats // 2``."""
    won = rng.random((repeats, *p.shape)) < p[None]
    return won.sum(axis=0).ravel(), won[: repeats // 2].sum(axis=0).ravel()


def pair_probabilities(rng: np.random.Generator, shift: float, image: np.ndarray,
                       ) -> np.ndarray:
    """Success probability per (image, target) pair: a shared image effect (the pairs of one
    image are alike) plus pair noise, shifted per model."""
    noise = rng.normal(0.0, 0.3, (len(image), PAIRS))
    return 1.0 / (1.0 + np.exp(-(shift + image[:, None] + noise)))


def study(seed: int = 0, families: dict[str, list[float]] | None = None) -> pd.DataFrame:
    """A base and defense families (each a list of success-logit shifts, one per parameter
    set), attacked on the same images; clean correctness drawn per model."""
    rng = np.random.default_rng(seed)
    families = families or {"strong": [-3.0, -2.5], "weak": [0.6, 0.8]}
    image = rng.normal(0.0, 1.0, N_IMAGES)
    rows = []
    models = [("base", {}, 1.5, 0.98)] + [
        (name, {"rate": k}, shift, 0.92 - 0.02 * k)
        for name, shifts in families.items() for k, shift in enumerate(shifts)]
    for defense, params, shift, acc in models:
        correct = rng.binomial(REPEATS, acc, N_CLEAN)
        clean = clean_line(defense, params, correct)
        rows.append(clean)
        wins, picks = draws(rng, pair_probabilities(rng, shift, image))
        rows.append(attack_line(defense, params, clean["clean_accuracy"], wins, picks))
    return pd.DataFrame(rows)
