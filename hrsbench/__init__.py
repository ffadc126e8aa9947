"""hrsbench: a plugin-based adversarial-robustness benchmark (HRS, stochastic defenses, DES)."""

from importlib.metadata import PackageNotFoundError, version

from hrsbench.attack import Attack
from hrsbench.cache import ModelCache
from hrsbench.data import DataFile, Dataset, Download
from hrsbench.defense import Defense
from hrsbench.des import BehaviourRange, attach_des, des_score, family_summary, fit_line
from hrsbench.errors import HrsbenchError
from hrsbench.estimator import Classifier
from hrsbench.hookspecs import hookimpl
from hrsbench.leaderboard import merge_results, write_leaderboard
from hrsbench.models import (
    Arch,
    base_model,
    base_stages,
    insert_stages,
    replace_stage,
    split_stages,
)
from hrsbench.results import load_results
from hrsbench.threat import Threat
from hrsbench.training import Trainer

try:
    __version__ = version("hrsbench")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = [
    "Arch",
    "Attack",
    "BehaviourRange",
    "Classifier",
    "DataFile",
    "Dataset",
    "Defense",
    "Download",
    "HrsbenchError",
    "ModelCache",
    "Threat",
    "Trainer",
    "__version__",
    "attach_des",
    "base_model",
    "base_stages",
    "des_score",
    "family_summary",
    "fit_line",
    "hookimpl",
    "insert_stages",
    "load_results",
    "merge_results",
    "replace_stage",
    "split_stages",
    "write_leaderboard",
]
