"""Hierarchical Random Switching (Wang et al., IJCAI 2019, section 5 and Algorithm 1).

The base model is cut into switching blocks; each block holds parallel channels shaped like that
block of the base model, and every forward pass routes each sample through one random channel
per block, so every active path is a complete base model. Channels are trained bottom-up: a
channel learns on top of the frozen, switching blocks below it, so upper blocks learn to accept
any lower channel and no path is privileged.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from hrsbench import Dataset, Defense, HrsbenchError, Trainer, base_stages, hookimpl, split_stages
from hrsbench.plugin.cache import stable_hash
from hrsbench.plugin.models import seeded_init

#: Upper bound on the memory for caching the frozen lower blocks' outputs on the training set.
#: Below it a block above the first trains on cached features (the lower blocks run once per
#: training example instead of once per example and epoch); above it they run live.
FEATURE_CACHE_BYTES = 2 * 2**30


def route(channels: Sequence[nn.Module], x: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """Send sample ``k`` through ``channels[choice[k]]``, computing only the chosen channels.

    Samples are grouped by channel (one gather), each group runs once, and the outputs are
    scattered back to the input order, so the cost is one base-model pass plus small copies.
    """
    order = torch.argsort(choice, stable=True)
    counts = torch.bincount(choice, minlength=len(channels)).tolist()
    order = order.to(x.device)
    groups = x.index_select(0, order).split(counts)
    out = torch.cat([channels[c](g) for c, g in enumerate(groups) if counts[c]])
    return torch.empty_like(out).index_copy(0, order, out)


class SwitchingBlock(nn.Module):
    """Parallel channels of the same shape; a random one is active, in training and in eval.

    Randomness never looks at ``self.training``: ART switches models to eval before every
    query, and an attacker must face the switching there too. Draws come from the global CPU
    generator so that ``torch.manual_seed`` reproduces them on any device.
    """

    def __init__(self, channels: Sequence[nn.Module], per_sample: bool = True) -> None:
        super().__init__()
        self.channels = nn.ModuleList(channels)
        self.per_sample = per_sample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.channels)
        if n == 1 or len(x) == 0:
            return self.channels[0](x)
        if self.per_sample:
            return route(self.channels, x, torch.randint(n, (len(x),)))
        return self.channels[int(torch.randint(n, ()))](x)


class HRSNet(nn.Module):
    """The deployed HRS model: switching blocks in sequence."""

    def __init__(self, blocks: Sequence[SwitchingBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    @property
    def widths(self) -> list[int]:
        return [len(b.channels) for b in self.blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def all_paths(blocks: Sequence[SwitchingBlock], x: torch.Tensor) -> torch.Tensor:
    """Outputs of every path, shape ``(paths, batch, ...)``; path index = mixed-radix channels.

    Evaluated as a tree: each channel of block ``i`` runs once on the stacked outputs of all
    paths through blocks ``< i``, so no lower channel is evaluated twice for one input.
    """
    h = x.unsqueeze(0)
    for block in blocks:
        paths, batch = h.shape[:2]
        flat = h.flatten(0, 1)
        outs = [c(flat).unflatten(0, (paths, batch)) for c in block.channels]
        h = torch.stack(outs, 1).flatten(0, 1)
    return h


class _AttackModel(nn.Module):
    """Models handed to attacks stay in eval mode: the training-only dropout inside block 1
    must never fire in them, whatever mode the caller sets."""

    def train(self, mode: bool = True) -> _AttackModel:
        return super().train(False)


class FixedPath(_AttackModel):
    """One fixed active path: a deterministic base model sharing the HRS weights."""

    def __init__(self, model: HRSNet, choice: Sequence[int]) -> None:
        super().__init__()
        pairs = zip(model.blocks, choice, strict=True)
        self.path = nn.Sequential(*(block.channels[c] for block, c in pairs))
        self.choice = list(choice)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.path(x)


class ExactExpectation(_AttackModel):
    """log E_path[softmax]: the exact expected output over all ∏N_i equally likely paths.

    Log-probabilities serve as logits for ART's losses (cross-entropy on them is the negative
    log of the expected probability), and argmax is that of the mean softmax.
    """

    def __init__(self, model: HRSNet) -> None:
        super().__init__()
        self.blocks = model.blocks
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(all_paths(self.blocks, x), dim=-1)
        return torch.logsumexp(logp, dim=0) - math.log(logp.shape[0])


class _CachedLower(nn.Module):
    """Stands in for the frozen lower blocks during upper training: sample ``k`` (the input is
    a training-set index) reads the cached output of a uniformly random lower path, then goes
    through the training-time dropout that ends the lower block, exactly as live switching
    would give it."""

    def __init__(self, features: torch.Tensor, dropout: nn.Module) -> None:
        super().__init__()
        self.features = features  # (paths, n, ...); not a buffer: never checkpointed
        self.dropout = dropout

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        path = torch.randint(self.features.shape[0], (len(idx),)).to(idx.device)
        return self.dropout(self.features[path, idx])


@contextlib.contextmanager
def _frozen(blocks: Sequence[SwitchingBlock]) -> Iterator[None]:
    """Freeze lower blocks and switch them per sample while an upper channel trains.

    Training always switches per sample: the objective (expected loss over lower paths) is the
    same as with one draw per batch, with less gradient noise, and it keeps ``switch`` a
    deployment setting that does not change the trained weights or their cache keys.
    """
    params = [p for b in blocks for p in b.parameters()]
    grads = [p.requires_grad for p in params]
    modes = [b.per_sample for b in blocks]
    for p in params:
        p.requires_grad_(False)
    for b in blocks:
        b.per_sample = True
    try:
        yield
    finally:
        for p, g in zip(params, grads, strict=True):
            p.requires_grad_(g)
        for b, m in zip(blocks, modes, strict=True):
            b.per_sample = m


def _trailing_dropout(blocks: Sequence[SwitchingBlock]) -> nn.Module | None:
    """The dropout to replay on cached features, or None when features cannot be cached.

    Caching evaluates the lower blocks once in eval mode, which is exact only if their sole
    training-time randomness is a dropout at their very end (the default split's fc1 dropout):
    that one is applied afresh to the cached features.
    """
    last = list(blocks[-1].channels[0].children())[-1]
    dropouts = nn.modules.dropout._DropoutNd
    random = [m for b in blocks for m in b.channels[0].modules() if isinstance(m, dropouts)]
    if not random:
        return nn.Identity()
    if random == [last]:
        return copy.deepcopy(last)
    return None


@torch.no_grad()
def _features(
    blocks: Sequence[SwitchingBlock], x: torch.Tensor, device: torch.device, batch: int = 1024
) -> torch.Tensor | None:
    """Every lower path's eval-mode output on ``x``, or None past ``FEATURE_CACHE_BYTES``."""
    for b in blocks:
        b.eval()
    probe = all_paths(blocks, x[:1].to(device))
    shape = (probe.shape[0], len(x), *probe.shape[2:])
    if math.prod(shape) * probe.element_size() > FEATURE_CACHE_BYTES:
        return None
    out = torch.empty(shape, dtype=probe.dtype, device=device)
    for s in range(0, len(x), batch):
        out[:, s : s + batch] = all_paths(blocks, x[s : s + batch].to(device))
    return out


def _seed(*parts: Any) -> int:
    """An independent seed per (purpose, block, channel), stable across runs and widths."""
    return int(stable_hash(list(parts), 8), 16) % 2**31


@dataclass
class HRS(Defense):
    """Hierarchical Random Switching; parameters are written as in the paper."""

    name: ClassVar[str] = "hrs"
    strength: ClassVar[str | None] = "channels"
    stochastic: ClassVar[bool] = True
    #: Algorithm 1 trains each channel on the blocks below only (its own seeds, its own cache
    #: file), so a task-graph executor may train the channels of a block in parallel.
    parallel_pieces: ClassVar[bool] = True

    #: Channels per block, bottom first: [10, 10], [5, 5, 5] (one width per block).
    channels: tuple[int, ...] = (10, 10)
    #: Comma-separated stage names after which the base model is cut into blocks.
    split: str = "dropout"
    #: "sample": a fresh channel per sample; "call": one draw per forward call for the batch.
    switch: str = "sample"
    #: Training epochs per block, "40,40"; empty means the trainer's epochs for every block.
    epochs: str = ""
    #: Seed choosing the one path the fixed-randomness surrogate uses.
    fixed_path_seed: int = 0

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        if not self.channels or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1
                                        for w in self.channels):
            raise HrsbenchError(
                f"hrs: bad channels {list(self.channels)!r}; give one width of at least 1 per "
                "block, e.g. channels = [10, 10]"
            )
        if len(self.widths) != len(self.cuts) + 1:
            raise HrsbenchError(
                f"hrs: channels {list(self.channels)!r} has {len(self.widths)} blocks but split "
                f"{self.split!r} makes {len(self.cuts) + 1}; give one width per block"
            )
        if self.switch not in ("sample", "call"):
            raise HrsbenchError(f"hrs: switch must be 'sample' or 'call', not {self.switch!r}")
        if self.epochs and not re.fullmatch(r"\d+(,\d+)*", self.epochs.replace(" ", "")):
            raise HrsbenchError(f"hrs: bad epochs {self.epochs!r}; write e.g. '40,40' or ''")

    @property
    def widths(self) -> list[int]:
        return list(self.channels)

    @property
    def cuts(self) -> list[str]:
        return [s.strip() for s in self.split.split(",") if s.strip()]

    def block_epochs(self, trainer: Trainer) -> list[int]:
        if not self.epochs:
            return [trainer.epochs] * len(self.widths)
        out = [int(e) for e in self.epochs.replace(" ", "").split(",")]
        if len(out) == 1:
            out *= len(self.widths)
        if len(out) != len(self.widths):
            raise HrsbenchError(
                f"hrs: epochs {self.epochs!r} gives {len(out)} values for {len(self.widths)} "
                "blocks; give one per block or one for all"
            )
        return out

    def build(self, dataset: Dataset) -> HRSNet:
        def block_stages(i: int) -> nn.Sequential:
            try:
                return nn.Sequential(split_stages(base_stages(dataset.arch), self.cuts)[i])
            except KeyError as e:
                raise HrsbenchError(f"hrs: bad split {self.split!r}: {e.args[0]}") from None

        per_sample = self.switch == "sample"
        return HRSNet(
            [
                SwitchingBlock([block_stages(i) for _ in range(n)], per_sample)
                for i, n in enumerate(self.widths)
            ]
        )

    def channel_key(self, trainer: Trainer, model: HRSNet, block: int, channel: int) -> str:
        """Cache key of one trained channel: independent of this block's and upper widths, so
        a 10-wide block reuses the first 10 channels of a 30-wide one. The lower widths (with
        the trainer key, split and epochs) pin down exactly which lower channels it sat on."""
        epochs = self.block_epochs(trainer)
        return trainer.key_for(
            "hrs-channel", self.cuts, block, channel, epochs[: block + 1], model.widths[:block]
        )

    def fit(self, model: HRSNet, trainer: Trainer, dataset: Dataset) -> None:
        """Algorithm 1: blocks bottom-up, each channel trained with fresh single channels for
        every block above it; one cache file per channel, so a rerun resumes where it stopped."""
        model.to(trainer.device)
        for i in range(len(model.blocks)):
            self.fit_block(model, trainer, i)
        model.eval()

    def fit_block(self, model: HRSNet, trainer: Trainer, i: int) -> None:
        """Load or train every channel of block ``i``; blocks below must already be trained."""
        block = model.blocks[i]
        keys = [self.channel_key(trainer, model, i, j) for j in range(len(block.channels))]
        todo = [j for j, key in enumerate(keys) if not trainer.cache.load(key, block.channels[j])]
        if not todo:
            return
        lower = list(model.blocks[:i])
        epochs = self.block_epochs(trainer)[i]
        with _frozen(lower):
            source: nn.Module = nn.Sequential(*lower)
            fit_on = trainer
            dropout = _trailing_dropout(lower) if lower else None
            x_train = trainer.resident()[0]
            feats = _features(lower, x_train, trainer.device) if dropout is not None else None
            if feats is not None:
                source = _CachedLower(feats, dropout)
                fit_on = dataclasses.replace(trainer, x=torch.arange(len(trainer.x)))
            for j in todo:
                channel = seeded_init(block.channels[j], _seed(trainer.seed, "init", i, j))
                temps = [
                    seeded_init(copy.deepcopy(up.channels[0]), _seed(trainer.seed, "tmp", i, j, k))
                    for k, up in enumerate(model.blocks[i + 1 :], start=i + 1)
                ]
                net = nn.Sequential(source, channel, *temps)
                params = [p for m in (channel, *temps) for p in m.parameters()]
                fit_on.fit(
                    net,
                    params=params,
                    epochs=epochs,
                    seed=_seed(trainer.seed, "train", i, j),
                    checkpoint=keys[j],
                    label=f"hrs block {i + 1} channel {j + 1}/{len(block.channels)}",
                )
                trainer.cache.save(keys[j], channel)
            del source, feats

    def surrogate(self, model: HRSNet) -> FixedPath:
        gen = torch.Generator().manual_seed(self.fixed_path_seed)
        return FixedPath(model, [int(torch.randint(n, (), generator=gen)) for n in model.widths])

    def expectation(self, model: HRSNet) -> ExactExpectation:
        return ExactExpectation(model)


@hookimpl
def register_defenses(register):
    register(HRS)
