"""The command line: one-line errors with a non-zero exit, never a traceback."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from hrsbench import __version__
from hrsbench.cli import app

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, list(args), env=env)


def one_line_error(result, pattern):
    import re

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    out = result.stderr.strip()
    assert len(out.splitlines()) == 1, out
    assert re.search(pattern, out), out


def test_version():
    assert __version__ in invoke("--version").output


def test_plugins_lists_builtins_with_their_package():
    result = invoke("plugins")
    assert result.exit_code == 0
    for name in ("base", "fgsm", "pgd", "mnist", "cifar10"):
        assert name in result.output
    assert "hrsbench" in result.output


def test_unknown_defense(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[defenses]]\nname = "bsae"\n')
    one_line_error(invoke("run", str(cfg), "--out", str(tmp_path / "o")),
                   r"unknown defense 'bsae'")


def test_misspelt_config_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('epoch = 3\n[[defenses]]\nname = "base"\n')
    one_line_error(invoke("run", str(cfg), "--out", str(tmp_path / "o")),
                   r"unknown config key 'epoch'.*'epochs'")


def test_corrupt_data_file(tmp_path, data_dir):
    shutil.copytree(data_dir / "mnist", tmp_path / "data" / "mnist")
    (tmp_path / "data/mnist/train-labels-idx1-ubyte.gz").write_bytes(b"junk")
    cfg = tmp_path / "c.toml"
    cfg.write_text('n_train = 10\n[[defenses]]\nname = "base"\n')
    one_line_error(
        invoke("run", str(cfg), "--out", str(tmp_path / "o"), "--data-dir", str(tmp_path / "data")),
        r"checksum mismatch for .*train-labels",
    )


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    one_line_error(invoke("run", "--device", "cuda", "--out", str(tmp_path)), r"no CUDA device")
