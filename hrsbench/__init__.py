"""hrsbench: a plugin-based adversarial-robustness benchmark (HRS, stochastic defenses, DES)."""

from importlib.metadata import PackageNotFoundError, version

from hrsbench.attack import Attack
from hrsbench.cache import ModelCache
from hrsbench.data import DataFile, Dataset, Download
from hrsbench.defense import Defense
from hrsbench.errors import HrsbenchError
from hrsbench.estimator import Classifier
from hrsbench.hookspecs import hookimpl
from hrsbench.models import (
    Arch,
    base_model,
    base_stages,
    insert_stages,
    replace_stage,
    split_stages,
)
from hrsbench.training import Trainer

try:
    __version__ = version("hrsbench")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = [
    "Arch",
    "Attack",
    "Classifier",
    "DataFile",
    "Dataset",
    "Defense",
    "Download",
    "HrsbenchError",
    "ModelCache",
    "Trainer",
    "__version__",
    "base_model",
    "base_stages",
    "hookimpl",
    "insert_stages",
    "replace_stage",
    "split_stages",
]
