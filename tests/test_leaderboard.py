"""Leaderboards from several result files: merging, duplicate resolution, the markdown, the
figures, and the CLI's one-line errors for broken files."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hrsbench.cli import app
from hrsbench.errors import HrsbenchError
from hrsbench.report.leaderboard import write_leaderboard, write_run_reports
from hrsbench.report.merge import merge_results

GENERATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def line(defense: str, params: dict[str, Any], clean: float, attack: str = "pgd",
         eps: float = 0.1, setting: str = "whitebox", asr: float | None = None,
         at: str = "2026-01-01T00:00:00+00:00", **extra: Any) -> dict[str, Any]:
    """A result line as the runner writes it; the cell key depends only on the cell."""
    rec = {
        "dataset": "mnist", "n_train": None, "n_test": 20, "n_clean": 100, "epochs": 5,
        "seed": 0, "defense": defense, "params": params,
        "strength": next(iter(params.values()), None), "attack": attack,
        "attack_params": {} if attack == "none" else {"max_iter": 40},
        "attack_strength": 0.0 if attack == "none" else eps,
        "setting": "none" if attack == "none" else setting, "targeted": True, "repeats": 1,
        "eot_samples": 1, "clean_accuracy": clean, "clean_accuracy_std": 0.0,
        "n_examples": 0 if attack == "none" else 180, "attack_success_rate": asr,
        "attack_success_rate_std": None if asr is None else 0.01,
        "defense_rate": None if asr is None else 1 - asr,
        "cell_key": f"{defense}{sorted(params.items())}{attack}{eps}{setting}".replace(" ", ""),
        "config_hash": "cfg-" + defense, "finished_at": at, "hrsbench_version": "0.1.0",
    }
    rec.update(extra)
    return rec


def write(path: Path, records: list[dict[str, Any]], raw: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + raw)
    return path


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    """Two runs' files: run A has the base and a dropout sweep; run B, from another machine,
    an HRS sweep and a rerun of one dropout cell (finished later, different result)."""
    a = write(tmp_path / "a.jsonl", [
        line("base", {}, 0.99, "none"),
        line("base", {}, 0.99, asr=0.90),
        line("dropout", {"test_rate": 0.1}, 0.98, "none"),
        line("dropout", {"test_rate": 0.1}, 0.98, asr=0.70, grad_std=0.2),
        line("dropout", {"test_rate": 0.1}, 0.98, setting="eot", asr=0.80),
        line("dropout", {"test_rate": 0.3}, 0.95, asr=0.50, grad_std=0.4),
    ])
    b = write(tmp_path / "b.jsonl", [
        line("hrs", {"width": 5}, 0.985, asr=0.40, sanity={"grad_masking": False}),
        line("hrs", {"width": 10}, 0.991, asr=0.30),
        line("hrs", {"width": 10}, 0.991, setting="eot", asr=0.35),
        # the rerun: Δd = 0.35 − 0.10 = 0.25 replaces run A's 0.20
        line("dropout", {"test_rate": 0.1}, 0.98, asr=0.65, at="2026-01-05T00:00:00+00:00",
             grad_std=0.25),
    ])
    return a, b


def test_merge_keeps_latest_and_reports_duplicates(runs: tuple[Path, Path]) -> None:
    a, b = runs
    merged = merge_results(a, b)
    assert len(merged.lines) == 9  # 10 lines, one cell twice
    [dup] = merged.duplicates
    assert (str(dup.kept), [str(o) for o in dup.dropped]) == (f"{b}:4", [f"{a}:4"])
    assert dup.reason == "most recent finished_at"
    kept = merged.lines[merged.lines["cell_key"] == dup.cell_key].iloc[0]
    assert kept["attack_success_rate"] == 0.65


def test_tie_is_broken_by_content_hash_whatever_the_order(tmp_path: Path) -> None:
    x = write(tmp_path / "x.jsonl", [line("base", {}, 0.99, asr=0.90)])
    y = write(tmp_path / "y.jsonl", [line("base", {}, 0.99, asr=0.80)])
    one, two = merge_results(x, y), merge_results(y, x)
    assert one.lines.to_dict("records") == two.lines.to_dict("records")
    assert one.duplicates[0].reason == "same finished_at; highest content hash"


def test_leaderboard_markdown_is_one_coherent_report(runs: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    a, b = runs
    md, _ = write_leaderboard([a, b], tmp_path / "lb.md", generated=GENERATED)
    text = md.read_text()
    assert "| data as of | 2026-01-02T03:04:05+00:00 |" in text
    assert f"`{a}` (6 lines), `{b}` (4 lines)" in text
    assert "`cfg-base`, `cfg-dropout`, `cfg-hrs`" in text
    assert "## Duplicate cells" in text and "most recent finished_at" in text
    # one dataset section with one clean-accuracy table and a table per strength and setting
    assert text.count("## mnist") == 1
    assert text.count("### Clean accuracy") == 1
    assert "### pgd · ε=0.1 · whitebox · targeted" in text
    assert "### pgd · ε=0.1 · eot · targeted" in text
    # white-box ranking against the base's defense rate 0.10 and clean accuracy 0.99:
    # HRS width 5: Δd = 0.60 − 0.10 = 0.50, Δt = 0.005, DES = 0.50 / 0.007 = 71.43
    # HRS width 10: Δd = 0.60, Δt = −0.001, DES = 0.60 / 0.001 = 600; mean 335.71
    # dropout 0.1 (the rerun): 0.25 / 0.012 = 20.83; dropout 0.3: 0.40 / 0.042 = 9.52; mean 15.18
    wb = section(text, "### pgd · ε=0.1 · whitebox · targeted")
    assert re.search(r"\| 1 \| hrs \| 2/2 \| 335\.71 \|", wb)
    assert re.search(r"\| 2 \| dropout \| 2/2 \| 15\.18 \|", wb)
    assert "nan" not in text
    # the detail rows: base as reference, the lines' own sanity field as a column
    assert "| ref | base |" in wb
    assert "| sanity |" in wb and "grad_masking=False" in wb
    # EOT: the deterministic base's white-box line serves as reference, marked as such
    eot = section(text, "### pgd · ε=0.1 · eot · targeted")
    assert "via white-box" in eot
    # HRS EOT: Δd = 0.65 − 0.10 = 0.55, Δt = −0.001, DES = 0.55 / 0.001 = 550
    assert re.search(r"\| 1 \| hrs \| 1/1 \| 550\.00 \|", eot)


def section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n### ", start + 1)
    return text[start:end if end > 0 else None]


def test_order_of_files_does_not_change_the_report(runs: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    a, b = runs
    ab, _ = write_leaderboard([a, b], tmp_path / "ab.md", generated=GENERATED)
    ba, _ = write_leaderboard([b, a], tmp_path / "ba.md", generated=GENERATED)

    def body(p: Path) -> list[str]:
        return [x for x in p.read_text().splitlines() if not x.startswith("| sources")]

    assert body(ab) == body(ba)


def test_leaderboard_with_plots(runs: tuple[Path, Path], tmp_path: Path) -> None:
    md, figures = write_leaderboard(list(runs), tmp_path / "out" / "lb.md",
                                    plots=tmp_path / "out" / "fig", generated=GENERATED)
    names = {f.name for f in figures}
    for stem in ("asr-mnist-pgd-targeted", "des-mnist-pgd-eps0.1-whitebox-targeted",
                 "des-mnist-pgd-eps0.1-eot-targeted",
                 "gradstd-mnist-pgd-eps0.1-whitebox-targeted"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    assert all(f.stat().st_size > 0 for f in figures)
    assert "(fig/asr-mnist-pgd-targeted.png)" in md.read_text()


@pytest.mark.parametrize(("raw", "message"), [
    ("{not json\n", "malformed result line"),
    ('{"dataset": "mnist"}\n', "lacks field 'defense'"),
])
def test_broken_file_is_an_error_naming_file_and_line(tmp_path: Path, raw: str,
                                                      message: str) -> None:
    bad = write(tmp_path / "bad.jsonl", [line("base", {}, 0.99, "none")], raw)
    with pytest.raises(HrsbenchError, match=re.escape(f"{bad}:2: ") + ".*" + re.escape(message)):
        merge_results(bad)
    with pytest.raises(HrsbenchError, match="no such results file"):
        merge_results(tmp_path / "missing.jsonl")


def test_cli_leaderboard_merges_two_runs(runs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "lb.md"
    result = CliRunner().invoke(app, ["leaderboard", *map(str, runs), "--out", str(out),
                                      "--dt-range", "0", "0.02"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "Δt ∈ [0, 0.02]" in text
    # inside Δt ∈ [0, 0.02] HRS keeps width 5 (Δt 0.005, DES 71.43), width 10 (Δt −0.001) drops
    assert re.search(r"\| 1 \| hrs \| 1/2 \| 71\.43 \|",
                     section(text, "### pgd · ε=0.1 · whitebox · targeted"))


def test_cli_plot(runs: tuple[Path, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plot", *map(str, runs), "--out", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f" / "asr-mnist-pgd-targeted.svg").is_file()


@pytest.mark.parametrize("raw", ["{not json\n", '{"dataset": "mnist"}\n'])
def test_cli_broken_file_is_one_line_and_exit_1(runs: tuple[Path, Path], tmp_path: Path,
                                                raw: str) -> None:
    bad = write(tmp_path / "bad.jsonl", [line("base", {}, 0.99, "none")], raw)
    result = CliRunner().invoke(app, ["leaderboard", str(runs[0]), str(bad), "--out",
                                      str(tmp_path / "lb.md")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"{bad}:2:" in lines[0]
    assert not (tmp_path / "lb.md").exists()


def test_sanity_verdicts_are_computed_when_lines_carry_none(tmp_path: Path) -> None:
    pytest.importorskip("hrsbench.report.sanity")
    from hrsbench.report.build import build_report

    plain = write(tmp_path / "p.jsonl", [line("base", {}, 0.99, asr=0.9),
                                         line("base", {}, 0.99, "fgsm", asr=0.5)])
    report = build_report(merge_results(plain))
    assert report.flag_field == "sanity"
    assert report.scored["sanity"].notna().all()


def test_run_reports_land_beside_the_results(tmp_path: Path) -> None:
    # what `hrsbench run` calls last; a base-only run (the quick preset) draws one figure
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write(run_dir / "results.jsonl", [line("base", {}, 0.99, "none"),
                                      line("base", {}, 0.99, asr=0.9)])
    md = write_run_reports(run_dir)
    assert md == run_dir / "leaderboard.md" and md.is_file()
    assert (run_dir / "plots" / "asr-mnist-pgd-targeted.png").is_file()
    assert write_run_reports(tmp_path / "empty") is None


def test_redrawn_figures_are_byte_identical(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """No date or random ids in the files: a no-op rerun leaves published figures untouched."""
    a, b = runs
    _, first = write_leaderboard([a, b], tmp_path / "1.md", plots=tmp_path / "one")
    _, second = write_leaderboard([a, b], tmp_path / "2.md", plots=tmp_path / "two")
    assert first and [p.name for p in first] == [p.name for p in second]
    for p, q in zip(first, second, strict=True):
        assert p.read_bytes() == q.read_bytes(), p.name


def test_headline_rows_without_a_des_have_no_rank(tmp_path):
    """A model more accurate than the base by η or more has no DES, hence no rank (not nan)."""
    from hrsbench.report.leaderboard import write_leaderboard

    published = Path(__file__).resolve().parents[1] / "leaderboards" / "cifar10-paper-cpu"
    out, _ = write_leaderboard([published / "results.jsonl"], tmp_path / "lb.md")
    rows = [line for line in out.read_text().splitlines() if "no DES: Δt + η ≤ 0" in line]
    assert rows and all(line.startswith("| — |") for line in rows)
    assert "| nan |" not in out.read_text()


def test_headline_rows_carry_their_own_budgets_sanity_verdict(tmp_path):
    """Each headline table shows each model's verdict at that table's budget (ε, targeting,
    attacked images), not the verdict of some other budget of the model."""
    from collections import Counter

    from hrsbench.report.sanity import budget_verdicts

    repo = Path(__file__).resolve().parents[1] / "leaderboards" / "mnist-paper"
    paths = [repo / "results.jsonl", repo / "headline" / "results.jsonl"]
    out = tmp_path / "lb.md"
    write_leaderboard(paths, out)
    expected: dict[tuple[str, int], Counter[str]] = {}
    for (_, eps, _targeted, n_test), verdict in budget_verdicts(
            merge_results(*paths).records).items():
        expected.setdefault((f"{eps:g}", int(n_test)), Counter())[verdict] += 1
    text = out.read_text()
    sections = re.findall(r"^### Headline · mnist · ε=(\S+) · targeted · (\d+) attacked images"
                          r"\n(.*?)(?=^### |^## |\Z)", text, re.M | re.S)
    assert len(sections) >= 4
    checked = 0
    for eps, n_test, body in sections:
        rows = [r.split(" | ") for r in body.splitlines() if r.startswith("| ")]
        if not rows or "sanity" not in rows[0]:
            continue  # a saturated budget prints no ranking
        col = rows[0].index("sanity")
        shown = Counter(r[col] for r in rows[1:])  # the header, then every model (no "|---")
        assert shown == expected[(eps, int(n_test))], (eps, n_test)
        checked += 1
    assert checked >= 3
