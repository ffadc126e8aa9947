"""hrsbench from Python: :func:`run` a config with every check the command line makes, or
:func:`evaluate` a trained ``nn.Module`` of your own through the same cells, settings and metrics.

Validation lives here, not in the command line: ``hrsbench run`` parses its options and calls
:func:`run`, so a notebook gets the same refusals (one :class:`~hrsbench.HrsbenchError` line
naming the fix) before any model is built. Heavy imports (torch, ART, pandas) wait until a
function needs them, so the command line's cheap checks stay cheap.
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrsbench.errors import HrsbenchError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from torch import nn

    from hrsbench.engine.cells import Cell
    from hrsbench.engine.config import RunConfig
    from hrsbench.plugin.registry import Registry

#: progress(task, label, done, total), as :func:`hrsbench.engine.runner.run` reports it.
Progress = Callable[[str, str, int, int], None]


@dataclass
class Run:
    """What :func:`run` leaves: the lines (flat rows, one per cell) and where it wrote them."""

    lines: list[dict[str, Any]]
    results: Path
    leaderboard: Path | None
    config_hash: str
    source: str = ""


def resolve_config(config: str | Path | Mapping[str, Any] | RunConfig | None
                   ) -> tuple[RunConfig, str]:
    """A config file, a preset name, a dict (a parsed TOML document) or a ``RunConfig`` (None:
    the quick preset), with a name for messages."""
    from hrsbench.engine.config import RunConfig, load_config, parse_config

    if isinstance(config, RunConfig):
        return config, "config"
    if isinstance(config, Mapping):
        return parse_config(dict(config)), "config"
    return load_config(None if config is None else str(config))


def with_precision(cfg: RunConfig, precision: str | None) -> RunConfig:
    """``cfg`` with its precision replaced (None: as it is); a bad value is one line."""
    if precision is None:
        return cfg
    import dataclasses

    if precision not in ("auto", "fp32", "bf16"):
        raise HrsbenchError(f"--precision {precision!r}: use auto, fp32 or bf16")
    return dataclasses.replace(cfg, precision=precision)


def check_device_form(device: str) -> None:
    """``device`` is written as a device hrsbench runs on (checked before importing torch)."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise HrsbenchError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N")


def check_device(device: str, executor: str = "local", present: bool = True) -> None:
    """``device`` (its form already checked by :func:`check_device_form`) names a device this
    machine has, or one line saying what it has. On Ray the GPUs are the cluster's (Ray gives
    each task its share), and with ``present=False`` (a dry run, planned anywhere) nothing needs
    to be there, so only the form is checked then."""
    if executor == "ray" and device.startswith("cuda"):
        if device != "cuda":
            raise HrsbenchError(f"--device {device}: on Ray, each task gets a GPU from Ray; "
                                "use --device cuda")
        return
    if not present:
        return
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise HrsbenchError(f"--device {device}: no CUDA device is available; use cpu")
        if dev.index is not None and dev.index >= count:
            raise HrsbenchError(f"--device {device}: this machine has {count} CUDA device(s), "
                                f"cuda:0 to cuda:{count - 1}")


def check_plan(cfg: RunConfig, reg: Registry | None = None) -> Registry:
    """Plugin names, parameters and strength ranges, through the registry, before any output;
    returns the registry."""
    from hrsbench.plugin.registry import registry

    reg = reg or registry()
    planned_cells(cfg, reg)
    return reg


def planned_cells(cfg: RunConfig, reg: Registry, device: str = "cpu") -> list[Cell]:
    """The run's cells, expanded once: every plugin name, parameter and strength range is
    checked on the way, and the runner receives these same cells."""
    from hrsbench.engine.cells import expand
    from hrsbench.engine.config import check_strengths

    check_strengths(cfg, reg)
    return expand(cfg, reg, device)


def check_data(cfg: RunConfig, reg: Registry, data_dir: Path | None
               ) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's files are there (fetched if missing, checksums verified) and its test split
    holds the images asked for: n_test beyond it would be silently capped. Returns the test
    split it read, which the run then uses instead of reading it again."""
    x_test, y_test = reg.get("dataset", cfg.dataset)().load("test", cfg.n_clean, data_dir)
    if cfg.attacks and cfg.n_test > len(x_test):
        raise HrsbenchError(f"n_test = {cfg.n_test}, but {cfg.dataset} has only {len(x_test)} "
                            "test images; lower n_test")
    return x_test, y_test


def check_places(out: Path, leaderboard: Path | None, cache_dir: Path | None) -> Path:
    """Every place a run writes, proven writable before any model is built; returns the
    leaderboard path."""
    from hrsbench.paths import default_cache_dir, writable_dir, writable_file

    writable_dir(out, "--out")
    results = out / "results.jsonl"
    if results.exists():
        writable_file(results, "--out")
    if (out / "plots").exists():
        writable_dir(out / "plots", "--out")
    writable_dir(cache_dir or default_cache_dir(), "--cache-dir")
    return writable_file(leaderboard or out / "leaderboard.md", "--leaderboard")


def run(
    config: str | Path | Mapping[str, Any] | RunConfig | None = None,
    *,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    leaderboard: str | Path | None = None,
    wait: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    threads_per_task: int | None = None,
    gpus_per_task: float | None = None,
    precision: str | None = None,
    progress: Progress | None = None,
    on_start: Callable[[str], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    reports: bool = True,
    reg: Registry | None = None,
) -> Run:
    """Run ``config`` (a file, a preset name, a dict or a ``RunConfig``; None: the quick preset)
    into ``out`` (default ``runs/NAME``), as ``hrsbench run`` does: the config, device, executor
    options, plugins, output places and data are checked first, each failure one
    :class:`~hrsbench.HrsbenchError` line; then every unfinished cell runs and, with ``reports``,
    the leaderboard, figures and sanity checks are written beside ``results.jsonl``.

    ``data_dir`` and ``cache_dir`` default to ``$HRSBENCH_DATA`` and ``$HRSBENCH_CACHE`` of this
    process, else the per-user folders; on Ray every node must see them at the same paths
    (docs/distributed.md). ``precision`` ("auto", "fp32", "bf16") replaces the config's.
    ``on_start(line)`` is told once the output folder is held; ``on_wait(who)`` when another
    run holds it and ``wait`` is set."""
    cfg, source = resolve_config(config)
    cfg = with_precision(cfg, precision)
    check_device_form(device)
    if out is None:  # as the command line names it: runs/ and the config's or preset's name
        name = Path(str(config)).stem if isinstance(config, str | Path) else (
            "quick" if config is None else "run")
        out = Path("runs") / name
    out = Path(out)
    from hrsbench.paths import run_places

    # Resolved here, once, from this process's flags and environment: the checks below and
    # every task (on any node, whatever its own environment) use exactly these folders.
    data_dir, cache_dir = run_places(data_dir, cache_dir)
    from hrsbench.engine.executors import make_executor

    runner = make_executor(executor, ray_address, threads_per_task, device, gpus_per_task)
    if preflight := getattr(runner, "preflight", None):
        preflight()  # a cluster that does not answer is refused before anything is written
    fresh = not out.exists()
    leaderboard = check_places(out, Path(leaderboard) if leaderboard else None, cache_dir)
    from hrsbench.engine.runner import run as run_cells
    from hrsbench.locks import run_lock
    from hrsbench.plugin.registry import registry

    try:
        check_device(device, executor)
        reg = reg or registry()
        cells = planned_cells(cfg, reg, device)
        test_split = check_data(cfg, reg, data_dir)
        with run_lock(out, wait, on_wait=on_wait):
            if on_start:
                on_start(f"{source} · config {cfg.hash} → {out}")
            lines = run_cells(cfg, out, data_dir=data_dir, cache_dir=cache_dir, device=device,
                              progress=progress, reg=reg, executor=runner, cells=cells,
                              test_split=test_split)
            path = None
            if reports:
                from hrsbench.report.leaderboard import write_run_reports

                path = write_run_reports(out, reference=cfg.reference, leaderboard=leaderboard)
    except HrsbenchError:
        if fresh:
            _remove_if_unused(out)
        raise
    return Run(lines, out / "results.jsonl", path, cfg.hash, source)


def _remove_if_unused(out: Path) -> None:
    """Remove an output folder a refused run created, if nothing but its lock files is in it:
    a refusal leaves no trace to confuse the next run."""
    from hrsbench.locks import RUN_LOCK

    leftovers = {RUN_LOCK, f"{RUN_LOCK}.owner"}
    try:
        if out.is_dir() and all(p.name in leftovers for p in out.iterdir()):
            for p in out.iterdir():
                p.unlink(missing_ok=True)
            out.rmdir()
    except OSError:
        pass  # another process took the folder meanwhile: it is not ours to remove


# ---------------------------------------------------------------- your own model


#: Line metrics :func:`evaluate` gives 95 % intervals for (``NAME_lo``, ``NAME_hi``).
EVALUATE_INTERVALS = ("attack_success_rate", "defense_rate", "clean_accuracy")


def _weights_hash(model: nn.Module) -> str:
    """A model's identity for the keys of its cells: the hash of its weights and buffers."""
    import hashlib

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def given_defense(model: nn.Module, *, stochastic: bool = False,
                  surrogate: Callable[[nn.Module], nn.Module] | None = None,
                  expectation: Callable[[nn.Module], nn.Module] | None = None,
                  name: str = "model") -> type:
    """A defense class standing for one trained ``model``: it builds a copy of it, trains
    nothing, and its one parameter, ``weights``, is the weights' hash (so two models never
    share a cell key). ``surrogate`` and ``expectation`` give the fixed-randomness and exact-
    expectation models of a stochastic one (the settings ``fixed`` and ``expectation``)."""
    from hrsbench.plugin.defense import Defense

    weights = _weights_hash(model)

    def build(self: Any, dataset: Any) -> nn.Module:
        return copy.deepcopy(model)

    def fit(self: Any, net: nn.Module, trainer: Any, dataset: Any) -> None:
        """Nothing to train: the model comes trained."""

    body: dict[str, Any] = {"build": build, "fit": fit, "__doc__": f"The given model {name!r}."}
    if surrogate is not None:
        body["surrogate"] = lambda self, net: surrogate(net)
    if expectation is not None:
        body["expectation"] = lambda self, net: expectation(net)
    cls = make_dataclass(
        "GivenModel", [("weights", str, field(default=weights))], bases=(Defense,),
        namespace=body)
    cls.name = name  # ClassVars set after make_dataclass: they are not fields
    cls.stochastic = bool(stochastic)
    cls.strength = None
    return cls


def _attack_entries(attacks: Mapping[str, Sequence[float]] | Sequence[Mapping[str, Any]],
                    settings: Sequence[str]) -> list[dict[str, Any]]:
    """``{"pgd": [0.1, 0.3]}`` or full ``[[attacks]]`` entries, as config entries."""
    if isinstance(attacks, Mapping):
        out = []
        for name, strengths in attacks.items():
            if isinstance(strengths, int | float):
                raise HrsbenchError(f"attacks[{name!r}] must be a list of strengths, e.g. "
                                    f"{{{name!r}: [{strengths}]}}")
            out.append({"name": name, "strengths": list(strengths), "settings": list(settings)})
        return out
    return [{"settings": list(settings), **dict(a)} for a in attacks]


def evaluate(
    model: nn.Module,
    *,
    dataset: str,
    attacks: Mapping[str, Sequence[float]] | Sequence[Mapping[str, Any]],
    settings: Sequence[str] = ("whitebox",),
    targeted: bool = False,
    n_test: int = 100,
    n_clean: int | None = None,
    repeats: int | None = None,
    eot_samples: int = 10,
    stochastic: bool = False,
    surrogate: Callable[[nn.Module], nn.Module] | None = None,
    expectation: Callable[[nn.Module], nn.Module] | None = None,
    device: str = "cpu",
    batch_size: int = 256,
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Attack a trained ``model`` (inputs in [0, 1], NCHW, logits out) on ``dataset``'s first
    ``n_test`` test images, with no training and no plugin: the same cells, settings, metrics
    and per-example outcomes as ``hrsbench run``. Returns one row per line (a clean line, then
    one per attack × strength × setting) with 95 % intervals (``NAME_lo``, ``NAME_hi``) for
    :data:`EVALUATE_INTERVALS`.

    ``attacks`` maps attack names to strengths (``{"pgd": [0.1, 0.3]}``) or lists full
    ``[[attacks]]`` entries (``{"name": "pgd", "strengths": [0.1], "params": {...}}``).
    A ``stochastic`` model is predicted ``repeats`` times (default 5; 1 otherwise) and attacked
    in every setting asked for that applies: ``eot`` averages ``eot_samples`` gradients,
    ``fixed`` attacks ``surrogate(model)`` and ``expectation`` attacks ``expectation(model)``.
    ``out`` keeps the result lines (default: a temporary folder, removed afterwards).
    """
    from hrsbench.results.store import load_results

    if "fixed" in settings and stochastic and surrogate is None:
        raise HrsbenchError("settings include 'fixed': pass surrogate=, a function returning "
                            "the model with its randomness fixed")
    if "expectation" in settings and stochastic and expectation is None:
        raise HrsbenchError("settings include 'expectation': pass expectation=, a function "
                            "returning the model's exact expectation")
    reg = _registry_with(given_defense(model, stochastic=stochastic, surrogate=surrogate,
                                       expectation=expectation))
    cfg = {
        "dataset": dataset, "n_train": 1, "n_test": n_test, "epochs": 1, "targeted": targeted,
        "repeats": repeats if repeats is not None else (5 if stochastic else 1),
        "eot_samples": eot_samples, "grad_samples": 10 if stochastic else 0,
        "batch_size": batch_size, "defenses": [{"name": "model"}],
        "attacks": _attack_entries(attacks, settings),
    }
    if n_clean is not None:
        cfg["n_clean"] = n_clean
    with tempfile.TemporaryDirectory(prefix="hrsbench-evaluate-") as tmp:
        folder = Path(out) if out is not None else Path(tmp) / "out"
        done = run(cfg, out=folder, data_dir=data_dir, cache_dir=Path(tmp) / "cache",
                   device=device, progress=progress, reports=False, reg=reg)
        frame = load_results(done.results)
    # ``out`` may hold other models' lines too: this call's are its own cells'
    frame = frame[frame["cell_key"].isin({r["cell_key"] for r in done.lines})]
    return _with_line_intervals(frame.reset_index(drop=True))


def _registry_with(defense: type) -> Registry:
    """The installed plugins plus ``defense``, registered as a plugin of this process."""
    import types

    from hrsbench.plugin.hookspecs import hookimpl
    from hrsbench.plugin.registry import load_registry

    reg = load_registry()
    module = types.ModuleType("hrsbench_given_model")

    @hookimpl
    def register_defenses(register: Callable[[type], None]) -> None:
        register(defense)

    module.register_defenses = register_defenses  # type: ignore[attr-defined]
    reg.add_module(module, "hrsbench.evaluate", "0")
    return reg


def _with_line_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the 95 % intervals of :data:`EVALUATE_INTERVALS` from the per-example
    outcomes (resampling attacked images, and clean images for clean accuracy)."""
    from hrsbench.report.des import attach_des
    from hrsbench.report.stats import line_replicates, with_intervals

    scored = attach_des(frame)
    bounds = with_intervals(scored, line_replicates(scored))
    out = frame.copy()
    for name in ("defense_rate", "clean_accuracy"):
        out[f"{name}_lo"] = bounds[f"{name}_lo"].to_numpy()
        out[f"{name}_hi"] = bounds[f"{name}_hi"].to_numpy()
    out["attack_success_rate_lo"] = 1.0 - out["defense_rate_hi"]
    out["attack_success_rate_hi"] = 1.0 - out["defense_rate_lo"]
    return out


#: Names :mod:`hrsbench` exports from here.
__all__ = ["Run", "check_data", "check_device", "check_device_form", "check_places",
           "check_plan", "evaluate", "given_defense", "planned_cells", "resolve_config", "run",
           "with_precision"]