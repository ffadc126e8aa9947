"""How far the headline's worst case over attacks lies from the per-example truth, on simulated
attack lines whose success probabilities are known.

A study is one model and threat budget as the published leaderboards have them: 10 attacked
images × 9 targets (an image's pairs share an image effect) and ``repeats`` prediction draws
per adversarial example. Each line has a success probability per example; the truth is the
per-example worst case, the mean over examples of the largest probability over lines (an
attacker who knew, for each example, which line breaks it best). The estimate is the
report's own (:func:`hrsbench.report.worstcase.worst_rate`: picked on one half of the draws,
scored on the other, never weaker than the strongest single line), computed from simulated
counts exactly as from result lines.

Scenarios (``SCENARIOS``):

- ``distinct``: three different attacks, a weak one (about 15 % success), a strong one (about
  50 %) and a third (about 35 %) that breaks partly other examples; each breaks an example
  almost surely or almost never (a per-example probability near 0 or 1, as for an attack that
  either finds an adversarial example or not);
- ``graded``: the same three attacks with per-example probabilities spread over (0, 1): an
  example is broken on some draws only, and 2 picking draws often cannot tell the lines apart;
- ``published-like``: 3 weak lines and 8 strong ones that mostly agree on which examples they
  break, shaped like the published MNIST lines at ε = 64/255 (mean correlation of two lines'
  per-example success about 0.6, about 70 % of counts at 0 or all of the draws);
- ``copies``: a weak line and 8 runs of one attack (the same probabilities, fresh draws): the
  truth is that attack's rate, and any excess over it is selection on noise;
- ``near-copies``: a weak line and 8 variants of one attack whose per-example probabilities
  differ a little (logit jitter 0.3): the per-example truth lies a few points above each.

Errors are in defense-rate percentage points (estimate − truth): positive flatters the
defense, negative errs on the attack's side. Prints one JSON object per scenario and number of
draws, and a JSON summary last::

    python benchmarks/worstcase_bias.py --studies 400
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hrsbench.report.worstcase import Budget, worst_rate

N_IMAGES, PAIRS = 10, 9
#: Draws per adversarial example: the published runs' 5, and what more would buy.
REPEATS = (5, 10, 20)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _examples(rng: np.random.Generator, spread: float = 1.0) -> np.ndarray:
    """Per example, an image effect its 9 pairs share."""
    return np.repeat(rng.normal(0.0, spread, N_IMAGES), PAIRS)


def _attacks(rng: np.random.Generator, slope: float) -> np.ndarray:
    """Weak, strong and complementary attacks (3 × examples): a shared image effect plus an
    attack-specific per-example effect, on a logit scale ``slope`` (large: probabilities near
    0 or 1)."""
    image = _examples(rng)
    return np.stack([_sigmoid(slope * (shift + image + rng.normal(0.0, 1.0, image.shape)))
                     for shift in (-1.2, 0.0, -0.5)])


def _published_like(rng: np.random.Generator) -> np.ndarray:
    """3 weak and 8 strong lines sharing most of their per-example effect."""
    example = _examples(rng) + rng.normal(0.0, 0.7, N_IMAGES * PAIRS)
    shifts = [-1.8, -1.6, -1.4, *np.linspace(0.0, 1.2, 8)]
    return np.stack([_sigmoid(3.0 * (a + example + rng.normal(0.0, 0.3, example.shape)))
                     for a in shifts])


def _copies(rng: np.random.Generator, jitter: float) -> np.ndarray:
    """A weak line and 8 lines of one attack, their per-example logits ``jitter`` apart."""
    image = _examples(rng, 1.5)
    own = -0.3 + image + rng.normal(0.0, 1.0, image.shape)
    copies = [_sigmoid(own + rng.normal(0.0, jitter, own.shape) if jitter else own)
              for _ in range(8)]
    return np.stack([_sigmoid(-2.5 + image), *copies])


SCENARIOS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "distinct": lambda rng: _attacks(rng, 12.0),
    "graded": lambda rng: _attacks(rng, 1.5),
    "published-like": _published_like,
    "copies": lambda rng: _copies(rng, 0.0),
    "near-copies": lambda rng: _copies(rng, 0.3),
}


@dataclass(frozen=True)
class Figures:
    """One scenario at one number of draws, over many studies (defense-rate pp)."""

    scenario: str
    repeats: int
    studies: int
    #: mean and SD of (estimate − truth)
    bias: float
    sd: float
    #: mean of (strongest single line's true rate − truth): how much the per-example worst case
    #: exceeds the best line in truth
    best_line_gap: float
    #: mean of (printed best line − its expected rate): the floor's selection on noise
    floor_bias: float
    #: share of studies where the floor binds (the best line is stronger than the pick)
    floored: float
    #: the most the estimate's success rate fell short of any line's in a study (0: never)
    shortfall: float
    #: the mean error of the rule that scores lines tied in the picking half by their mean,
    #: without a floor: what the tie-break and the floor are for
    unfloored_mean_ties: float
    #: the shape of the simulated counts, to compare with real lines: share of counts at 0 or
    #: at all draws, and the mean correlation of two lines' per-example success
    all_or_nothing: float
    agreement: float


def _budget(wins: np.ndarray, picks: np.ndarray, repeats: int) -> Budget:
    k = len(wins)
    lines = pd.DataFrame({
        "attack": [f"a{i}" for i in range(k)], "setting": "whitebox",
        "n_test": N_IMAGES, "dataset": "sim",
        "defense_rate": 1.0 - wins.sum(axis=1) / (wins.shape[1] * repeats),
    })
    return Budget(lines, wins, picks, repeats, False, None)


def _mean_of_ties(successes: np.ndarray, picks: np.ndarray, repeats: int) -> np.ndarray:
    """The cross-fit that scores lines tied in the picking half by their mean, for comparison."""
    half, rest = repeats // 2, successes - picks

    def score(choose: np.ndarray, other: np.ndarray) -> np.ndarray:
        tied = choose == choose.max(axis=0, keepdims=True)
        return (other * tied).sum(axis=0) / tied.sum(axis=0)

    return (score(picks, rest) / (repeats - half) + score(rest, picks) / half) / 2


def simulate(scenario: str, repeats: int, studies: int, seed: int = 0) -> Figures:
    """Draw ``studies`` studies of ``scenario`` and compare the report's worst case with the
    per-example truth."""
    rng = np.random.default_rng(seed)
    rows = []
    shortfall = 0.0
    for _ in range(studies):
        p = SCENARIOS[scenario](rng)
        won = rng.random((repeats, *p.shape)) < p[None]
        wins, picks = won.sum(axis=0), won[: repeats // 2].sum(axis=0)
        found = worst_rate(_budget(wins, picks, repeats), None)
        assert found is not None
        truth = 1.0 - float(p.max(axis=0).mean())
        line_rates = 1.0 - wins.mean(axis=1) / repeats
        best = int(np.argmin(line_rates))
        with np.errstate(invalid="ignore"):
            agreement = np.nanmean(np.corrcoef(wins)[np.triu_indices(len(wins), 1)])
        rows.append((found.rate - truth, 1.0 - float(p.mean(axis=1).max()) - truth,
                     line_rates[best] - (1.0 - p[best].mean()), float(bool(found.floor)),
                     1.0 - _mean_of_ties(wins, picks, repeats).mean() - truth,
                     float(np.mean((wins == 0) | (wins == repeats))), agreement))
        shortfall = max(shortfall, found.rate - float(line_rates.min()))
    error, gap, floor, floored, mean_ties, extreme, agree = np.array(rows).T
    pp = 100.0
    return Figures(scenario, repeats, studies, round(pp * error.mean(), 2),
                   round(pp * error.std(), 2), round(pp * gap.mean(), 2),
                   round(pp * floor.mean(), 2), round(floored.mean(), 2),
                   round(pp * shortfall, 6), round(pp * mean_ties.mean(), 2),
                   round(extreme.mean(), 2), round(float(np.nanmean(agree)), 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    found = []
    for scenario in SCENARIOS:
        for repeats in REPEATS:
            figures = simulate(scenario, repeats, args.studies, args.seed)
            found.append(figures)
            print(json.dumps(figures.__dict__))
    print(json.dumps({"max_shortfall_pp": max(f.shortfall for f in found),
                      "bias_pp": {f"{f.scenario}/{f.repeats}": f.bias for f in found}}))


if __name__ == "__main__":
    main()
