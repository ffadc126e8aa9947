"""Dataset plugins read the original files, verify checksums and fail in one line."""

from __future__ import annotations

import shutil
import urllib.request

import numpy as np
import pytest

from hrsbench import HrsbenchError
from hrsbench.plugin.registry import registry


def dataset(name: str):
    return registry().get("dataset", name)()


def test_mnist_is_float_nchw_in_unit_range(data_dir):
    x, y = dataset("mnist").load("test", n=500, data_dir=data_dir)
    assert x.shape == (500, 1, 28, 28) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.99
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    x_all, _ = dataset("mnist").load("test", data_dir=data_dir)
    assert len(x_all) == 10000
    np.testing.assert_array_equal(x_all[:500], x)  # subsets are the deterministic prefix


def test_cifar10_train_and_test(data_dir):
    x, y = dataset("cifar10").load("test", n=100, data_dir=data_dir)
    assert x.shape == (100, 3, 32, 32) and x.dtype == np.float32 and x.max() <= 1.0
    assert y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # the canonical first test labels
    xt, _ = dataset("cifar10").load("train", n=50000, data_dir=data_dir)
    assert len(xt) == 50000


def _copy_mnist(src, dst):
    shutil.copytree(src / "mnist", dst / "mnist")
    return dst


def test_corrupt_file_names_file_and_fix(data_dir, tmp_path):
    root = _copy_mnist(data_dir, tmp_path)
    with open(root / "mnist/t10k-labels-idx1-ubyte.gz", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    with pytest.raises(HrsbenchError, match=r"mismatch for .*t10k-labels.*delete the file"):
        dataset("mnist").load("test", data_dir=root)


def test_missing_file_is_downloaded_then_checked(data_dir, tmp_path, monkeypatch):
    root = _copy_mnist(data_dir, tmp_path)
    missing = root / "mnist/t10k-labels-idx1-ubyte.gz"
    original = missing.read_bytes()
    missing.unlink()
    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        import io

        return io.BytesIO(original)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    dataset("mnist").load("test", n=10, data_dir=root)
    assert missing.read_bytes() == original
    assert urls and urls[0].endswith("t10k-labels-idx1-ubyte.gz")


def test_failed_download_is_one_line_error(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(HrsbenchError) as e:
        dataset("mnist").load("test", data_dir=tmp_path)
    msg = str(e.value)
    assert "could not download" in msg and "HRSBENCH_DATA" in msg and "\n" not in msg


def test_subset_larger_than_split_is_an_error(data_dir):
    with pytest.raises(HrsbenchError, match="only 10000"):
        dataset("mnist").load("test", n=10001, data_dir=data_dir)
