"""Every bad input a user or a reliability tester tried is refused in one line on stderr, exit 1,
no traceback, and before any model is built (issue 17's "Why" 1-3)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hrsbench.cli import app

BASE = '[[defenses]]\nname = "base"\n'
TINY = 'n_train = 64\nn_test = 1\nn_clean = 20\nepochs = 1\nrepeats = 1\n' + BASE


def attack(strengths: str, extra: str = "") -> str:
    return BASE + f'[[attacks]]\nname = "pgd"\nstrengths = {strengths}\n{extra}'


# (config text, extra CLI arguments, the message expected on the one stderr line)
CASES = {
    "strength -0.25": (attack("[-0.25]"), [], r"strengths\[0\] must be ≥ 0, not -0\.25"),
    "strength nan": (attack("[nan]"), [], r"must be a finite number, not nan"),
    "strength inf": (attack("[inf]"), [], r"must be a finite number, not inf"),
    "strength 1.5": (attack("[1.5]"), [], r"eps 1\.5 exceeds 1"),
    "n_test -3": ("n_test = -3\n" + BASE, [], r"n_test must be ≥ 1, not -3"),
    "n_test 20000": ("n_test = 20000\nn_train = 64\n" + attack("[0.1]"), [],
                     r"n_test = 20000, but mnist has only 10000 test images"),
    "epochs -1": ("epochs = -1\n" + BASE, [], r"epochs must be ≥ 1, not -1"),
    "n_train 0": ("n_train = 0\n" + BASE, [], r"n_train must be ≥ 1, not 0"),
    "n_train 70000": ("n_train = 70000\n" + BASE, [], r"asked for 70000 train examples"),
    'n_test "5"': ('n_test = "5"\n' + BASE, [], r'n_test must be an integer, not "5"'),
    "n_test 0": ("n_test = 0\n" + BASE, [], r"n_test must be ≥ 1, not 0"),
    "repeats 0": ("repeats = 0\n" + BASE, [], r"repeats must be ≥ 1, not 0"),
    "batch_size 0": ("batch_size = 0\n" + BASE, [], r"batch_size must be ≥ 1, not 0"),
    'epochs "two"': ('epochs = "two"\n' + BASE, [], r'epochs must be an integer, not "two"'),
    "strengths 0.25": (attack("0.25"), [],
                       r"strengths must be a list, e\.g\. strengths = \[0\.25\]"),
    'strengths ["big"]': (attack('["big"]'), [], r'strengths\[0\] must be a number, not "big"'),
    'settings "whitebox"': (attack("[0.1]", 'settings = "whitebox"\n'), [],
                            r'settings must be a list, e\.g\. settings = \["whitebox"\]'),
    'defenses "base"': ('defenses = "base"\n', [], r"defenses must be a list of tables"),
    "no defenses": ("n_test = 3\n", [], r"no \[\[defenses\]\] listed"),
    "--device bogus": (TINY, ["--device", "bogus"], r"--device 'bogus' is not a device"),
    "--device cuda:7": (TINY, ["--device", "cuda:7"], r"--device cuda:7: "),
}


@pytest.fixture
def no_model(monkeypatch):
    """Building a defense's model fails the test: every case must be refused before."""
    import hrsbench.engine.runner

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(hrsbench.engine.runner, "obtain_model", refuse)


def one_line_error(result, pattern: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert re.search(pattern, lines[0]), lines[0]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("case", CASES)
def test_bad_config_or_option_is_one_line_before_any_model(case, tmp_path, data_dir, no_model):
    text, extra, pattern = CASES[case]
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    result = invoke("run", str(cfg), "--out", str(tmp_path / "o"), "--data-dir", str(data_dir),
                    *extra)
    one_line_error(result, pattern)
    assert not list((tmp_path / "model-cache").glob("*.pt"))


def test_config_that_is_a_directory_or_not_utf8(tmp_path, no_model):
    one_line_error(invoke("run", str(tmp_path)), r"is a directory; give a TOML file")
    cfg = tmp_path / "latin.toml"
    cfg.write_bytes("dataset = 'mnïst'\n".encode("latin-1"))
    one_line_error(invoke("run", str(cfg)), r"is not UTF-8 text")


def test_out_that_is_a_file_or_under_a_file(tmp_path, no_model):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    file = tmp_path / "file"
    file.write_text("x")
    one_line_error(invoke("run", str(cfg), "--out", str(file)), r"--out .* is a file, not a folder")
    one_line_error(invoke("run", str(cfg), "--out", str(file / "sub")),
                   r"cannot write there: Not a directory")


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write in: read-only by mode, or for root (whom modes do not
    stop) a sysfs folder."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        return ro
    if not Path("/sys/kernel").is_dir():
        pytest.skip("running as root without /sys: no folder is read-only to this process")
    return Path("/sys/kernel")


def test_out_that_is_read_only(tmp_path, no_model):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    one_line_error(invoke("run", str(cfg), "--out", str(_unwritable(tmp_path) / "o")),
                   r"--out .*cannot write there")


def test_results_file_read_only_or_a_folder(tmp_path, no_model):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    (tmp_path / "o" / "results.jsonl").mkdir(parents=True)
    one_line_error(invoke("run", str(cfg), "--out", str(tmp_path / "o")),
                   r"results\.jsonl is a folder")


def test_leaderboard_out_a_directory_or_read_only(tmp_path):
    results = tmp_path / "results.jsonl"
    results.write_text('{"x": 1}\n')
    one_line_error(invoke("leaderboard", str(results), "--out", str(tmp_path)),
                   r"--out .* is a folder; give a file name")
    one_line_error(
        invoke("leaderboard", str(results), "--out", str(_unwritable(tmp_path) / "lb.md")),
        r"--out .*cannot write there",
    )


def test_leaderboard_of_nothing_is_refused(tmp_path):
    empty = tmp_path / "results.jsonl"
    empty.write_text("")
    one_line_error(invoke("leaderboard", str(empty), "--out", str(tmp_path / "lb.md")),
                   r"no result lines in")
    one_line_error(invoke("leaderboard", str(tmp_path / "none.jsonl"), "--out",
                          str(tmp_path / "lb.md")), r"none\.jsonl is not there")
    torn = tmp_path / "torn.jsonl"  # not empty, but no complete line
    torn.write_text('{"dataset": "mni')
    result = invoke("leaderboard", str(torn), "--out", str(tmp_path / "lb.md"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: no result lines in")
    assert not (tmp_path / "lb.md").exists()


def test_markup_in_messages_prints_literally(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("defenses = []\n")
    result = invoke("run", str(cfg))
    one_line_error(result, r"no \[\[defenses\]\] listed")


def test_unexpected_bug_shows_its_traceback(tmp_path, monkeypatch):
    import hrsbench.engine.config

    def broken(path):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(hrsbench.engine.config, "load_config", broken)
    result = invoke("run", "quick")
    assert result.exit_code == 70
    assert "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr
    assert "this is a bug" in result.stderr.strip().splitlines()[-1]


def test_debug_shows_the_cause_of_a_one_line_error(monkeypatch):
    import hrsbench.engine.config
    from hrsbench.errors import HrsbenchError

    def chained(path):
        try:
            raise ValueError("inner cause")
        except ValueError as e:
            raise HrsbenchError("plugin 'x' failed in build()") from e

    monkeypatch.setattr(hrsbench.engine.config, "load_config", chained)
    plain = invoke("run", "quick")
    assert plain.exit_code == 1 and "Traceback" not in plain.stderr
    debug = invoke("--debug", "run", "quick")
    assert debug.exit_code == 1
    assert "Traceback" in debug.stderr and "inner cause" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == "error: plugin 'x' failed in build()"


def test_presets_lists_every_preset_with_its_cost():
    from hrsbench.engine.config import presets

    result = CliRunner().invoke(app, ["presets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in presets():
        assert name in result.output
    from importlib import resources

    text = (resources.files("hrsbench") / "presets" / "quick.toml").read_text()
    cost = next(line for line in text.splitlines() if line.startswith("# cost:"))
    assert cost.removeprefix("# cost:").strip().split(" on ")[0] in result.output  # measured


def test_config_schema_is_json():
    import json

    result = invoke("config-schema")
    assert result.exit_code == 0
    assert "grad_samples" in json.loads(result.stdout)["properties"]


def test_wrongly_typed_results_line_is_one_line(tmp_path):
    from tests.test_leaderboard import line

    bad = tmp_path / "results.jsonl"
    bad.write_text(json.dumps({**line("base", {}, 0.99, "none"), "clean_accuracy": "high"}) + "\n")
    one_line_error(invoke("leaderboard", str(bad), "--out", str(tmp_path / "lb.md")),
                   r"results\.jsonl:1: .*clean_accuracy.*hrsbench repair")
    assert not (tmp_path / "lb.md").exists()
