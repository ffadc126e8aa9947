"""hrsbench: a plugin-based adversarial-robustness benchmark (HRS, stochastic defenses, DES).

The public names below load on first use (module ``__getattr__``): ``import hrsbench``, the
command line's ``--version`` and ``--help`` and the reporting commands never import torch, ART,
pandas or matplotlib unless a name that needs them is used.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("hrsbench")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

#: Public name → the module defining it.
_EXPORTS = {
    "Adam": "hrsbench.plugin.gradient",
    "Arch": "hrsbench.plugin.models",
    "Attack": "hrsbench.plugin.attack",
    "BehaviourRange": "hrsbench.report.des",
    "Bootstrap": "hrsbench.report.stats",
    "AppliesTo": "hrsbench.results.vocabulary",
    "Classifier": "hrsbench.plugin.estimator",
    "Crafts": "hrsbench.results.vocabulary",
    "DataFile": "hrsbench.plugin.dataset",
    "Dataset": "hrsbench.plugin.dataset",
    "Defense": "hrsbench.plugin.defense",
    "Download": "hrsbench.plugin.dataset",
    "GradientAttack": "hrsbench.plugin.gradient",
    "HrsbenchError": "hrsbench.errors",
    "Kind": "hrsbench.results.record",
    "LocalExecutor": "hrsbench.engine.executors",
    "ModelCache": "hrsbench.plugin.cache",
    "Optimizer": "hrsbench.plugin.gradient",
    "PluginError": "hrsbench.plugin.registry",
    "RayExecutor": "hrsbench.engine.executors",
    "ResultLine": "hrsbench.results.record",
    "Setting": "hrsbench.results.vocabulary",
    "SettingSpec": "hrsbench.results.vocabulary",
    "TensorAttack": "hrsbench.plugin.attack",
    "Threat": "hrsbench.plugin.threat",
    "ThreatContext": "hrsbench.plugin.threat",
    "Trainer": "hrsbench.plugin.training",
    "attach_des": "hrsbench.report.des",
    "base_model": "hrsbench.plugin.models",
    "base_stages": "hrsbench.plugin.models",
    "bounds_of": "hrsbench.plugin.gradient",
    "des_score": "hrsbench.report.des",
    "dlr_loss": "hrsbench.plugin.gradient",
    "evaluate": "hrsbench.api",
    "family_summary": "hrsbench.report.des",
    "fit_line": "hrsbench.report.des",
    "hookimpl": "hrsbench.plugin.hookspecs",
    "insert_stages": "hrsbench.plugin.models",
    "line_replicates": "hrsbench.report.stats",
    "make_executor": "hrsbench.engine.executors",
    "load_results": "hrsbench.results.store",
    "margin_loss": "hrsbench.plugin.gradient",
    "merge_results": "hrsbench.report.merge",
    "migrate": "hrsbench.results.migrate",
    "read_lines": "hrsbench.results.store",
    "replace_stage": "hrsbench.plugin.models",
    "run": "hrsbench.api",
    "split_stages": "hrsbench.plugin.models",
    "summary_intervals": "hrsbench.report.stats",
    "uniform_start": "hrsbench.plugin.gradient",
    "with_intervals": "hrsbench.report.stats",
    "worst_case": "hrsbench.report.worstcase",
    "write_leaderboard": "hrsbench.report.leaderboard",
}

__all__ = [
    "__version__",
    "Adam",
    "Arch",
    "Attack",
    "BehaviourRange",
    "Bootstrap",
    "AppliesTo",
    "Classifier",
    "Crafts",
    "DataFile",
    "Dataset",
    "Defense",
    "Download",
    "GradientAttack",
    "HrsbenchError",
    "Kind",
    "LocalExecutor",
    "ModelCache",
    "Optimizer",
    "PluginError",
    "RayExecutor",
    "ResultLine",
    "Setting",
    "SettingSpec",
    "TensorAttack",
    "Threat",
    "ThreatContext",
    "Trainer",
    "attach_des",
    "base_model",
    "base_stages",
    "bounds_of",
    "des_score",
    "dlr_loss",
    "evaluate",
    "family_summary",
    "fit_line",
    "hookimpl",
    "insert_stages",
    "line_replicates",
    "load_results",
    "make_executor",
    "margin_loss",
    "merge_results",
    "migrate",
    "read_lines",
    "replace_stage",
    "run",
    "split_stages",
    "summary_intervals",
    "uniform_start",
    "with_intervals",
    "worst_case",
    "write_leaderboard",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hrsbench' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from hrsbench.api import evaluate, run
    from hrsbench.engine.executors import LocalExecutor, RayExecutor, make_executor
    from hrsbench.errors import HrsbenchError
    from hrsbench.plugin.attack import Attack, TensorAttack
    from hrsbench.plugin.cache import ModelCache
    from hrsbench.plugin.dataset import DataFile, Dataset, Download
    from hrsbench.plugin.defense import Defense
    from hrsbench.plugin.estimator import Classifier
    from hrsbench.plugin.gradient import (
        Adam,
        GradientAttack,
        Optimizer,
        bounds_of,
        dlr_loss,
        margin_loss,
        uniform_start,
    )
    from hrsbench.plugin.hookspecs import hookimpl
    from hrsbench.plugin.models import (
        Arch,
        base_model,
        base_stages,
        insert_stages,
        replace_stage,
        split_stages,
    )
    from hrsbench.plugin.registry import PluginError
    from hrsbench.plugin.threat import Threat, ThreatContext
    from hrsbench.plugin.training import Trainer
    from hrsbench.report.des import (
        BehaviourRange,
        attach_des,
        des_score,
        family_summary,
        fit_line,
    )
    from hrsbench.report.leaderboard import write_leaderboard
    from hrsbench.report.merge import merge_results
    from hrsbench.report.stats import (
        Bootstrap,
        line_replicates,
        summary_intervals,
        with_intervals,
    )
    from hrsbench.report.worstcase import worst_case
    from hrsbench.results.migrate import migrate
    from hrsbench.results.record import Kind, ResultLine
    from hrsbench.results.store import load_results, read_lines
    from hrsbench.results.vocabulary import AppliesTo, Crafts, Setting, SettingSpec
