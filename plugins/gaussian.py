"""Gaussian noise before every convolution (Liu et al. 2017, "random self-ensemble").

Noise is added to the input of each convolution in training and at inference, with a larger
deviation before the first ("init") than before the others ("inner"). Deviations are in pixel
units (inputs lie in [0, 1]) and the noisy input is not clipped: the noise feeds convolutions,
not an image, and clipping would bias it. Appendix C.2: MNIST uses Liu et al.'s 0.2 / 0.1;
CIFAR-10 needs 10x smaller deviations (0.02 / 0.01), and the base's training dropout is kept to
stop over-fitting — kept here on both datasets, so this model is the base plus noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hrsbench import Dataset, Defense, HrsbenchError, base_stages, hookimpl, insert_stages
from hrsbench.plugin.models import without

#: (init, inner) deviations by dataset when not given (appendix C.2).
DEFAULTS: dict[str, tuple[float, float]] = {"mnist": (0.2, 0.1), "cifar10": (0.02, 0.01)}


def normal_like(x: torch.Tensor) -> torch.Tensor:
    """``randn_like(x)``, drawn in ``x``'s memory order: on channels-last activations (the
    Trainer's layout) ``randn_like`` takes a strided path about 4× slower on CPU (torch 2.13),
    which made noise generation cost more than the convolutions it feeds."""
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    if channels_last and not x.is_contiguous():
        n, c, h, w = x.shape
        return torch.randn(n, h, w, c, dtype=x.dtype, device=x.device).permute(0, 3, 1, 2)
    return torch.randn_like(x)


class GaussianNoise(nn.Module):
    """x + N(0, std²), whatever ``self.training`` says (ART queries in eval mode)."""

    def __init__(self, std: float) -> None:
        super().__init__()
        if std < 0:
            raise ValueError(f"a noise deviation cannot be negative, got {std}")
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * normal_like(x) if self.std > 0 else x

    def extra_repr(self) -> str:
        return f"std={self.std}"


@dataclass
class Gaussian(Defense):
    """``init`` (before the first convolution) is the strength; ``inner`` precedes the others.

    Either left as None takes the dataset's appendix C.2 value.
    """

    name = "gaussian"
    strength = "init"
    stochastic = True

    init: float | None = None
    inner: float | None = None

    def __post_init__(self) -> None:
        for v in (self.init, self.inner):
            if v is not None and v < 0:
                raise ValueError(f"a noise deviation cannot be negative, got {v}")

    def deviations(self, dataset: str) -> tuple[float, float]:
        """(init, inner) with the dataset's defaults filled in."""
        if (self.init is None or self.inner is None) and dataset not in DEFAULTS:
            raise HrsbenchError(
                f"gaussian: no default noise for dataset {dataset!r}; set init and inner"
            )
        init, inner = DEFAULTS.get(dataset, (0.0, 0.0))
        return (
            init if self.init is None else self.init,
            inner if self.inner is None else self.inner,
        )

    def build(self, dataset: Dataset) -> nn.Module:
        init, inner = self.deviations(dataset.name)

        def before_conv(name: str, module: nn.Module) -> tuple[str, nn.Module] | None:
            if not isinstance(module, nn.Conv2d):
                return None
            return f"noise_{name}", GaussianNoise(init if name == "conv1" else inner)

        return nn.Sequential(insert_stages(base_stages(dataset.arch), before_conv, before=True))

    def surrogate(self, model: nn.Module) -> nn.Module:
        """The trained weights without any noise stage."""
        return without(model, GaussianNoise)


@hookimpl
def register_defenses(register):
    register(Gaussian)
