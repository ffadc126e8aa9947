"""The Trainer's data-resident batching: the split goes to the device once and batches are
gathered there, with the same weights as copying each batch from host memory."""

from __future__ import annotations

import torch
from torch import nn

from hrsbench import Arch, ModelCache, Trainer, base_model
from hrsbench.plugin.training import FAST_LAYOUT

ARCH = Arch(in_channels=1, image_size=16, conv=(4, 4, 4, 4), fc=(16, 16), train_dropout=0.3)


def host_copy_fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int,
                  batch: int) -> None:
    """The schedule with every batch indexed in host memory and copied to the device."""
    model.to(memory_format=FAST_LAYOUT)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        torch.manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(x), generator=gen)
        model.train()
        for step in range(-(-len(x) // batch)):
            idx = order[step * batch : (step + 1) * batch]
            xb, yb = x[idx].to("cpu"), y[idx].to("cpu")
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()


def test_resident_batches_train_the_same_weights(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(200, 1, 16, 16, generator=g), torch.randint(10, (200,), generator=g)
    torch.manual_seed(5)
    reference = base_model(ARCH)
    resident = base_model(ARCH)
    resident.load_state_dict(reference.state_dict())
    host_copy_fit(reference, x, y, epochs=2, seed=3, batch=64)
    trainer = Trainer(x, y, epochs=2, seed=3, cache=ModelCache(tmp_path), batch_size=64)
    trainer.fit(resident)
    for (k, a), b in zip(reference.state_dict().items(), resident.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k


def test_the_resident_copy_is_made_once_per_trainer(tmp_path):
    x, y = torch.rand(10, 1, 16, 16), torch.randint(10, (10,))
    trainer = Trainer(x, y, epochs=1, seed=0, cache=ModelCache(tmp_path))
    first = trainer.resident()
    assert trainer.resident() is first
    assert first[0].data_ptr() == x.data_ptr()  # on the CPU it is the split itself
