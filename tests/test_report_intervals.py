"""The leaderboard with per-example outcomes: headline table, intervals, tied ranks and the
sentence on resolved orderings; η in the unit of Δt; groups where nothing breaks; the paper
comparison's intervals and its 'no DES' rows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hrsbench.report.leaderboard import write_leaderboard
from hrsbench.results.migrate import migrate
from tests.outcome_lines import attack_line, clean_line, study

OUTCOMES = ("successes", "successes_pick", "clean_correct")


def v2(record: dict[str, Any]) -> dict[str, Any]:
    """A hand-made line as the runner writes it now: per-example outcomes among the metrics."""
    record = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in record.items()}
    line = migrate(record)
    extra = line["metrics"]["extra"]
    for k in OUTCOMES:
        if k in extra:
            line["metrics"][k] = extra.pop(k)
    return line


def render(tmp_path: Path, df: pd.DataFrame, **kwargs: Any) -> str:
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(v2(r)) + "\n" for r in df.to_dict("records")))
    md, _ = write_leaderboard([path], tmp_path / "lb.md", **kwargs)
    return md.read_text()


def test_leaderboard_opens_with_the_headline_and_carries_intervals_and_ties(tmp_path):
    text = render(tmp_path, study(families={"strong": [-3.0, -2.5], "weak": [0.6, 0.8],
                                            "weaker": [0.7, 0.9]}))
    assert text.index("## Headline: the worst case over attacks") < text.index("## mnist")
    head = text[text.index("### Headline · mnist · ε=0.1 · targeted · 40 attacked images"):]
    row = next(r for r in head.splitlines() if r.startswith("| 1 (1–1) | strong | rate=0 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    # clean acc, worst-case defense rate, adaptive DES and white-box DES each carry an interval
    assert all(" [" in c and c.endswith("]") for c in cells[3:7])
    assert cells[7] == "pgd (whitebox)"
    # models whose adaptive DES differ within the noise share a range of places
    assert "| 3 (3–4) | weak | rate=0 |" in head and "| 4 (3–4) | weaker | rate=0 |" in head
    # family ranks: strong clearly first, weak and weaker second or third
    assert "| 1 (1–1) | strong | 2/2 |" in text
    assert "| 2 (2–3) | weak | 2/2 |" in text and "| 3 (2–3) | weaker | 2/2 |" in text
    assert "Resolved at 95 %: strong > weak, strong > weaker." in text
    assert "Not resolved at 95 %: weak vs weaker" in text
    # and what more attacked images would do: here the 300 clean images' error in Δt, which
    # they do not shrink, is already wider than the gap
    assert re.search(r"weak vs weaker \(difference [^;]*; more attacked images alone would not "
                     r"resolve it: Δt's clean-image error is wider than the difference\)", text)
    assert "η | 0.002 (0.2 pp, the unit of Δt)" in text


def test_lines_without_outcomes_render_without_brackets(tmp_path):
    df = study().drop(columns=list(OUTCOMES))
    text = render(tmp_path, df)
    tables = text[text.index("## mnist"):]
    assert "[" not in tables.replace("[95 %]", "")
    assert "strongest single line stands in for the worst case" in text


def test_nothing_is_ranked_where_every_line_resists(tmp_path):
    zero = np.zeros(20 * 9, dtype=int)
    rows = []
    for defense, params in (("base", {}), ("noise", {"sigma": 0.1})):
        clean = clean_line(defense, params, np.full(100, 4))
        rows += [clean, attack_line(defense, params, clean["clean_accuracy"], zero, zero,
                                    n_images=20)]
    text = render(tmp_path, pd.DataFrame(rows))
    assert "the attack breaks nothing, so no defense is ranked" in text
    assert "| 1 | noise" not in text and "| — | noise" in text  # neither table ranks it


def test_a_saturated_budget_ranks_nobody_and_gives_no_des(tmp_path):
    """Every model, the base included, broken on every example by its strongest attack: the
    headline says so in one line, without ranks, DES or sentences on resolution, and the
    table of the attack that breaks everything ranks nobody either."""
    pairs = 20 * 9
    rows = []
    rng = np.random.default_rng(2)
    for defense, params in (("base", {}), ("noise", {"sigma": 0.1}), ("blur", {"k": 3})):
        clean = clean_line(defense, params, rng.binomial(4, 0.95, 100))
        rows.append(clean)
        for attack, wins in (("pgd", np.full(pairs, 4)), ("fgsm", rng.binomial(4, 0.5, pairs))):
            rows.append(attack_line(defense, params, clean["clean_accuracy"], wins, wins // 2,
                                    attack=attack, n_images=20, stochastic=defense != "base"))
    text = render(tmp_path, pd.DataFrame(rows))
    head = text[text.index("### Headline"):text.index("## mnist")]
    assert "Saturated: every model's worst-case defense rate, the base's included, is 0 %" in head
    assert "DES" not in head.split("\n", 3)[-1]  # the table: no DES column
    assert "(1–" not in head and "| ref |" not in head
    pgd = text[text.index("### pgd"):]
    pgd = pgd[:pgd.find("\n### ") if "\n### " in pgd else None]
    assert "has a 0 % defense rate: the attack breaks every attacked example" in pgd
    assert "Resolved" not in pgd and "would resolve" not in pgd and "projection" not in pgd
    assert "(1–" not in pgd
    # the FGSM table is not saturated: ranked, with ranges
    assert "(1–" in text[text.index("### fgsm"):text.index("### pgd")]


def test_paper_rows_show_our_interval_and_say_why_a_des_is_missing(tmp_path):
    rng = np.random.default_rng(1)
    df = study()
    # a family more accurate than the base by more than η: no DES anywhere
    wins = rng.binomial(4, 0.3, 40 * 9)
    clean = clean_line("sharp", {"k": 1}, np.full(300, 4))
    df = pd.concat([df, pd.DataFrame([clean, attack_line("sharp", {"k": 1}, 1.0, wins,
                                                         rng.binomial(2, 0.3, 40 * 9))])])
    ref = tmp_path / "ref.toml"
    ref.write_text('title = "Toy paper"\n'
                   '[[entries]]\nmetric = "defense_rate"\nsource = "T1"\ndefense = "weak"\n'
                   'params = { rate = 0 }\nattack = "pgd"\nattack_strength = 0.1\n'
                   'setting = "whitebox"\npaper = 0.40\n'
                   '[[entries]]\nmetric = "mean_des"\nsource = "T2"\ndefense = "sharp"\n'
                   'attack = "pgd"\nattack_strength = 0.1\nsetting = "whitebox"\npaper = 5.0\n')
    text = render(tmp_path, df, reference=ref)
    row = next(r for r in text.splitlines() if r.startswith("| T1 |"))
    assert "[" in row and "paper's value inside our 95 % interval" in row
    row = next(r for r in text.splitlines() if r.startswith("| T2 |"))
    assert "no DES: Δt + η ≤ 0" in row and "not run" not in row


def test_merged_runs_on_different_image_sets_get_a_table_each(tmp_path):
    """The same threat attacked on 40 images by one run and on the first 10 by another: a family
    table per image set, each counting every model once, titled with its image count."""
    from hrsbench.results.outcomes import decode_counts

    big = study(families={"strong": [-3.0, -2.5], "weak": [0.6, 0.8]})
    small = []
    for r in big[big["attack"] != "none"].to_dict("records"):
        wins, picks = decode_counts(r["successes"]), decode_counts(r["successes_pick"])
        small.append(attack_line(r["defense"], r["params"], r["clean_accuracy"], wins[:90],
                                 picks[:90], n_images=10, tag="10"))
    text = render(tmp_path, pd.concat([big, pd.DataFrame(small)], ignore_index=True))
    for n in (10, 40):
        title = f"### pgd · ε=0.1 · whitebox · targeted · {n} attacked images"
        assert text.count(title) == 1
        section = text[text.index(title):].split("\n### ")[0]
        assert "| strong | 2/2 |" in section and "| weak | 2/2 |" in section
        assert f"### Headline · mnist · ε=0.1 · targeted · {n} attacked images" in text


def test_a_budget_the_base_resists_says_defenses_can_only_lose(tmp_path):
    """The base resists everything, a defense loses a few pairs: ranked, but the table says
    that DES can only be at most 0 there."""
    pairs = 20 * 9
    rng = np.random.default_rng(3)
    rows = []
    for defense, wins in (("base", np.zeros(pairs, dtype=int)),
                          ("noise", rng.binomial(4, 0.05, pairs)),
                          ("blur", rng.binomial(4, 0.02, pairs))):
        clean = clean_line(defense, {}, rng.binomial(4, 0.95, 100))
        rows += [clean, attack_line(defense, {}, clean["clean_accuracy"], wins, wins // 2,
                                    n_images=20, stochastic=defense != "base")]
    text = render(tmp_path, pd.DataFrame(rows))
    head = text[text.index("### Headline"):text.index("## mnist")]
    assert "`base` resists every attack at this budget (100 %)" in head
    assert "Saturated" not in head and "(1–" in head
