"""A run's cost estimated before running anything (``hrsbench run --dry-run``): the run's task
graph (:mod:`.schedule`: models, the pieces they train from, cells) priced from timings.

Costs come from the timings of existing result lines (``train_time_s``, ``time_s``): the same
cell or model when it was measured, else similar ones (same dataset, defense, attack, setting,
test images), per training epoch and newly trained piece of each shape for models. The plan
gives the total, the critical path (the longest dependent chain: the wall time unlimited workers
could reach) and the wall time of a list schedule on a given number of workers.
"""

from __future__ import annotations

import dataclasses
import heapq
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrsbench.engine.cells import Cell
from hrsbench.engine.schedule import (
    PIECE,
    Piece,
    cell_label,
    comparable,
    model_label,
    model_pieces,
    new_pieces,
    scheduled_pieces,
)
from hrsbench.plugin.cache import ModelCache
from hrsbench.plugin.params import instantiate

#: Worker counts the plan reports wall times for.
WORKERS = (1, 8, 64)

_CELL_FIELDS = ("dataset", "n_train", "n_test", "epochs", "seed", "defense", "params", "attack",
                "attack_params", "attack_strength", "setting", "targeted", "repeats",
                "eot_samples")
_MODEL_FIELDS = ("dataset", "n_train", "epochs", "seed", "defense", "params")


# ---------------------------------------------------------------- history of timings


def read_history(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The lines of result files as flat rows (older schemas migrated on reading)."""
    from hrsbench.results.store import read_lines

    return [line.row() for p in paths for line in read_lines(Path(p))]


def _sig(obj: Any, names: Sequence[str]) -> tuple[Any, ...]:
    get = obj.get if isinstance(obj, dict) else lambda k: getattr(obj, k, None)
    return tuple(comparable(get(k)) for k in names)


#: Levels of similarity for a cell, most specific first: fields that must match.
_CELL_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("same cell", _CELL_FIELDS),
    ("other strength", ("dataset", "n_test", "defense", "params", "attack", "attack_params",
                        "setting", "targeted", "eot_samples")),
    ("similar", ("dataset", "n_test", "defense", "attack", "setting")),
    ("other defense", ("dataset", "n_test", "attack", "setting")),
    ("attack only", ("dataset", "attack")),
)


@dataclass
class History:
    """Recorded timings, indexed for the estimates."""

    lines: list[dict[str, Any]]
    cells: dict[tuple[str, tuple[Any, ...]], list[float]] = field(default_factory=dict)
    by_cell_key: dict[str, float] = field(default_factory=dict)
    models: dict[tuple[Any, ...], float] = field(default_factory=dict)
    by_model_key: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for line in self.lines:
            t = line.get("time_s")
            if isinstance(t, int | float) and line.get("attack") not in (None, "none"):
                self.by_cell_key[line.get("cell_key", "")] = float(t)
                for level, names in _CELL_LEVELS:
                    self.cells.setdefault((level, _sig(line, names)), []).append(float(t))
            train = line.get("train_time_s")
            if isinstance(train, int | float) and train > 0:
                sig = _sig(line, _MODEL_FIELDS)
                self.models[sig] = max(self.models.get(sig, 0.0), float(train))
                mk = line.get("model_key", "")
                self.by_model_key[mk] = max(self.by_model_key.get(mk, 0.0), float(train))

    def cell_cost(self, cell: Cell, skip_own: bool = False) -> tuple[float | None, str]:
        """Seconds for ``cell`` and what the figure rests on; with ``skip_own``, the cell's own
        recorded time is not used (to check the similar-cell estimate against it)."""
        if cell.attack == "none":
            return 0.0, "clean only"
        if not skip_own and cell.key in self.by_cell_key:
            return self.by_cell_key[cell.key], "recorded"
        for level, names in _CELL_LEVELS[1 if skip_own else 0 :]:
            times = self.cells.get((level, _sig(cell, names)))
            if times:
                return statistics.median(times), level
        return None, "no timing"


# ---------------------------------------------------------------- model costs


@dataclass(frozen=True)
class Rates:
    """Training seconds per epoch for one new piece of each shape, fitted to recorded
    trainings (non-negative least squares: a model's time is the sum over its new pieces), and
    the plain mean per piece for shapes never trained alone."""

    per_shape: dict[str, float]
    mean: float

    def cost(self, new: Counter[str], epochs: int) -> float:
        return epochs * sum(n * self.per_shape.get(s, self.mean) for s, n in new.items())

    @classmethod
    def fit(cls, rows: list[tuple[Counter[str], float]]) -> Rates | None:
        """``rows``: (new pieces by shape, seconds per epoch) of recorded trainings."""
        if not rows:
            return None
        import numpy as np
        from scipy.optimize import nnls

        shapes = sorted({s for new, _ in rows for s in new})
        a = np.array([[float(new.get(s, 0)) for s in shapes] for new, _ in rows])
        mean = sum(t for _, t in rows) / max(a.sum(), 1.0)
        if np.linalg.matrix_rank(a) < len(shapes):  # too few trainings to tell shapes apart
            return cls({}, mean)
        solution, _ = nnls(a, np.array([t for _, t in rows]))
        return cls(dict(zip(shapes, map(float, solution), strict=True)), mean)


def training_rates(history: History, plugins: Any) -> dict[tuple[str, str | None], Rates]:
    """Training rates by (dataset, defense) and, over all defenses, by (dataset, None).

    The recorded models are probed in the order they were first written (the order they
    trained in), so a model that reused earlier pieces is charged only for its own.
    """
    firsts: dict[tuple[Any, ...], dict[str, Any]] = {}
    for line in history.lines:
        firsts.setdefault(_sig(line, _MODEL_FIELDS), line)
    cells = [c for c in (_line_cell(line, plugins) for line in firsts.values()) if c]
    new = new_pieces(model_pieces(cells, plugins)) if cells else {}
    rows: dict[tuple[str, str | None], list[tuple[Counter[str], float]]] = {}
    for c in cells:
        seconds = history.models.get(_sig(c, _MODEL_FIELDS))
        if not seconds or not new.get(c.model_key):
            continue
        for k in ((c.dataset, c.defense), (c.dataset, None)):
            rows.setdefault(k, []).append((new[c.model_key], seconds / max(c.epochs, 1)))
    return {k: r for k, v in rows.items() if (r := Rates.fit(v)) is not None}


def _line_cell(line: dict[str, Any], plugins: Any) -> Cell | None:
    """A clean-only cell standing for a recorded line's model, or None when the defense or
    its parameters no longer resolve."""
    try:
        dcls = plugins.get("defense", line["defense"])
        fields = {f.name for f in dataclasses.fields(dcls)}
        params = {k: v for k, v in (line.get("params") or {}).items() if k in fields}
        instantiate(dcls, params, line["defense"])
        return Cell(line["dataset"], line.get("n_train"), int(line.get("n_test") or 0),
                    line.get("n_clean"), int(line.get("epochs") or 1), int(line.get("seed") or 0),
                    line["defense"], params, "none", {}, 0.0, "none", bool(line.get("targeted")),
                    int(line.get("repeats") or 1), 1)
    except Exception:
        return None


# ---------------------------------------------------------------- a GPU's measured rates


#: Environment variable naming a ``gpu_check`` summary to estimate GPU runs from; without it,
#: the summary shipped with hrsbench (``hrsbench/costs/gpu_check.json``) is used.
GPU_CHECK_ENV = "HRSBENCH_GPU_CHECK"
#: Images per attack batch in the summary's attack rate: a GPU step of a Table A1 model costs
#: about the same for any batch up to this size (launch-bound), so cells pay per batch-step.
_RATE_BATCH = 256
#: Seconds a cell costs besides its attack steps on a GPU (classifier set-up, predictions,
#: gradient deviation), from the quick preset on an H200 (26 attack cells in 5.0 s).
_CELL_OVERHEAD_S = 0.15


@dataclass(frozen=True)
class DeviceRates:
    """A device's measured throughput, from a ``benchmarks/gpu_check.py`` summary: training
    images per second and attack image-steps per second of each dataset's base model. A GPU run's
    recorded CPU timings say nothing about it, so its plan is estimated from these instead."""

    source: str
    train: dict[str, float]
    attack: dict[str, float]

    @classmethod
    def read(cls, path: Path) -> DeviceRates:
        import json

        summary = json.loads(Path(path).read_text())
        env = summary["stages"]["environment"]
        rates = summary["stages"]["throughput"]
        device = env.get("gpu") or summary.get("device", "?")
        day = str(summary.get("started_at", ""))[:10]
        return cls(f"gpu_check on {device}, {day}",
                   {d: float(r["train_images_per_s"]) for d, r in rates.items()
                    if isinstance(r, dict)},
                   {d: float(r["attack_image_steps_per_s"]) for d, r in rates.items()
                    if isinstance(r, dict)})

    def train_cost(self, c: Cell, pieces: int, plugins: Any) -> float | None:
        """Seconds to train ``pieces`` networks of ``c``'s size for its epochs (an HRS channel
        trains a whole network: its own block with fresh single channels above it)."""
        rate = self.train.get(c.dataset)
        n = c.n_train or getattr(plugins.get("dataset", c.dataset), "train_size", None)
        if not rate or not n:
            return None
        return pieces * max(c.epochs, 1) * n / rate

    def cell_cost(self, c: Cell) -> float | None:
        """Seconds of a cell: batch-steps × gradient samples per step at the measured rate."""
        rate = self.attack.get(c.dataset)
        if c.attack == "none":
            return 0.0
        if not rate:
            return None
        p = c.attack_params
        steps = int(p.get("max_iter", 1)) * int(p.get("binary_search_steps", 1))
        samples = int(p.get("eot_samples") or c.eot_samples)
        examples = c.n_test * (9 if c.targeted else 1)
        batches = -(-examples // _RATE_BATCH)
        return _CELL_OVERHEAD_S + batches * steps * samples * _RATE_BATCH / rate


def device_rates(device: str) -> tuple[DeviceRates | None, str]:
    """The measured rates a plan on ``device`` estimates from, and a line saying where they come
    from; ``None`` on a CPU (its estimates are recorded timings) or when no summary is found."""
    if not device.startswith("cuda"):
        return None, ""
    import os
    from importlib import resources

    named = os.environ.get(GPU_CHECK_ENV)
    path = Path(named) if named else Path(str(resources.files("hrsbench") / "costs" /
                                              "gpu_check.json"))
    if not path.is_file():
        return None, (f"no gpu_check summary at {path} (run benchmarks/gpu_check.py on a GPU and "
                      f"set {GPU_CHECK_ENV} to its summary.json): the estimates below are the "
                      "recorded timings in OUT, from whichever device ran them")
    rates = DeviceRates.read(path)
    return rates, (f"GPU estimates from {rates.source} ({path.name}): training and attack "
                   "steps at its measured rates")


# ---------------------------------------------------------------- the plan


@dataclass
class PlannedTask:
    """One node of the plan: a model training or a cell."""

    key: str
    kind: str  # "model" or "cell"
    label: str
    done: bool
    cost: float | None  # seconds; None when nothing similar was ever timed
    basis: str
    after: tuple[str, ...] = ()
    recorded: float | None = None  # a done cell's own time, to check the estimate against
    check: float | None = None  # a done cell's estimate without its own time

    @property
    def seconds(self) -> float:
        return self.cost or 0.0


@dataclass
class Plan:
    tasks: list[PlannedTask]

    def by_key(self) -> dict[str, PlannedTask]:
        return {t.key: t for t in self.tasks}

    def remaining(self) -> list[PlannedTask]:
        """Tasks still to run; dependencies on finished tasks are dropped."""
        todo = {t.key for t in self.tasks if not t.done}
        return [dataclasses.replace(t, after=tuple(a for a in t.after if a in todo))
                for t in self.tasks if t.key in todo]

    def full(self) -> list[PlannedTask]:
        """Every task as if nothing were done yet (the cost of the grid from scratch)."""
        return [dataclasses.replace(t, done=False) for t in self.tasks]


def ordered(tasks: Sequence[PlannedTask]) -> list[PlannedTask]:
    """``tasks`` with every task after those it needs (stable otherwise)."""
    index = {t.key: t for t in tasks}
    out: list[PlannedTask] = []
    seen: set[str] = set()

    def visit(t: PlannedTask) -> None:
        if t.key in seen:
            return
        seen.add(t.key)
        for a in t.after:
            if a in index:
                visit(index[a])
        out.append(t)

    for t in tasks:
        visit(t)
    return out


def critical_path(tasks: Sequence[PlannedTask]) -> tuple[float, list[PlannedTask]]:
    """The longest chain of dependent tasks (seconds, chain from first to last)."""
    tasks = ordered(tasks)
    index = {t.key: t for t in tasks}
    finish: dict[str, tuple[float, str | None]] = {}
    for t in tasks:  # tasks come in dependency order: a model before its cells and sharers
        prev = max(((finish[a][0], a) for a in t.after if a in finish), default=(0.0, None))
        finish[t.key] = (prev[0] + t.seconds, prev[1])
    if not finish:
        return 0.0, []
    key: str | None = max(finish, key=lambda k: finish[k][0])
    total = finish[key][0]
    chain = []
    while key is not None:
        chain.append(index[key])
        key = finish[key][1]
    return total, chain[::-1]


def makespan(tasks: Sequence[PlannedTask], workers: int) -> float:
    """Wall time of a list schedule on ``workers`` equal workers: a ready task with the longest
    chain behind it starts first (what a task-graph scheduler achieves, near enough)."""
    tasks = ordered(tasks)
    index = {t.key: t for t in tasks}
    children: dict[str, list[str]] = {t.key: [] for t in tasks}
    waiting = {t.key: len([a for a in t.after if a in index]) for t in tasks}
    for t in tasks:
        for a in t.after:
            if a in index:
                children[a].append(t.key)
    tail: dict[str, float] = {}
    for t in reversed(tasks):
        tail[t.key] = t.seconds + max((tail[c] for c in children[t.key]), default=0.0)
    ready = [(-tail[k], i, k) for i, k in enumerate(index) if waiting[k] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now, order = 0.0, len(index)
    while ready or running:
        while ready and len(running) < workers:
            _, _, k = heapq.heappop(ready)
            heapq.heappush(running, (now + index[k].seconds, k))
        now, k = heapq.heappop(running)
        for c in children[k]:
            waiting[c] -= 1
            if waiting[c] == 0:
                order += 1
                heapq.heappush(ready, (-tail[c], order, c))
    return now


def build_plan(cells: Sequence[Cell], done: set[str], cache: ModelCache, plugins: Any,
               history: History, device: DeviceRates | None = None) -> Plan:
    """Models (cached or not) and cells (done or not) of a run, with estimated costs: from
    ``device``'s measured rates when given, else from the recorded timings in ``history``."""
    schedule = scheduled_pieces(cells, plugins, cache)
    pieces, parallel, after = schedule.pieces, schedule.parallel, schedule.after
    new = new_pieces(pieces)
    rates = training_rates(history, plugins) if device is None else {}
    firsts: dict[str, Cell] = {}
    for c in cells:
        firsts.setdefault(c.model_key, c)
    tasks = [_piece_task(p, firsts[p.model], pieces[p.model][p.key], cache, plugins, rates,
                         device)
             for p in schedule.tasks]
    for key, c in firsts.items():
        if key in parallel:
            cost, basis = 0.0, "assembled from its piece tasks"
        elif device is not None:
            n = sum(new[key].values())
            cost, basis = (device.train_cost(c, n, plugins), "GPU rate") if n else (
                0.0, "reuses earlier models")
        else:
            cost, basis = _model_cost(c, new[key], history, rates)
        tasks.append(PlannedTask(key, "model", model_label(c, plugins), cache.path(key).exists(),
                                 cost, basis, after[key]))
    for c in cells:
        cost, basis = (device.cell_cost(c), "GPU rate") if device else history.cell_cost(c)
        task = PlannedTask(c.key, "cell", f"{model_label(c, plugins)} · {cell_label(c)}",
                           c.key in done, cost, basis, (c.model_key,))
        if task.done and c.attack != "none":
            task.recorded = history.by_cell_key.get(c.key)
            task.check = history.cell_cost(c, skip_own=True)[0]
        tasks.append(task)
    return Plan(tasks)


def _piece_task(p: Piece, c: Cell, shape: str, cache: ModelCache, plugins: Any,
                rates: dict[tuple[str, str | None], Rates],
                device: DeviceRates | None = None) -> PlannedTask:
    rate = rates.get((c.dataset, c.defense))
    cost = None if rate is None else rate.cost(Counter([shape]), max(c.epochs, 1))
    basis = "no timing" if rate is None else "per epoch and piece"
    if device is not None:
        cost, basis = device.train_cost(c, 1, plugins), "GPU rate"
    return PlannedTask(PIECE + p.key, "piece", f"{model_label(c, plugins)} · {p.label}",
                       cache.path(p.key).exists(), cost, basis, p.after)


def _model_cost(c: Cell, new: Counter[str], history: History,
                rates: dict[tuple[str, str | None], Rates]) -> tuple[float | None, str]:
    if not new:
        return 0.0, "reuses earlier models"
    if c.model_key in history.by_model_key:
        return history.by_model_key[c.model_key], "recorded"
    if (recorded := history.models.get(_sig(c, _MODEL_FIELDS))) is not None:
        return recorded, "recorded"
    for k, basis in (((c.dataset, c.defense), "per epoch and piece"),
                     ((c.dataset, None), "other defenses' rate")):
        if (rate := rates.get(k)) is not None:
            return rate.cost(new, max(c.epochs, 1)), basis
    return None, "no timing"


# ---------------------------------------------------------------- printing


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def summary(tasks: Sequence[PlannedTask], workers: Sequence[int] = WORKERS) -> dict[str, Any]:
    """Totals of ``tasks``: seconds of work, critical path and wall time per worker count."""
    total = sum(t.seconds for t in tasks)
    path, chain = critical_path(tasks)
    return {
        "tasks": len(tasks), "unknown": sum(t.cost is None for t in tasks), "total_s": total,
        "critical_path_s": path, "chain": [t.label for t in chain],
        "wall_s": {w: makespan(tasks, w) for w in workers},
    }


def render(plan: Plan) -> list[str]:
    """The plan as text lines: models, cells per model, then totals."""
    lines = ["models:"]
    tasks = plan.tasks
    for m in (t for t in tasks if t.kind == "model"):
        state = "cached" if m.done else "to train"
        cost = "?" if m.cost is None else _dur(m.cost)
        lines.append(f"  {m.label:<34} {state:<9} {cost:>9}  ({m.basis})")
    if pieces := [t for t in tasks if t.kind == "piece"]:
        todo = [t for t in pieces if not t.done]
        lines.append(f"  {len(pieces)} pieces train as tasks of their own ({len(todo)} to train, "
                     f"{_dur(sum(t.seconds for t in todo))})")
    lines.append("cells (per model): done / total, estimated seconds of the cells to run")
    for m in (t for t in tasks if t.kind == "model"):
        cells = [t for t in tasks if t.kind == "cell" and t.after == (m.key,)]
        todo = [t for t in cells if not t.done]
        unknown = sum(t.cost is None for t in todo)
        extra = f"  ({unknown} without a timing)" if unknown else ""
        lines.append(f"  {m.label:<34} {len(cells) - len(todo):>4} / {len(cells):<4}"
                     f" {_dur(sum(t.seconds for t in todo)):>9}{extra}")
    lines += _check_lines(tasks)
    for name, sub in (("to run", plan.remaining()), ("whole grid", plan.full())):
        s = summary(sub)
        walls = ", ".join(f"{w} worker{'s' if w > 1 else ''} {_dur(v)}"
                          for w, v in s["wall_s"].items())
        unknown = f"; {s['unknown']} tasks without a timing count as 0" if s["unknown"] else ""
        lines.append(f"{name}: {s['tasks']} tasks, {_dur(s['total_s'])} of work; critical path "
                     f"{_dur(s['critical_path_s'])}; wall time on {walls}{unknown}")
        if s["chain"]:
            lines.append(f"  critical path: {' → '.join(_short(s['chain']))}")
    return lines


def _check_lines(tasks: Sequence[PlannedTask]) -> list[str]:
    """For finished cells: the similar-cell estimate (without their own time) against their
    recorded total, which says how far to trust the estimates of cells never run."""
    pairs = [(t.recorded, t.check) for t in tasks if t.recorded is not None and t.check]
    if not pairs:
        return []
    rec = sum(r for r, _ in pairs)
    est = sum(e for _, e in pairs if e is not None)
    return [f"check: {len(pairs)} finished cells recorded {_dur(rec)}; estimated from similar "
            f"cells without their own time {_dur(est)} ({100 * (est / rec - 1):+.0f} %)"]


def _short(chain: list[str]) -> list[str]:
    return chain if len(chain) <= 6 else [*chain[:3], f"… {len(chain) - 5} more …", *chain[-2:]]


def dry_run(cells: Sequence[Cell], out: Path, cache: ModelCache, plugins: Any,
            device: str = "cpu") -> list[str]:
    """The plan of a run into ``out`` as text lines, from the timings in ``out``'s results, or
    on a GPU from a ``gpu_check`` summary's measured rates (saying which, or that none exists)."""
    rows = read_history([Path(out) / "results.jsonl"])
    done = {r["cell_key"] for r in rows}
    history = History(rows)
    rates, source = device_rates(device)
    plan = render(build_plan(cells, done, cache, plugins, history, rates))
    return [source, *plan] if source else plan
