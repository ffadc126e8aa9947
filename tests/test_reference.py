"""A paper's numbers beside ours: lookup of each reference entry in the results, the rendered
comparison, bad reference files, and the config key that names one."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from hrsbench.engine.config import load_config
from hrsbench.errors import HrsbenchError
from hrsbench.report.build import build_report
from hrsbench.report.leaderboard import write_leaderboard
from hrsbench.report.merge import merge_results
from hrsbench.report.reference import load_reference, most_images
from tests.test_leaderboard import line, write

REFERENCE = """
title = "Toy paper"

[[entries]]
metric = "clean_accuracy"
source = "Table A"
defense = "dropout"
params = { test_rate = 0.1 }
paper = 0.99

[[entries]]
metric = "attack_success_rate"
source = "Table B"
defense = "dropout"
params = { test_rate = 0.3 }
attack = "pgd"
attack_strength = 0.1
setting = "whitebox"
paper = 0.40

[[entries]]
metric = "mean_des"
source = "Table C"
defense = "dropout"
attack = "pgd"
attack_params = { max_iter = 40 }
attack_strength = 0.1000000001
setting = "whitebox"
paper = 2.0
note = "setting assumed"

[[entries]]
metric = "defense_rate"
source = "Table D"
defense = "dropout"
params = { test_rate = 0.3 }
attack = "pgd"
setting = "whitebox"
paper = 0.5

[[entries]]
metric = "clean_accuracy"
source = "Table A"
defense = "hrs"
params = { channels = "30x30" }
paper = 0.9885
"""


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return write(tmp_path / "r.jsonl", [
        line("base", {}, 0.99, "none"),
        line("base", {}, 0.99, asr=0.90),
        line("dropout", {"test_rate": 0.1, "train_rate": None}, 0.98, "none"),
        line("dropout", {"test_rate": 0.1, "train_rate": None}, 0.98, asr=0.70),
        line("dropout", {"test_rate": 0.3, "train_rate": None}, 0.95, asr=0.50),
        line("dropout", {"test_rate": 0.3, "train_rate": None}, 0.95, eps=0.2, asr=0.80),
        line("dropout", {"test_rate": 0.3, "train_rate": None}, 0.95, setting="eot", asr=0.9),
        # Another schedule of the same attack: its own family summary, not in Table C's mean.
        line("base", {}, 0.99, asr=0.95, attack_params={"max_iter": 5}, cell_key="b5"),
        line("dropout", {"test_rate": 0.1, "train_rate": None}, 0.98, asr=0.10,
             attack_params={"max_iter": 5}, cell_key="d5"),
    ])


def test_entries_are_matched_by_subset_and_eps_tolerance(results: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref.toml"
    ref.write_text(REFERENCE)
    md, _ = write_leaderboard([results], tmp_path / "lb.md", reference=ref)
    text = md.read_text()
    # The comparison is the headline: before the long per-attack tables.
    assert text.index("## Against the paper: Toy paper") < text.index("## mnist")
    # Clean accuracy of dropout 0.1 from its clean line: 98 % vs the paper's 99 %.
    assert "| Table A | dropout test_rate=0.1 | 99.00% | 98.00% | -1.00 pp |  |" in text
    assert "| Table B | dropout test_rate=0.3 · pgd ε=0.1 whitebox | 40.00% | 50.00% | +10.00 pp" \
        in text
    # Mean DES by hand: base defends 10 %. test_rate 0.1: Δd = 0.20, Δt = 0.01 → 0.20/0.012;
    # test_rate 0.3: Δd = 0.40, Δt = 0.04 → 0.40/0.042. Mean = 13.095…; the max_iter=5 lines
    # (dropout 0.1 there: DES 71) are another family summary and stay out of it.
    des = (0.20 / 0.012 + 0.40 / 0.042) / 2
    assert (f"| Table C | dropout · pgd ε=0.1 whitebox max_iter=40 | 2 | {des:.4g} | "
            f"{des - 2:+.4g} | setting assumed |") in text
    # A cell the results lack is reported, not dropped.
    assert "| Table A | hrs channels=30x30 | 98.85% | — | not run |" in text


def test_measured_values_match_the_report(results: Path, tmp_path: Path) -> None:
    from hrsbench.report.reference import measured

    ref = tmp_path / "ref.toml"
    ref.write_text(REFERENCE)
    report = build_report(merge_results(results))
    values = [measured(e, report.scored, report.summary) for e in load_reference(ref).entries]
    assert values[0] == pytest.approx(0.98)
    assert values[1] == pytest.approx(0.50)
    # No ε given: the mean over both white-box strengths, (0.5 + 0.2) / 2; EOT left out.
    assert values[3] == pytest.approx(0.35)
    assert values[4] is None


@pytest.mark.parametrize("text, message", [
    ('[[entries]]\nmetric = "accuracy"\npaper = 1', "metric 'accuracy'"),
    ('[[entries]]\nmetric = "mean_des"\npaper = 1\nstrenght = 2', "unknown key(s) ['strenght']"),
    ('[[entries]]\nmetric = "mean_des"', "lacks the paper's value"),
    ('titel = "x"', "unknown key(s) ['titel']"),
    ("[[entries", "not valid TOML"),
])
def test_bad_reference_files_name_the_fix(tmp_path: Path, text: str, message: str) -> None:
    ref = tmp_path / "ref.toml"
    ref.write_text(text)
    with pytest.raises(HrsbenchError, match=re.escape(message)):
        load_reference(ref)


def test_config_reference_resolves_beside_the_file_or_builtin(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(REFERENCE)
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text('reference = "mine.toml"\n[[defenses]]\nname = "base"\n')
    cfg, _ = load_config(cfg_file)
    assert Path(cfg.reference) == tmp_path / "mine.toml"
    # The reference does not change what is computed, so not the config hash either.
    plain = tmp_path / "plain.toml"
    plain.write_text('[[defenses]]\nname = "base"\n')
    assert load_config(plain)[0].hash == cfg.hash
    cfg_file.write_text('reference = "mnist-paper"\n[[defenses]]\nname = "base"\n')
    assert load_reference(load_config(cfg_file)[0].reference).entries
    cfg_file.write_text('reference = "nope"\n[[defenses]]\nname = "base"\n')
    with pytest.raises(HrsbenchError, match="reference 'nope' is neither"):
        load_config(cfg_file)


def test_rewriting_from_the_same_results_is_byte_identical(results: Path, tmp_path: Path) -> None:
    """Dated by the data, not the clock: a rerun with nothing to do changes no published file."""
    first = write_leaderboard([results], tmp_path / "a.md")[0].read_text()
    second = write_leaderboard([results], tmp_path / "a.md")[0].read_text()
    assert first == second
    assert "| data as of | 2026-01-01T00:00:00+00:00 |" in first


def test_a_cell_attacked_on_several_image_sets_is_read_from_the_largest():
    """Merged runs may attack one cell on 10 and on 40 images: the paper's value is compared
    with the 40-image estimate, not an average of the two."""
    rows = pd.DataFrame({"n_test": [10, 40, 40], "defense_rate": [0.2, 0.5, 0.6]})
    assert most_images(rows)["defense_rate"].tolist() == [0.5, 0.6]
    assert most_images(rows.iloc[:1])["n_test"].tolist() == [10]
    assert most_images(rows.drop(columns="n_test")).equals(rows.drop(columns="n_test"))


PROTOCOL = """
[protocol]
epochs = 40
eps_convention = "ε in pixels of 0–255"
optimiser = { pgd = "pgd-adam" }
[protocol.sweeps]
dropout = { test_rate = [0.1, 0.9] }
"""


def test_a_row_made_otherwise_than_the_paper_is_not_comparable(results: Path,
                                                              tmp_path: Path) -> None:
    """Lines trained 5 epochs against a paper's 40: every row says "not comparable", names what
    differs, and claims nothing about the paper's value and our interval."""
    ref = tmp_path / "ref.toml"
    ref.write_text(PROTOCOL + REFERENCE)
    assert load_reference(ref).protocol.epochs == 40
    text = write_leaderboard([results], tmp_path / "lb.md", reference=ref)[0].read_text()
    rows = [r for r in text.splitlines() if r.startswith("| Table ") and "not run" not in r]
    assert len(rows) == 4
    for row in rows:
        assert "| not comparable | differs: epochs (paper 40, ours 5)" in row
        assert "interval" not in row
    clean = next(r for r in rows if r.startswith("| Table A |"))
    assert "ε convention" not in clean and "optimiser" not in clean  # no threat there
    des = next(r for r in rows if r.startswith("| Table C |"))
    assert "ε convention (ε in pixels of 0–255)" in des
    assert "optimiser (the paper's pgd steps as pgd-adam does; ours ran pgd)" in des
    assert "sweep (test_rate from 0.1 to 0.9 in the paper, from 0.1 to 0.3 here)" in des
    assert des.endswith("; setting assumed |")  # the entry's own note stays


def test_only_a_comparable_row_with_a_bounded_interval_gets_a_verdict(tmp_path: Path) -> None:
    from hrsbench.report.reference import Entry, Protocol, differences

    lines = pd.DataFrame({"epochs": [40, 40], "attack": ["pgd-adam"] * 2,
                          "params": [{"test_rate": 0.1}, {"test_rate": 0.9}]})
    protocol = Protocol(epochs=40, optimiser={"pgd": "pgd-adam"},
                        sweeps={"dropout": {"test_rate": [0.1, 0.9]}})
    des = Entry("mean_des", 2.0, defense="dropout", attack="pgd")
    assert differences(des, protocol, lines) == []
    assert differences(Entry("mean_des", 2.0, defense="dropout", attack="pgd",
                             assumed="the white-box setting"), protocol, lines) == [
        "assumed the white-box setting"]
    assert differences(des, Protocol(epochs=20), lines) == ["epochs (paper 20, ours 40)"]
    # an unbounded interval: no verdict either way
    from hrsbench.report import reference

    scored = pd.DataFrame([{"defense": "hrs", "params": {}, "attack": "pgd",
                            "attack_strength": 0.1, "setting": "whitebox", "n_test": 10,
                            "via_whitebox": False, "epochs": 40, "des": 1.0,
                            "des_note": None, "attack_params": {}}])
    summary = pd.DataFrame([{"defense": "hrs", "attack": "pgd", "attack_strength": 0.1,
                             "setting": "whitebox", "attack_params_key": "{}", "n_test": 10,
                             "mean_des": 12.0, "mean_des_lo": 10.8,
                             "mean_des_hi": float("inf")}])
    entry = Entry("mean_des", 35.43, defense="hrs", attack="pgd", attack_strength=0.1,
                  setting="whitebox")
    row = reference._row(entry, Protocol(epochs=40), scored, summary, rate=False)
    assert row[3] == "12 [10.8, ∞]" and row[4] == "-23.43"
    assert row[5] == "our interval is unbounded: no verdict"
