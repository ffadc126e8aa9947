"""Threat plugins' base class: adversarial threats that are not per-image evasion attacks.

An evasion attack perturbs test images one batch at a time against an ART classifier; a threat
such as adversarial reprogramming (paper section 2.2) instead *trains* something of its own
against the frozen deployed model and reports a score for it. The engine runs a threat once per
defense parameter set, on the same trained model the attacks use, and writes its result as a
line of ``results.jsonl`` like any attack cell's, with ``attack`` set to the threat's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from hrsbench.plugin.cache import ModelCache, stable_hash
from hrsbench.plugin.dataset import Dataset
from hrsbench.plugin.defense import Defense

if TYPE_CHECKING:
    from hrsbench.plugin.registry import Registry

ProgressFn = Callable[[str, int, int], None]  # (label, done, total)


@dataclass
class ThreatContext:
    """Everything a threat may need beside the model, so that a threat never reaches into the
    runner: the target's dataset and defense, the plugin registry (a threat may need a second
    dataset, as reprogramming needs its source task), the cache for resumable checkpoints."""

    dataset: Dataset
    defense: Defense
    registry: Registry
    cache: ModelCache
    #: Identifies the target model (its cache key); checkpoints derive their keys from it.
    key: str
    seed: int
    #: Stochastic predictions drawn per evaluation, as for attacks.
    repeats: int
    batch_size: int = 256
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data_dir: Path | None = None
    progress: ProgressFn | None = None

    def key_for(self, *parts: Any) -> str:
        """A cache key bound to the target model and ``parts`` (the threat's parameters)."""
        return stable_hash([self.key, *parts])

    def report(self, label: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(label, done, total)


@dataclass
class Threat(ABC):
    """Subclass as a dataclass whose fields are the threat's parameters (validated against
    their type hints before a run starts); register it with the ``register_threats`` hook."""

    name: ClassVar[str]
    #: The parameter reported as a result line's ``attack_strength`` (e.g. a kernel size).
    strength: ClassVar[str]
    #: What the result line records as ``threat.kind``: ``"reprogramming"``, or ``"threat"``
    #: for a threat of no kind the schema names (docs/results-schema.md).
    kind: ClassVar[str] = "threat"
    #: The metrics ``run`` returns beyond the result schema's (kept under the line's
    #: ``metrics.extra``): any other name it returns is an error, not a silent extra.
    metrics: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def run(self, model: nn.Module, ctx: ThreatContext) -> dict[str, Any]:
        """Run the threat against the deployed ``model`` without changing it; return the
        line's metrics: at least ``n_examples``, ``attack_success_rate`` (the threat's success,
        higher is worse for the defense), ``attack_success_rate_std`` and ``defense_rate``."""


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode (as deployed: stochastic layers stay on by the Defense contract)
    with ``requires_grad`` off on every parameter, restored afterwards: the same model object
    serves the attack cells after a threat, and no optimiser can touch weights without
    gradients, so a threat cannot train the target by mistake."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    model.eval()
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)

