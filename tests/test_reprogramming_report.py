"""The leaderboard's reprogramming section honours --base and --eta and writes only figures
beside the others (no stray reprogramming.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrsbench.report.leaderboard import write_leaderboard


def threat_line(defense: str, clean: float, curve: list[float]) -> dict:
    """A version 1 reprogramming line, as the runner wrote them."""
    return {
        "dataset": "cifar10", "defense": defense, "params": {}, "strength": None,
        "attack": "reprogram", "attack_params": {"kernel": 3, "epochs": len(curve)},
        "attack_strength": 3.0, "setting": "whitebox", "targeted": False, "kind": "threat",
        "n_examples": 100, "n_test": 10, "n_clean": 100, "clean_accuracy": clean,
        "attack_success_rate": curve[-1], "seed": 0, "hrsbench_version": "0.1.0",
        "finished_at": "2026-01-01T00:00:00+00:00", "reprogram_accuracy_per_epoch": curve,
        "reprogram_n_classes": 10,
    }


@pytest.fixture
def results(tmp_path: Path) -> Path:
    path = tmp_path / "results.jsonl"
    lines = [threat_line("base", 0.80, [0.5, 0.88]), threat_line("hrs", 0.75, [0.2, 0.30]),
             threat_line("dropout", 0.79, [0.6, 0.86])]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def section(md: str) -> str:
    return md[md.index("### Adversarial reprogramming"):]


def test_section_uses_the_given_eta_and_base(results: Path, tmp_path: Path) -> None:
    out, _ = write_leaderboard([results], tmp_path / "lb.md", eta=0.01)
    text = section(out.read_text())
    assert "η = 0.01;" in text
    hrs = (0.88 - 0.30) / (0.80 - 0.75 + 0.01)
    assert f"| {hrs:.2f} |" in text

    out, _ = write_leaderboard([results], tmp_path / "lb2.md", base="dropout", eta=0.01)
    hrs_vs_dropout = (0.86 - 0.30) / (0.79 - 0.75 + 0.01)
    assert f"| {hrs_vs_dropout:.2f} |" in section(out.read_text())


def test_plots_get_the_figure_only(results: Path, tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    _, figures = write_leaderboard([results], tmp_path / "lb.md", plots=plots)
    assert {f.name for f in figures} >= {"reprogramming.png", "reprogramming.svg"}
    assert not (plots / "reprogramming.md").exists()
