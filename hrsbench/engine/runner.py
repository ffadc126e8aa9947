"""The pipeline: config → cells → defense → attack (or threat) → metrics → results.

The work is tasks (:mod:`hrsbench.engine.executors`): each model is trained once (or loaded from the
cache) by a model task, and each cell is a task on its model's weights; an executor runs them in
this process or on a Ray cluster. Only this process appends to ``results.jsonl``, one line as
each cell finishes, so a rerun skips finished cells whichever executor ran them.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import art
import numpy as np
import torch
from torch import nn

from hrsbench import __version__
from hrsbench.engine.cells import Cell, expand
from hrsbench.engine.config import RunConfig
from hrsbench.engine.executors import Executor, LocalExecutor, Task, node_name, raise_failures
from hrsbench.engine.schedule import (
    PIECE,
    Piece,
    cell_label,
    model_label,
    scheduled_pieces,
)
from hrsbench.locks import holding_run_lock
from hrsbench.paths import check_node_places, run_places
from hrsbench.plugin.attack import Attack
from hrsbench.plugin.cache import ModelCache, atomic_save
from hrsbench.plugin.dataset import Dataset
from hrsbench.plugin.defense import Defense
from hrsbench.plugin.estimator import Classifier, crafting_classifier
from hrsbench.plugin.metrics import (
    accuracy,
    attack_success,
    gradient_deviation,
    outcome_counts,
    predictions,
    targeted_pairs,
    won,
)
from hrsbench.plugin.params import instantiate
from hrsbench.plugin.registry import Registry, guarded, registry
from hrsbench.plugin.threat import ThreatContext
from hrsbench.plugin.training import FAST_LAYOUT, Trainer
from hrsbench.results.outcomes import encode_counts
from hrsbench.results.record import Metrics, Provenance, ResultLine, check_metric_names
from hrsbench.results.store import ResultStore
from hrsbench.results.vocabulary import setting

#: progress(task, label, done, total): "cells", "train" or "attack".
Progress = Callable[[str, str, int, int], None]


def _seed(key: str) -> None:
    """Seed every RNG from a cell's key: a cell's result does not depend on run order."""
    s = int(key[:8], 16)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)


def provenance() -> dict[str, Any]:
    return {
        "hrsbench_version": __version__,
        "torch_version": torch.__version__,
        "art_version": art.__version__,
        "python_version": platform.python_version(),
    }


def built_model(defense: Defense, dataset: Dataset, cell: Cell,
                device: torch.device) -> nn.Module:
    """``cell``'s defense built, untrained, with the initial weights its training seed gives."""
    torch.manual_seed(cell.seed)
    with guarded(defense, "build"):
        return defense.build(dataset).to(device, memory_format=FAST_LAYOUT)


def obtain_model(
    defense: Defense, dataset: Dataset, cell: Cell, trainer: Trainer, cache: ModelCache
) -> tuple[nn.Module, float]:
    """The trained model for ``cell`` from the cache, or trained now; returns training seconds."""
    model = built_model(defense, dataset, cell, trainer.device)
    # Held while looking up and training: another process sharing the cache waits, then loads.
    with cache.lock(cell.model_key):
        if cache.load(cell.model_key, model):
            return model.eval(), 0.0
        start = time.perf_counter()
        with guarded(defense, "fit"):
            defense.fit(model, trainer, dataset)
        cache.save(cell.model_key, model)
    return model.eval(), time.perf_counter() - start + trainer.earlier_s


@holding_run_lock  # one run per output folder, whoever calls
def run(
    cfg: RunConfig,
    out: Path,
    *,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
    config_hash: str | None = None,
    reg: Registry | None = None,
    executor: Executor | None = None,
    cells: list[Cell] | None = None,
    test_split: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``cfg`` into ``out/results.jsonl``; returns all its lines.

    ``executor`` runs the model and cell tasks (default: one after another in this process);
    whichever runs them, only this process writes the results and the model cache.
    ``data_dir`` and ``cache_dir`` (None: this process's ``$HRSBENCH_DATA`` /
    ``$HRSBENCH_CACHE``, else the per-user default) are resolved here, once: every task, on
    whichever node, reads and writes exactly these folders. ``cells`` and ``test_split``: what
    the caller's checks already expanded and read (:func:`hrsbench.api.run`), so a run expands
    its cells and reads its test split once.
    """
    reg = reg or registry()
    executor = executor or LocalExecutor()
    report = progress or (lambda *a: None)
    cells = cells if cells is not None else expand(cfg, reg, device)
    store = ResultStore(Path(out) / "results.jsonl")
    todo = [c for c in cells if c.key not in store]
    report("cells", "cells", len(cells) - len(todo), len(cells))
    if not todo:
        return _rows([store.records[c.key] for c in cells])

    # The driver's places, absolute: a worker on another node (or in another directory, or with
    # another environment) uses the same folders, never its own defaults.
    data_dir, cache_dir = run_places(data_dir, cache_dir)
    remote = not executor.in_process
    job = Job(cfg, reg if executor.in_process else PluginTable.of(reg),
              data_dir, cache_dir, device, progress if executor.in_process else None,
              remote=remote, data_on_driver=remote and data_dir.is_dir())
    cache = ModelCache(cache_dir)
    # In one process a model trains its pieces itself; elsewhere they are tasks of their own.
    pieces, after = [], {}
    if not executor.in_process:
        schedule = scheduled_pieces(todo, reg, cache)
        pieces, after = schedule.tasks, schedule.after
    writer = _Writer(store, cache, config_hash or cfg.hash, report,
                     (len(cells) - len(todo), len(cells)), len({c.model_key for c in todo}),
                     len(pieces), reg)
    _DATA.clear()  # a run reads its data afresh (a test may swap the files in between)
    if test_split is not None:
        _DATA[job.split_key("test")] = test_split
    try:
        raise_failures(executor.run(_tasks(todo, job, pieces, after, reg), writer))
    finally:
        _DATA.clear()
    return _rows([store.records[c.key] for c in cells])


@dataclass(frozen=True)
class PluginTable:
    """The driver's plugin classes by kind and name: how a task in another process (a Ray
    worker) resolves names, so it runs exactly the plugins the driver validated the config with."""

    classes: dict[tuple[str, str], type]

    @classmethod
    def of(cls, reg: Registry) -> PluginTable:
        return cls({(r.kind, r.name): r.cls for r in reg.all()})

    def get(self, kind: str, name: str) -> type:
        return self.classes[(kind, name)]


@dataclass(frozen=True)
class Job:
    """What every task of a run needs; picklable, so a Ray worker receives it whole."""

    cfg: RunConfig
    plugins: Any  # a Registry in process, a PluginTable elsewhere (both have get(kind, name))
    #: The driver's data and cache folders (:func:`hrsbench.paths.run_places`): every task uses
    #: these, so a worker's own ``$HRSBENCH_DATA`` / ``$HRSBENCH_CACHE`` play no part.
    data_dir: Path
    cache_dir: Path
    device: str = "cpu"
    progress: Progress | None = None
    #: Tasks run in other processes, maybe on other nodes (Ray): each first proves it can use
    #: the run's folders there (:meth:`check_places`).
    remote: bool = False
    #: Whether the driver has the data folder. A dataset that reads no files needs none, so a
    #: task elsewhere checks the folder only when the driver has it.
    data_on_driver: bool = False

    def check_places(self) -> None:
        """On a worker elsewhere: the data folder can be read and the cache written, else one
        line naming the node and the fix (the driver checked its own before the run). Once per
        worker process and pair of folders: a worker serves many tasks."""
        data = self.data_dir if self.data_on_driver else None
        if not self.remote or (self.cache_dir, data) in _CHECKED_PLACES:
            return
        check_node_places(self.cache_dir, data, node_name())
        _CHECKED_PLACES.add((self.cache_dir, data))

    def report(self, task: str, label: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(task, label, done, total)

    def train_progress(self, label: str, done: int, total: int) -> None:
        self.report("train", label, done, total)

    def split_key(self, split: str) -> tuple[Any, ...]:
        """Which data ``split`` is, as this process keeps it read: dataset, split, count, folder."""
        n = self.cfg.n_train if split == "train" else self.cfg.n_clean
        return (self.cfg.dataset, split, n, str(self.data_dir))

    def data(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The run's ``split``, read once per process (a worker serves many tasks)."""
        key = self.split_key(split)
        n = key[2]
        if key not in _DATA:
            if len(_DATA) >= 2:
                _DATA.pop(next(iter(_DATA)))
            _DATA[key] = self.plugins.get("dataset", self.cfg.dataset)().load(
                split, n, self.data_dir)
        return _DATA[key]

    def defense(self, cell: Cell) -> Defense:
        return instantiate(self.plugins.get("defense", cell.defense), cell.params, cell.defense)


#: (cache, data) folders this process has proven usable (:meth:`Job.check_places`).
_CHECKED_PLACES: set[tuple[Path, Path | None]] = set()
#: Data splits already read in this process, by (dataset, split, n, data dir).
_DATA: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}


@dataclass
class TrainedModel:
    """What a model task hands to its cells and to the driver: the weights (through Ray's
    object store when remote) and the clean accuracy every line of the model carries."""

    state: dict[str, torch.Tensor]
    train_s: float
    clean_accuracy: float
    clean_accuracy_std: float
    clean_correct: str
    clean_images: int


def _trainer(job: Job, cell: Cell, cache: ModelCache, train: bool = True) -> Trainer:
    """The trainer of ``cell``'s model; ``train=False`` gives it no training data (a cached
    model needs none: a worker then skips reading the training split)."""
    x, y = job.data("train") if train else (np.empty(0, np.float32), np.empty(0, np.int64))
    return Trainer(torch.from_numpy(x), torch.from_numpy(y), epochs=job.cfg.epochs,
                   seed=cell.seed, cache=cache, device=torch.device(job.device),
                   key=cell.training_key, progress=job.train_progress,
                   precision=cell.precision)


def train_model(job: Job, cell: Cell) -> TrainedModel:
    """Task: obtain ``cell``'s model (cache or training) and measure its clean accuracy."""
    job.check_places()
    cfg = job.cfg
    dataset: Dataset = job.plugins.get("dataset", cfg.dataset)()
    cache = ModelCache(job.cache_dir)
    trainer = _trainer(job, cell, cache, train=not cache.path(cell.model_key).exists())
    x_test, y_test = job.data("test")
    model, train_s = obtain_model(job.defense(cell), dataset, cell, trainer, cache)
    _seed(cell.model_key)
    clean_preds = predictions(model, x_test, cfg.repeats, cfg.batch_size)
    acc, std = accuracy(clean_preds, y_test)
    # once per model, on its clean-only line: lets the report resample clean images (Δt)
    correct = encode_counts((clean_preds == y_test[None]).sum(axis=0))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return TrainedModel(state, train_s, acc, std, correct, len(x_test))


def run_cell(trained: TrainedModel, job: Job, cell: Cell) -> tuple[dict[str, Any], float]:
    """Task: the metrics of one cell on its trained model, and the seconds they took."""
    job.check_places()
    cfg, dev = job.cfg, torch.device(job.device)
    dataset: Dataset = job.plugins.get("dataset", cfg.dataset)()
    x_test, y_test = job.data("test")
    defense = job.defense(cell)
    model = built_model(defense, dataset, cell, dev)
    model.load_state_dict(trained.state)
    model.eval()
    start = time.perf_counter()
    if cell.kind == "threat":
        ctx = ThreatContext(dataset, defense, job.plugins, ModelCache(job.cache_dir),
                            cell.model_key, cell.seed, cell.repeats, cfg.batch_size, dev,
                            job.data_dir, job.train_progress)
        _seed(cell.key)
        return _run_threat(cell, model, ctx), time.perf_counter() - start
    attack = None
    if cell.attack != "none":
        attack = instantiate(job.plugins.get("attack", cell.attack), cell.attack_params,
                             cell.attack)
        attack.batch_size = cfg.batch_size  # an execution option, not a parameter
    metrics = evaluate(cell, defense, attack, model, dataset, x_test, y_test, cfg, dev,
                       job.report)
    if attack is None:
        metrics["clean_correct"] = trained.clean_correct
    return metrics, time.perf_counter() - start


class _PieceCache(ModelCache):
    """The model cache as one piece task sees it: the model's other pieces of the piece's
    shape and later ones look present (untouched, never saved), so the defense's ``fit``
    trains the one piece, on the real pieces of earlier shapes below it."""

    def __init__(self, root: Path, pretend: tuple[str, ...]) -> None:
        super().__init__(root)
        self.pretend = set(pretend)

    def load(self, key: str, model: nn.Module) -> bool:
        return key in self.pretend or super().load(key, model)

    def save(self, key: str, model: nn.Module) -> None:
        if key not in self.pretend:
            super().save(key, model)


def train_piece(job: Job, cell: Cell, pretend: tuple[str, ...]) -> float:
    """Task: train one piece of ``cell``'s model into the cache (see :class:`_PieceCache`);
    returns its training seconds."""
    job.check_places()
    start = time.perf_counter()
    dataset: Dataset = job.plugins.get("dataset", job.cfg.dataset)()
    trainer = _trainer(job, cell, _PieceCache(job.cache_dir, pretend))
    defense = job.defense(cell)
    model = built_model(defense, dataset, cell, trainer.device)
    with guarded(defense, "fit"):
        defense.fit(model, trainer, dataset)
    return time.perf_counter() - start


def _tasks(todo: list[Cell], job: Job, pieces: list[Piece], after: dict[str, tuple[str, ...]],
           reg: Registry) -> list[Task]:
    """Piece tasks, then a model task per model (after the tasks training pieces it uses),
    each followed by its cells."""
    groups: dict[str, list[Cell]] = {}
    for c in todo:
        groups.setdefault(c.model_key, []).append(c)
    tasks = [Task(PIECE + p.key, f"{model_label(groups[p.model][0], reg)} · {p.label}", "piece",
                  train_piece, (job, groups[p.model][0], p.pretend), after=p.after)
             for p in pieces]
    for key, group in groups.items():
        label = model_label(group[0], reg)
        tasks.append(Task(key, label, "model", train_model, (job, group[0]),
                          after=after.get(key, ())))
        tasks += [Task(c.key, f"{label} · {cell_label(c)}", "cell", run_cell, (job, c),
                       input=key) for c in group]
    return tasks


class _Writer:
    """The driver's side of finished tasks: it alone writes the model cache and the results."""

    def __init__(self, store: ResultStore, cache: ModelCache, config_hash: str,
                 report: Progress, cells: tuple[int, int], models: int, pieces: int,
                 reg: Registry) -> None:
        self.store, self.cache, self.config_hash, self.report = store, cache, config_hash, report
        self.reg = reg
        (self.done, self.total), self.models, self.models_done = cells, models, 0
        self.pieces, self.pieces_done = pieces, 0
        self.trained: dict[str, TrainedModel] = {}
        #: Seconds of piece tasks, charged to the model that owns them (its first user), as a
        #: model training them itself would be: later plans estimate from these lines.
        self.piece_s: dict[str, float] = {}

    def __call__(self, task: Task, result: Any) -> None:
        if task.kind == "model":
            self.model_done(task.key, result)
        elif task.kind == "cell":
            self.cell_done(task.args[1], *result)
        else:
            owner = task.args[1].model_key
            self.piece_s[owner] = self.piece_s.get(owner, 0.0) + result
            self.pieces_done += 1  # a piece task trains for minutes: say when one is done
            self.report("pieces", "pieces", self.pieces_done, self.pieces)

    def model_done(self, key: str, trained: TrainedModel) -> None:
        if not self.cache.path(key).exists():  # trained elsewhere: the driver's cache keeps it
            atomic_save(trained.state, self.cache.path(key))
        self.trained[key] = dataclasses.replace(
            trained, state={}, train_s=trained.train_s + self.piece_s.pop(key, 0.0))
        self.models_done += 1
        self.report("models", "models", self.models_done, self.models)

    def extra_metrics(self, cell: Cell) -> tuple[str, ...]:
        """The metrics beyond the schema's that ``cell``'s plugin declares (threats only)."""
        if cell.kind != "threat":
            return ()
        return tuple(getattr(self.reg.get("threat", cell.attack), "metrics", ()))

    def cell_done(self, cell: Cell, metrics: dict[str, Any], time_s: float) -> None:
        trained = self.trained[cell.model_key]
        values = {"clean_accuracy_std": trained.clean_accuracy_std, **metrics}
        line = result_line(
            cell, Metrics.measured(trained.clean_accuracy, values, self.extra_metrics(cell)),
            int(metrics.get("n_examples", 0)), trained.clean_images,
            config_hash=self.config_hash, train_s=trained.train_s, time_s=time_s,
        )
        trained.train_s = 0.0  # charged once, to the first line of the model
        self.store.append(line)
        self.done += 1
        self.report("cells", "cells", self.done, self.total)


def result_line(
    cell: Cell, metrics: Metrics, n_examples: int, clean_images: int, *, config_hash: str,
    train_s: float, time_s: float,
) -> ResultLine:
    """The line a finished cell leaves: its identity, what was measured and how."""
    prov = Provenance(
        **provenance(), config_hash=config_hash, cell_key=cell.key, model_key=cell.model_key,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"), time_s=time_s,
        train_time_s=train_s,
    )
    return ResultLine(cell.model_spec(), cell.threat_spec(),
                      cell.evaluation(n_examples, clean_images), metrics, prov, cell.traits)


def _rows(lines: list[ResultLine]) -> list[dict[str, Any]]:
    """The run's lines as flat rows (:meth:`ResultLine.row`); the reporting step
    (:func:`hrsbench.report.leaderboard.write_run_reports`) reads them from ``results.jsonl``."""
    return [line.row() for line in lines]


def evaluate(
    cell: Cell,
    defense: Defense,
    attack: Attack | None,
    model: nn.Module,
    dataset: Dataset,
    x_test: np.ndarray,
    y_test: np.ndarray,
    cfg: RunConfig,
    device: torch.device,
    report: Progress,
) -> dict[str, Any]:
    """Attack ``cell.n_test`` test images and score the adversarial examples on ``model``."""
    if attack is None:
        return {"n_examples": 0, "attack_success_rate": None, "attack_success_rate_std": None,
                "defense_rate": None, "grad_std": None, "grad_sign_std": None}
    _seed(cell.key)
    x, y = x_test[: cell.n_test], y_test[: cell.n_test]
    targets = None
    if cell.targeted:
        x, y, targets = targeted_pairs(x, y, dataset.arch.n_classes)
    n_classes = dataset.arch.n_classes
    deviation = _gradient_deviation(defense, attack, model, x, y, targets, n_classes, cfg, device)
    # The fixed and expectation settings call into the defense's own code.
    with guarded(defense, str(setting(cell.setting).crafts)):
        classifier = crafting_classifier(
            cell.setting, defense, model, x.shape[1:], n_classes,
            eot_samples=cell.eot_samples, device=str(device),
        )
    label = (f"{cell.defense} {cell.attack} {cell.setting} "
             f"{attack.strength}={cell.attack_strength:g}")
    chunks = []
    for i in range(0, len(x), cfg.batch_size):
        sl = slice(i, i + cfg.batch_size)
        t = None if targets is None else targets[sl]
        with guarded(attack, "generate"):
            chunks.append(attack.generate(classifier, x[sl], y[sl], cell.attack_strength, t))
        report("attack", label, min(i + cfg.batch_size, len(x)), len(x))
    adv = np.concatenate(chunks).astype(np.float32)
    adv_preds = predictions(model, adv, cell.repeats, cfg.batch_size)
    clean_preds = None if targets is not None else predictions(model, x, cell.repeats)
    asr, asr_std = attack_success(adv_preds, y, targets, clean_preds)
    counts = outcome_counts(won(adv_preds, y, targets, clean_preds))
    outcomes = {k: encode_counts(v) for k, v in counts.items()}
    if clean_preds is not None:
        # an untargeted rate's denominator: the attacked images' correct clean draws
        outcomes["clean_correct"] = encode_counts((clean_preds == y[None]).sum(axis=0))
    delta = (adv - x).reshape(len(x), -1)
    return {
        "n_examples": len(x),
        "attack_success_rate": asr,
        "attack_success_rate_std": asr_std,
        "defense_rate": 1.0 - asr,
        **outcomes,
        "linf": float(np.abs(delta).max()),
        "l2_mean": float(np.linalg.norm(delta, axis=1).mean()),
        **deviation,
    }


def _gradient_deviation(
    defense: Defense,
    attack: Attack,
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    targets: np.ndarray | None,
    n_classes: int,
    cfg: RunConfig,
    device: torch.device,
) -> dict[str, float | None]:
    """Table 1's input-gradient deviation of the deployed model under the attack's loss at the
    clean inputs (whatever the setting: it is the defense's property). A defense declared
    deterministic has 0 by definition, which saves ``grad_samples`` passes."""
    if cfg.grad_samples < 2:
        return {"grad_std": None, "grad_sign_std": None}
    if not defense.stochastic:
        return {"grad_std": 0.0, "grad_sign_std": 0.0}
    deployed = Classifier(model, x.shape[1:], n_classes, device=str(device))
    return gradient_deviation(deployed, attack.loss, x, y, targets, cfg.grad_samples,
                              cfg.batch_size)


def _run_threat(cell: Cell, model: nn.Module, ctx: ThreatContext) -> dict[str, Any]:
    """The metrics of a threat cell (``cell.kind == "threat"``) against ``model``; the caller
    seeds the RNGs from the cell's key first and adds the fields every line has."""
    threat = instantiate(ctx.registry.get("threat", cell.attack), cell.attack_params,
                         f"threat {cell.attack!r}")
    with guarded(threat, "run"):
        values = threat.run(model, ctx)
    check_metric_names(values, type(threat).metrics, f"threat {cell.attack!r}")
    return values
