"""Table A1 architectures as named stages that defenses can cut and instrument."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hrsbench import base_model, base_stages, insert_stages, split_stages
from hrsbench.plugin.registry import registry


@pytest.mark.parametrize(("name", "shape", "params"), [
    ("mnist", (1, 28, 28), 312_202),
    ("cifar10", (3, 32, 32), 1_147_978),
])
def test_base_model_shapes_and_size(name, shape, params):
    arch = registry().get("dataset", name).arch
    model = base_model(arch)
    assert model(torch.rand(2, *shape)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == params


def test_split_after_dropout_gives_the_paper_blocks():
    stages = base_stages(registry().get("dataset", "mnist").arch)
    lower, upper = split_stages(stages, after=["dropout"])
    assert list(lower)[-3:] == ["fc1", "relu_fc1", "dropout"]
    assert list(upper) == ["fc2", "relu_fc2", "logits"]
    with pytest.raises(KeyError, match="no stage named 'fc9'"):
        split_stages(stages, after=["fc9"])


def test_insert_before_every_convolution():
    stages = base_stages(registry().get("dataset", "mnist").arch)
    out = insert_stages(
        stages,
        lambda n, m: (f"noise_{n}", nn.Identity()) if isinstance(m, nn.Conv2d) else None,
        before=True,
    )
    names = list(out)
    for conv in ("conv1", "conv2", "conv3", "conv4"):
        assert names[names.index(conv) - 1] == f"noise_{conv}"
