"""Results files read strictly and fail helpfully: strict JSON, a torn last line warned about, a
bad middle line pointing at `hrsbench repair` or `--skip-bad`; resumed training time adds up."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hrsbench.cli import app
from hrsbench.errors import HrsbenchError
from hrsbench.results.store import ResultsWarning, parse_line, read_lines
from tests.test_leaderboard import line, write

GOOD = [line("base", {}, 0.99, "none"), line("base", {}, 0.99, asr=0.9)]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(("raw", "message"), [
    ('{"x": NaN}\n', "NaN"),
    ("{not json\n", "malformed"),
    (json.dumps({**GOOD[1], "n_test": "five"}) + "\n", "five"),  # a v1 line, migrated
    (json.dumps({**json.loads(parse_line(json.dumps(GOOD[1])).to_json()),
                 "evaluation": {"n_test": "five"}}) + "\n", "evaluation"),
])
def test_bad_middle_line_names_file_line_and_the_repair(tmp_path: Path, raw: str,
                                                        message: str) -> None:
    path = write(tmp_path / "r.jsonl", [GOOD[0]], raw + json.dumps(GOOD[1]) + "\n")
    with pytest.raises(HrsbenchError) as info:
        read_lines(path)
    text = str(info.value)
    assert text.startswith(f"{path}:2: ") and message in text and "\n" not in text
    assert f"hrsbench repair {path}" in text and "--skip-bad" in text


def test_torn_last_line_is_dropped_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", GOOD, '{"dataset": "mni')
    with pytest.warns(ResultsWarning, match=r"r\.jsonl:3: the last line is incomplete"):
        assert len(read_lines(path)) == 2
    assert path.read_text().endswith('"mni')  # reading alone changes nothing
    with pytest.warns(ResultsWarning, match="cut it off"):
        read_lines(path, repair=True)
    assert path.read_text().endswith("}\n")


def test_repair_keeps_good_lines_and_moves_bad_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", [GOOD[0]], "{not json\n" + json.dumps(GOOD[1]) + "\n{to")
    before = path.read_bytes().splitlines(keepends=True)
    result = invoke("repair", path)
    assert result.exit_code == 0, result.output
    assert "kept 2 line(s), 2 bad" in result.output
    assert path.read_bytes().splitlines(keepends=True) == [before[0], before[2]]
    assert (tmp_path / "r.jsonl.bad").read_text() == "{not json\n{to\n"
    assert len(read_lines(path)) == 2
    assert invoke("repair", path).output.strip().endswith("kept 2 line(s), 0 bad")


def test_leaderboard_skip_bad_names_what_it_skipped(tmp_path: Path) -> None:
    good = write(tmp_path / "good.jsonl", GOOD)
    bad = write(tmp_path / "bad.jsonl", [line("dropout", {"test_rate": 0.1}, 0.98, "none")],
                "{not json\n")
    refused = invoke("leaderboard", good, bad, "--out", tmp_path / "lb.md")
    assert refused.exit_code == 1 and "hrsbench repair" in refused.stderr
    result = invoke("leaderboard", good, bad, "--out", tmp_path / "lb.md", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert re.search(r"warning: .*bad\.jsonl: skipped 1 bad line\(s\): line 2", result.stderr)
    assert (tmp_path / "lb.md").is_file()


def test_train_time_adds_every_process_share(tmp_path: Path) -> None:
    """A training killed after its first epoch and resumed by a new process: the resumed
    trainer knows the seconds the first one spent."""
    from hrsbench.plugin.cache import ModelCache
    from hrsbench.plugin.training import Trainer

    x, y = torch.rand(64, 1, 4, 4), torch.randint(0, 2, (64,))

    def trainer(progress=None) -> Trainer:
        return Trainer(x, y, epochs=3, seed=0, cache=ModelCache(tmp_path), progress=progress)

    def stop_in_second_epoch(label: str, done: int, total: int) -> None:
        if done > total // 3:
            raise KeyboardInterrupt

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with pytest.raises(KeyboardInterrupt):
        trainer(stop_in_second_epoch).fit(model, checkpoint="k")
    state = torch.load(tmp_path / "k.partial.pt", weights_only=True)
    assert state["epoch"] == 1 and state["seconds"] > 0
    resumed = trainer()
    resumed.fit(model, checkpoint="k")
    assert resumed.earlier_s == pytest.approx(state["seconds"])


def test_repair_waits_for_no_run(tmp_path: Path) -> None:
    """A run appending while repair rewrites the file would lose lines: repair is refused."""
    from tests.test_locks import held_by_another_thread

    path = write(tmp_path / "results.jsonl", GOOD, "{to")
    with held_by_another_thread(tmp_path):
        result = invoke("repair", path)
    assert result.exit_code == 1 and "repair it when that run has finished" in result.stderr
    assert path.read_text().endswith("{to")


def test_full_disk_is_one_line_naming_the_file_and_leaves_no_torn_line(tmp_path, monkeypatch):
    """A short write on a full disk is cut back, so the next append starts a fresh line, and
    the error names the file and the fix."""
    import errno
    import os

    from hrsbench.paths import os_error_line
    from hrsbench.results.store import ResultStore

    store = ResultStore(tmp_path / "results.jsonl")
    store.append(parse_line(json.dumps(GOOD[0])))
    before = store.path.read_bytes()
    real_write = os.write

    def half_write(fd, data):
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(os, "write", half_write)
    with pytest.raises(OSError) as info:
        store.append(parse_line(json.dumps(GOOD[1])))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(store.path)
    assert store.path.read_bytes() == before
    assert os_error_line(info.value) == (f"{store.path}: No space left on device; the disk is "
                                         "full; free some space and rerun (finished work is kept)")


def test_checkpoint_write_failure_names_the_file(tmp_path, monkeypatch):
    from hrsbench.plugin.cache import atomic_save

    def full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="is the disk full") as info:
        atomic_save({}, tmp_path / "m.pt")
    assert info.value.filename == str(tmp_path / "m.pt")
    assert not list(tmp_path.iterdir())  # no temporary file left behind
