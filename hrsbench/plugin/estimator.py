"""Defended models as ART classifiers, and the attack settings that pick what an attack sees.

EOT lives here and only here: :meth:`Classifier.expect` averages any gradient query over
``eot_samples`` fresh forward passes, and every gradient an attack can ask for goes through it:
ART's ``loss_gradient`` and ``class_gradient`` (so ART's own attacks get EOT without knowing) and
:meth:`Classifier.value_and_grad`, the tensor-level hook of hrsbench's own gradient attacks.
The setting (white-box, EOT, fixed randomness, exact expectation) only decides which model the
classifier wraps and how many samples it averages, so no attack ever special-cases a defense.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from art.estimators.classification import PyTorchClassifier
from torch import nn

from hrsbench.errors import HrsbenchError
from hrsbench.results.vocabulary import Crafts, setting

#: ``objective(logits) -> per-example values``: what a gradient query differentiates.
Objective = Callable[[torch.Tensor], torch.Tensor]


class Opaque(nn.Module):
    """Hides an ``nn.Sequential`` from ART, which otherwise calls its children one by one and
    so bypasses any ``forward`` a defense overrides."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Classifier(PyTorchClassifier):
    """A ``PyTorchClassifier`` over inputs in [0, 1] whose gradients may be EOT averages.

    ``stochastic=False`` declares the wrapped model deterministic (a fixed-randomness surrogate,
    an exact expectation): averaging identical gradients would only cost time, so every query
    then takes one sample whatever an attack asks for. The model must output logits (an exact
    expectation returns log-probabilities, which are logits of the mean softmax).
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        nb_classes: int = 10,
        eot_samples: int = 1,
        device: str = "cpu",
        loss: nn.Module | None = None,
        stochastic: bool = True,
    ) -> None:
        super().__init__(
            model=Opaque(model),
            loss=loss or nn.CrossEntropyLoss(),
            input_shape=input_shape,
            nb_classes=nb_classes,
            clip_values=(0.0, 1.0),
            device_type="gpu" if str(device).startswith("cuda") else "cpu",
        )
        if int(eot_samples) < 1:
            raise HrsbenchError(f"eot_samples must be at least 1, got {eot_samples}")
        self.eot_samples = int(eot_samples)
        self.stochastic = bool(stochastic)

    def samples(self, requested: int | None = None) -> int:
        """How many draws a gradient query averages: ``requested`` (an attack's own EOT count)
        or the setting's ``eot_samples``; always 1 on a deterministic model."""
        if not self.stochastic:
            return 1
        return int(requested) if requested is not None else self.eot_samples

    def expect(self, fn: Callable[..., Any], *args: Any, samples: int | None = None,
               **kwargs: Any) -> Any:
        """The mean of ``fn(*args, **kwargs)`` over fresh draws of the model's randomness.

        The single place EOT happens. ``fn`` may return an array, a tensor or a tuple of them.
        Draws are separate forward passes, never a tiled batch: HRS draws one path per forward
        call, so copies of an input in one batch would all share the same path.
        """
        n = self.samples(samples)
        total = fn(*args, **kwargs)
        for _ in range(n - 1):
            draw = fn(*args, **kwargs)
            total = (tuple(a + b for a, b in zip(total, draw, strict=True))
                     if isinstance(total, tuple) else total + draw)
        if n == 1:
            return total
        return tuple(a / n for a in total) if isinstance(total, tuple) else total / n

    # -- ART's gradient API: every ART attack's gradients are EOT averages --------------------

    def loss_gradient(self, x: Any, y: Any, **kwargs: Any) -> Any:
        return self.expect(super().loss_gradient, x, y, **kwargs)

    def class_gradient(self, x: Any, label: Any = None, **kwargs: Any) -> Any:
        return self.expect(self._class_gradient_once, x, label, **kwargs)

    def _class_gradient_once(self, x: Any, label: Any = None, training_mode: bool = False,
                             **kwargs: Any) -> Any:
        """One draw of ART's ``class_gradient``. For per-example labels on numpy input (what
        Carlini–Wagner asks twice per step) this is one backward pass where ART makes one per
        distinct label; examples do not interact, so the sum's gradient is per-example exact.
        The classifier has no ART preprocessing, so calling the model directly is equivalent."""
        if label is None or training_mode or isinstance(x, torch.Tensor):
            return super().class_gradient(x, label, training_mode=training_mode, **kwargs)
        labels = np.broadcast_to(np.asarray(label, dtype=np.int64), (len(x),))
        index = torch.from_numpy(labels.copy()).to(self.device)[:, None]
        xt = torch.from_numpy(np.asarray(x, dtype=np.float32)).to(self.device)
        _, grad = self._value_and_grad_once(xt, lambda z: z.gather(1, index).squeeze(1))
        return grad.cpu().numpy()[:, None]

    # -- hrsbench's tensor-level hook ----------------------------------------------------------

    def value_and_grad(self, x: torch.Tensor, objective: Objective,
                       samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """EOT mean of ``objective(model(x))`` (per example) and of its input gradient.

        ``x`` stays on the classifier's device throughout: in-house attacks pay no numpy round
        trip per step. ``samples`` overrides the setting's count (APGD's own EOT).
        """
        return self.expect(self._value_and_grad_once, x, objective, samples=samples)

    def _value_and_grad_once(self, x: torch.Tensor,
                             objective: Objective) -> tuple[torch.Tensor, torch.Tensor]:
        """One fresh forward pass: objective values and the gradient of their sum."""
        self.model.eval()  # eval selects a defense's deployed randomness (see Defense.build)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            values = objective(self.model(xg))
            (grad,) = torch.autograd.grad(values.sum(), xg)
        return values.detach(), grad.detach()

    def sample_gradients(self, x: torch.Tensor, objective: Objective, n: int) -> torch.Tensor:
        """``n`` single-draw input gradients, shape (n, *x.shape): the raw material of the
        gradient-deviation metric (sampled, deliberately not averaged)."""
        return torch.stack([self._value_and_grad_once(x, objective)[1] for _ in range(n)])


def input_shape(model_input: np.ndarray | torch.Tensor) -> tuple[int, ...]:
    return tuple(model_input.shape[1:])


def crafting_model(name: str, defense: Any, model: nn.Module) -> nn.Module:
    """The model an attack differentiates in setting ``name`` (EOT uses the deployed model).

    Called once per cell, so in ``fixed`` every query of every chunk sees the same surrogate
    (one frozen draw of the randomness), however often an attack calls the model per step.
    """
    crafts = setting(name).crafts
    if crafts is Crafts.DEPLOYED:
        return model
    if crafts is Crafts.SURROGATE:
        return defense.surrogate(model)
    exp = defense.expectation(model)
    if exp is None:
        raise HrsbenchError(
            f"defense {defense.name!r} has no exact expectation model; "
            f"drop the {name!r} setting for it"
        )
    return exp


def crafting_classifier(
    name: str,
    defense: Any,
    model: nn.Module,
    input_shape: tuple[int, ...],
    nb_classes: int,
    eot_samples: int = 1,
    device: str = "cpu",
) -> Classifier:
    """The classifier an attack gets in setting ``name``: the crafting model, marked stochastic
    only when it is the deployed model of a stochastic defense."""
    stochastic = (setting(name).crafts is Crafts.DEPLOYED
                  and bool(getattr(defense, "stochastic", True)))
    return Classifier(
        crafting_model(name, defense, model), input_shape, nb_classes,
        eot_samples=eot_samples, device=device, stochastic=stochastic,
    )
