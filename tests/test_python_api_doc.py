"""docs/python-api.md's examples run as written: each ```python block in order, in one
namespace, from a scratch folder, and print what they say."""

from __future__ import annotations

import re

from tests.conftest import REPO

DOC = (REPO / "docs" / "python-api.md").read_text()


def test_the_examples_run_as_written(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HRSBENCH_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC, re.S)
    assert len(blocks) == 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "attack_success_rate_hi" in out and "fixed" in out
    assert "strength" in out and "-0.1" in out  # the refused run's one line
    assert not (tmp_path / "runs" / "refused" / "results.jsonl").exists()
    lines = namespace["lines"]
    assert set(lines["attack"]) == {"none", "pgd", "fgsm"}
    pgd = lines[lines["attack"] == "pgd"].iloc[0]
    assert pgd["attack_success_rate_lo"] <= pgd["attack_success_rate"] \
        <= pgd["attack_success_rate_hi"]
