"""MNIST and CIFAR-10 from their original files, with the checksums torchvision publishes."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from hrsbench import Arch, DataFile, Dataset, Download, hookimpl

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (big-endian header: magic, dims) as a uint8 array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(dims))


class MNIST(Dataset):
    name = "mnist"
    train_size = 60000
    arch = Arch(in_channels=1, image_size=28, conv=(32, 32, 64, 64), fc=(200, 200),
                train_dropout=0.3)
    files = tuple(DataFile(f"mnist/{k}", v) for k, v in MNIST_FILES.items())
    downloads = tuple(
        Download(tuple(m + k for m in MNIST_MIRRORS), f"mnist/{k}", v)
        for k, v in MNIST_FILES.items()
    )

    def read(self, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        prefix = {"train": "train", "test": "t10k"}[split]
        x = _read_idx(root / f"mnist/{prefix}-images-idx3-ubyte.gz")
        y = _read_idx(root / f"mnist/{prefix}-labels-idx1-ubyte.gz")
        return (x[:, None].astype(np.float32) / 255.0), y.astype(np.int64)


CIFAR_DIR = "cifar10/cifar-10-batches-py"
CIFAR_FILES = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}


class CIFAR10(Dataset):
    name = "cifar10"
    train_size = 50000
    arch = Arch(in_channels=3, image_size=32, conv=(64, 64, 128, 128), fc=(256, 256),
                train_dropout=0.7)
    files = tuple(DataFile(f"{CIFAR_DIR}/{k}", v) for k, v in CIFAR_FILES.items())
    downloads = (
        Download(
            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            "cifar10/cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
            extract_to="cifar10",
        ),
    )

    def read(self, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        xs, ys = [], []
        for n in names:
            with open(root / CIFAR_DIR / n, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            xs.append(batch[b"data"].reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[b"labels"]))
        return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys).astype(np.int64)


@hookimpl
def register_datasets(register):
    register(MNIST)
    register(CIFAR10)
