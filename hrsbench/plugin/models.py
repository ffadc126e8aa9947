"""Base architectures of the paper's Table A1, as ordered lists of named stages.

Defenses instrument a model at named points (HRS splits it, SAP and dropout sit between the
fully connected layers, Gaussian noise precedes every convolution), so the model is an
``nn.Sequential`` whose children carry stable names rather than an opaque ``forward``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Arch:
    """Table A1 parameters of a dataset's base model (valid 3×3 convolutions, ReLU)."""

    in_channels: int
    image_size: int
    conv: tuple[int, int, int, int]
    fc: tuple[int, int]
    train_dropout: float
    n_classes: int = 10

    @property
    def flat_features(self) -> int:
        side = ((self.image_size - 4) // 2 - 4) // 2
        return self.conv[3] * side * side


def base_stages(arch: Arch) -> OrderedDict[str, nn.Module]:
    """The named stages of the undefended model; ``dropout`` is active in training only."""
    c1, c2, c3, c4 = arch.conv
    f1, f2 = arch.fc
    stages = OrderedDict(
        [
            ("conv1", nn.Conv2d(arch.in_channels, c1, 3)),
            ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(c1, c2, 3)),
            ("relu2", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(c2, c3, 3)),
            ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(c3, c4, 3)),
            ("relu4", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(arch.flat_features, f1)),
            ("relu_fc1", nn.ReLU()),
            ("dropout", nn.Dropout(arch.train_dropout)),
            ("fc2", nn.Linear(f1, f2)),
            ("relu_fc2", nn.ReLU()),
            ("logits", nn.Linear(f2, arch.n_classes)),
        ]
    )
    for module in stages.values():
        init_weights(module)
    return stages


def init_weights(model: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases, as the paper's Keras code: with torch's default
    initialisation the same schedule needs several times more steps to leave chance level."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def base_model(arch: Arch) -> nn.Sequential:
    return nn.Sequential(base_stages(arch))


def stage_names(model: nn.Sequential) -> list[str]:
    return [name for name, _ in model.named_children()]


def split_stages(
    stages: OrderedDict[str, nn.Module], after: Iterable[str]
) -> list[OrderedDict[str, nn.Module]]:
    """Cut the stage list after each named stage: ``after=["dropout"]`` gives two blocks."""
    cuts = list(after)
    unknown = [c for c in cuts if c not in stages]
    if unknown:
        raise KeyError(f"no stage named {unknown[0]!r}; stages: {', '.join(stages)}")
    blocks: list[OrderedDict[str, nn.Module]] = [OrderedDict()]
    for name, module in stages.items():
        blocks[-1][name] = module
        if name in cuts:
            blocks.append(OrderedDict())
    if not blocks[-1]:
        raise KeyError("cannot split after the last stage")
    return blocks


def insert_stages(
    stages: OrderedDict[str, nn.Module],
    make: Callable[[str, nn.Module], tuple[str, nn.Module] | None],
    before: bool = False,
) -> OrderedDict[str, nn.Module]:
    """Insert ``make(name, module)`` next to each stage for which it returns a (name, module)."""
    out: OrderedDict[str, nn.Module] = OrderedDict()
    for name, module in stages.items():
        extra = make(name, module)
        if extra and before:
            out[extra[0]] = extra[1]
        out[name] = module
        if extra and not before:
            out[extra[0]] = extra[1]
    return out


def replace_stage(
    stages: OrderedDict[str, nn.Module], name: str, module: nn.Module
) -> OrderedDict[str, nn.Module]:
    if name not in stages:
        raise KeyError(f"no stage named {name!r}")
    return OrderedDict((k, module if k == name else v) for k, v in stages.items())


def without(model: nn.Module, kind: type[nn.Module]) -> nn.Sequential:
    """The same stages (weights shared) with every ``kind`` stage replaced by Identity: a
    stochastic defense's fixed-randomness surrogate, keeping the state-dict keys intact."""
    stages = model.named_children()
    return nn.Sequential(
        OrderedDict((n, nn.Identity() if isinstance(m, kind) else m) for n, m in stages)
    )


def seeded_init(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every parameter from ``seed`` so that a model depends on its seed alone."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    init_weights(model)
    torch.random.set_rng_state(gen_state)
    return model
