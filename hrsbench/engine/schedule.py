"""The run's schedule: the pieces its models are trained from and the order they must go in.

A run is model trainings and cells. Each cell depends on its model; a model depends on the
earlier models whose cached pieces it reuses (SAP and dropout at the base's rate reuse the base's
standard training, HRS 10×10 the first five block-1 channels of HRS 5×5), so a shared piece is
trained once even when models train in parallel. Which pieces a model uses is found by *probing*
its defense: ``fit`` runs against a cache that claims to hold every key and a trainer that never
trains, and the keys it asks for are recorded. That costs a model build, no data and no training.
A defense declaring ``parallel_pieces`` (HRS) has its pieces trained as tasks of their own: the
pieces of one shape in parallel, after the pieces of earlier shapes they sit on.

The runner schedules from this module; :mod:`.plan`, the dry-run estimate, reads the same
schedule so that it shows the tasks the run will make.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hrsbench.engine.cells import Cell
from hrsbench.plugin.cache import ModelCache
from hrsbench.plugin.params import defaults, instantiate
from hrsbench.plugin.training import Trainer
from hrsbench.results.storage import stable_hash

# ---------------------------------------------------------------- probing shared training


#: A model's pieces: cache key → the shape of what it holds (the piece's kind: every HRS
#: block-1 channel has one shape, every block-2 channel another).
Pieces = dict[str, str]


def shape_of(module: torch.nn.Module) -> str:
    """The kind of a trained piece: its class and parameter shapes (not its values)."""
    shapes = [(n, tuple(p.shape)) for n, p in module.named_parameters()]
    return f"{type(module).__name__}:{stable_hash(shapes, 8)}"


class _ProbeCache(ModelCache):
    """Claims to hold every key, so ``fit`` skips all training; records the keys asked for."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent/hrsbench-probe"))
        self.pieces: Pieces = {}

    def load(self, key: str, model: torch.nn.Module) -> bool:
        self.pieces.setdefault(key, shape_of(model))
        return True

    def save(self, key: str, model: torch.nn.Module) -> None:
        self.pieces.setdefault(key, shape_of(model))


@dataclass
class _ProbeTrainer(Trainer):
    """A trainer whose ``fit`` records its checkpoint key instead of training: a defense that
    trains without a cache key gets a piece of its own, shared with nobody."""

    owner: str = ""

    def fit(self, model: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.nn.Module:
        key = kwargs.get("checkpoint") or f"{self.owner}:{kwargs.get('label', 'train')}"
        self.cache.pieces.setdefault(key, shape_of(model))  # type: ignore[attr-defined]
        return model


def probe_pieces(defense: Any, dataset: Any, cell: Cell) -> Pieces:
    """The pieces ``defense.fit`` loads or trains for ``cell``'s model, in order.

    A defense whose ``fit`` fails under the probe is one piece of its own (no sharing known).
    """
    cache = _ProbeCache()
    empty = torch.empty(0)
    trainer = _ProbeTrainer(empty, empty.long(), epochs=cell.epochs, seed=cell.seed, cache=cache,
                            key=cell.training_key, owner=cell.model_key)
    try:
        with torch.random.fork_rng(devices=[]):
            defense.fit(defense.build(dataset), trainer, dataset)
    except Exception:
        return {cell.model_key: "model"}
    return cache.pieces or {cell.model_key: "model"}


def model_pieces(cells: Sequence[Cell], plugins: Any) -> dict[str, Pieces]:
    """Pieces of every model of ``cells`` (by model key, in first-appearance order)."""
    out: dict[str, Pieces] = {}
    datasets: dict[str, Any] = {}
    for c in cells:
        if c.model_key in out:
            continue
        if c.dataset not in datasets:
            datasets[c.dataset] = plugins.get("dataset", c.dataset)()
        defense = instantiate(plugins.get("defense", c.defense), c.params, c.defense)
        out[c.model_key] = probe_pieces(defense, datasets[c.dataset], c)
    return out


#: Prefix of a piece task's id (a model task's id is its model key, a cell's its cell key).
PIECE = "piece:"


@dataclass(frozen=True)
class Piece:
    """A piece trained as a task of its own, by the first model that uses it."""

    key: str
    model: str
    #: The model's other pieces of this piece's shape or later ones: the task's cache pretends
    #: to hold them, so the defense's ``fit`` trains this piece alone.
    pretend: tuple[str, ...]
    #: Ids of the tasks training the model's pieces of earlier shapes (this piece sits on them).
    after: tuple[str, ...]
    label: str


def piece_graph(pieces: dict[str, Pieces], parallel: set[str],
                cached: Callable[[str], bool] = lambda key: False,
                ) -> tuple[list[Piece], dict[str, tuple[str, ...]]]:
    """Piece tasks, and each model's dependencies (task ids).

    The first model to use a piece trains it: as a task of its own when its defense declares
    ``parallel_pieces`` (its pieces of one shape are independent given those of earlier shapes,
    as HRS's channels of one block given the blocks below), else inside its model task. A
    later model using that piece waits for whichever task trains it and loads it.
    """
    owner: dict[str, str] = {}
    out: list[Piece] = []
    after: dict[str, tuple[str, ...]] = {}
    for model, ps in pieces.items():
        if model in parallel:
            out += _own_pieces(model, ps, owner, cached)
        after[model] = tuple(sorted({owner[p] for p in ps if p in owner and owner[p] != model}))
        for p in ps:
            owner.setdefault(p, model)
    return out, after


def _own_pieces(model: str, ps: Pieces, owner: dict[str, str],
                cached: Callable[[str], bool]) -> list[Piece]:
    levels = list(dict.fromkeys(ps.values()))
    level = {p: levels.index(shape) for p, shape in ps.items()}
    mine = [p for p in ps if p not in owner and not cached(p)]
    for p in mine:
        owner[p] = PIECE + p
    out = []
    for i, p in enumerate(mine, start=1):
        lower = {owner[q] for q in ps if level[q] < level[p] and q in owner}
        pretend = tuple(q for q in ps if level[q] >= level[p] and q != p)
        out.append(Piece(p, model, pretend, tuple(sorted(lower)), f"piece {i}/{len(mine)}"))
    return out


@dataclass(frozen=True)
class Schedule:
    """What a parallel run schedules (:func:`scheduled_pieces`)."""

    #: Every model's pieces, by model key.
    pieces: dict[str, Pieces]
    #: The models whose pieces train as tasks of their own.
    parallel: set[str]
    #: Those piece tasks.
    tasks: list[Piece]
    #: Each model's dependencies (task ids).
    after: dict[str, tuple[str, ...]]


def scheduled_pieces(cells: Sequence[Cell], plugins: Any, cache: ModelCache) -> Schedule:
    """The pieces and piece tasks of a parallel run. A cached model loads whole, so its pieces
    need no tasks, and a cached piece is no task either. The runner and the dry-run plan both
    read this, so the plan shows the tasks the run will make."""
    cached = lambda key: cache.path(key).exists()  # noqa: E731
    pieces = model_pieces(cells, plugins)
    parallel = {m for m in parallel_models(cells, plugins) if not cached(m)}
    return Schedule(pieces, parallel, *piece_graph(pieces, parallel, cached))


def sharing(pieces: dict[str, Pieces]) -> dict[str, tuple[str, ...]]:
    """For each model, the earlier models it waits for: the first model to use a piece trains
    it, and every later model using that piece runs after it (and loads it from the cache)."""
    return piece_graph(pieces, set())[1]


def parallel_models(cells: Sequence[Cell], plugins: Any) -> set[str]:
    """Models whose defense declares ``parallel_pieces``."""
    return {c.model_key for c in cells
            if getattr(plugins.get("defense", c.defense), "parallel_pieces", False)}


def new_pieces(pieces: dict[str, Pieces]) -> dict[str, Counter[str]]:
    """The pieces each model trains itself (no earlier model trained them), counted by shape."""
    seen: set[str] = set()
    out = {}
    for key, ps in pieces.items():
        out[key] = Counter(shape for p, shape in ps.items() if p not in seen)
        seen.update(ps)
    return out


# ---------------------------------------------------------------- labels


def comparable(v: Any) -> Any:
    """A comparable form of a parameter value across schema versions: sequences as their items
    joined by "x" (``[10, 10]`` and ``"10x10"`` are the same HRS), no ``batch_size``."""
    if isinstance(v, list | tuple):
        return "x".join(str(comparable(i)) for i in v)
    if isinstance(v, dict):
        return tuple((k, comparable(x)) for k, x in sorted(v.items()) if k != "batch_size")
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def model_label(c: Cell, plugins: Any) -> str:
    """The defense and its parameters that differ from the defaults (or its strength)."""
    try:
        dcls = plugins.get("defense", c.defense)
        shown, strength = defaults(dcls), getattr(dcls, "strength", None)
    except Exception:
        shown, strength = {}, None
    params = " ".join(f"{k}={_show(v)}" for k, v in c.params.items()
                      if k == strength or comparable(shown.get(k)) != comparable(v))
    return f"{c.defense} {params}".strip()


def cell_label(c: Cell) -> str:
    """The attack (or threat), setting and strength of a cell."""
    if c.attack == "none":
        return "clean"
    return f"{c.attack} {c.setting} {c.attack_strength:g}"


def _show(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, list | tuple) else str(v)
