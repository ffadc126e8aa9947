"""Dataset plugins' base class and the data directory: checksum-verified files, downloaded from
their official source only when missing, loaded as float32 NCHW in [0, 1]."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from hrsbench.errors import HrsbenchError
from hrsbench.paths import default_data_dir
from hrsbench.plugin.models import Arch


@dataclass(frozen=True)
class DataFile:
    """A file a dataset needs: its path in the data directory and canonical md5."""

    path: str
    md5: str


@dataclass(frozen=True)
class Download:
    """An official archive or file to fetch when files are missing."""

    urls: tuple[str, ...]
    filename: str
    md5: str
    extract_to: str | None = None  # a tar archive is unpacked into this folder


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Dataset(ABC):
    """Subclass and register with ``register_datasets``.

    ``files`` are verified before every load; when any is missing, ``downloads`` are fetched.
    ``arch`` is the base model the paper uses for this dataset.
    """

    name: ClassVar[str]
    arch: ClassVar[Arch]
    files: ClassVar[tuple[DataFile, ...]]
    downloads: ClassVar[tuple[Download, ...]] = ()
    #: Examples in the training split, when known without reading it: cost estimates for a
    #: device without recorded timings use it (``hrsbench run --dry-run --device cuda``).
    train_size: ClassVar[int | None] = None

    @abstractmethod
    def read(self, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Read verified files: ``split`` is "train" or "test"; float32 NCHW in [0, 1], int64."""

    def load(
        self, split: str, n: int | None = None, data_dir: Path | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` examples of ``split`` (deterministic), after checksum verification."""
        root = Path(data_dir) if data_dir else default_data_dir()
        self.ensure(root)
        x, y = self.read(root, split)
        if n is not None:
            if n > len(x):
                raise HrsbenchError(
                    f"{self.name}: asked for {n} {split} examples but only {len(x)} exist"
                )
            x, y = x[:n], y[:n]
        return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64)

    def ensure(self, root: Path) -> None:
        """Verify every file; download what is missing; fail in one line naming file and fix."""
        if any(not (root / f.path).exists() for f in self.files):
            for d in self.downloads:
                if d.extract_to or not (root / d.filename).exists():
                    fetch(d, root, self.name)
        for f in self.files:
            p = root / f.path
            if not p.exists():
                raise HrsbenchError(
                    f"{self.name}: missing {p}; set HRSBENCH_DATA or --data-dir to a folder "
                    f"holding {f.path}"
                )
            got = md5sum(p)
            if got != f.md5:
                raise HrsbenchError(
                    f"{self.name}: checksum mismatch for {p} (md5 {got}, expected {f.md5}); "
                    "delete the file to download it again"
                )


def fetch(d: Download, root: Path, dataset: str) -> None:
    """Download ``d`` into ``root`` atomically, check its md5, unpack it if it is an archive."""
    dest_dir = root / (d.extract_to or Path(d.filename).parent)
    dest_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in d.urls:
        fd, tmp = tempfile.mkstemp(dir=dest_dir, suffix=".part")
        os.close(fd)
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
            if md5sum(Path(tmp)) != d.md5:
                raise OSError("checksum mismatch")
            if d.extract_to:
                import tarfile

                with tarfile.open(tmp) as tar:
                    tar.extractall(root / d.extract_to, filter="data")
                os.unlink(tmp)
            else:
                os.replace(tmp, root / d.filename)
            return
        except Exception as e:  # try the next mirror
            errors.append(f"{url}: {e}")
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise HrsbenchError(
        f"{dataset}: could not download {d.filename} ({'; '.join(errors)}); "
        f"place the file in {dest_dir} by hand or set HRSBENCH_DATA to a folder that has it"
    )
