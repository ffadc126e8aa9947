"""Square Attack (Andriushchenko et al., ECCV 2020), L∞: a score-based random search that never
asks for a gradient, so a defense that masks its gradients cannot hide from it.

The paper's L∞ algorithm: start from vertical stripes of ±ε, then at each query propose, for each
example, a random s×s window (the same ±ε per channel over the window) on top of the best point
so far, and keep it where the margin loss improves; the window's area, a fraction ``p`` of the
image, shrinks on the paper's schedule (halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and
8000 of 10,000 queries, rescaled to ``max_queries``).

In-house rather than ART's ``SquareAttack`` because ART's (1) queries ``estimator.predict``,
which is one draw of a stochastic model whatever the setting, so under EOT it could not query
the averaged prediction; (2) is untargeted only (its loss and success test are the true-class
margin); (3) places one window at the same position for the whole batch each iteration, where
the paper draws one per example; (4) makes three queries per iteration (a prediction, the
current point's loss, the proposal's loss) with a numpy round trip each, where the paper needs
one. Here each query is one forward pass of the examples still searched (``eot_samples`` passes
under EOT), on the classifier's device.

What a query sees is the setting's crafting model as deployed: one draw of a stochastic model in
``whitebox``, the frozen surrogate in ``fixed``, the exact expectation in ``expectation``, and
under ``eot`` the mean softmax over the setting's ``eot_samples`` fresh draws
(:meth:`hrsbench.Classifier.expect`, the one place EOT happens). The margin is taken on the log
of the (mean) softmax: on one draw that equals the margin of the logits, since log-softmax only
shifts a row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hrsbench import Classifier, hookimpl
from hrsbench.plugin.attack import TensorAttack
from hrsbench.plugin.gradient import Tensor, bounds_of, margin_loss

#: The paper's schedule for ``p`` on a budget of 10,000 queries: after each of these query
#: counts the window's area halves (their ``p_selection``).
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: Proposals that would leave an example's point unchanged are redrawn at most this often (the
#: paper redraws until one changes it; with one channel each redraw changes it with chance 1/2).
REDRAWS = 10


def fraction(p_init: float, query: int, max_queries: int) -> float:
    """The share of the image the window covers at iteration ``query`` (0-based) of a budget of
    ``max_queries``: ``p_init`` halved at each of :data:`HALVINGS` passed, on the paper's
    10,000-query scale."""
    scaled = int(query / max_queries * 10_000)
    return p_init / 2 ** sum(scaled > h for h in HALVINGS)


@dataclass
class Square(TensorAttack):
    """L∞ Square Attack: ``max_queries`` model queries per example (the stripe start counts as
    one), window area ``p_init`` of the image at first; maximises CW's margin (z_t − max_{j≠t}
    z_j towards a target, max_{j≠y} z_j − z_y away from the true class) and returns each
    example's best point.

    On a deterministic crafting model an example stops once its margin is positive (it is then
    adversarial for good). On a stochastic one every example searches for the whole budget: a
    positive margin on one draw is no success on the next, and a larger margin survives more
    draws, as the unclamped margin of CW-PGD keeps pushing."""

    name = "square"
    iterative = True
    max_queries: int = 1000
    p_init: float = 0.8

    def __post_init__(self) -> None:
        if self.max_queries < 1:
            raise ValueError(f"max_queries must be at least 1, got {self.max_queries}")
        if not 0 < self.p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {self.p_init}")

    def loss(self, logits: Tensor, y: Tensor, targets: Tensor | None = None) -> Tensor:
        return margin_loss(logits, y, targets)

    def scores(self, classifier: Classifier, x: Tensor) -> Tensor:
        """Log-probabilities of one query: log-softmax of one forward pass, or under EOT the log
        of the mean softmax over the setting's draws (in float64, so a class the model gives
        e^-100 keeps a finite log)."""
        model = classifier.model
        model.eval()  # eval selects a defense's deployed randomness (see Defense.build)
        with torch.no_grad():
            if classifier.samples() == 1:
                return torch.log_softmax(model(x), 1)
            mean = classifier.expect(lambda: torch.softmax(model(x).double(), 1))
            return mean.clamp_min(1e-300).log()

    def run(self, classifier: Classifier, x0: Tensor, y: Tensor, targets: Tensor | None,
            eps: float) -> Tensor:
        """Adversarial versions of one batch of images (N, C, H, W), on the classifier's device."""
        if x0.dim() != 4:
            raise ValueError(f"square attacks images shaped (N, C, H, W), got {tuple(x0.shape)}")
        lo, hi = bounds_of(classifier)
        n, c, h, w = x0.shape

        def margin(x: Tensor, idx: Tensor) -> Tensor:
            t = None if targets is None else targets[idx]
            return self.loss(self.scores(classifier, x), y[idx], t).float()

        everyone = torch.arange(n, device=x0.device)
        stripes = eps * _signs((n, c, 1, w), x0.device)
        best = torch.clamp(x0 + stripes, lo, hi)
        best_margin = margin(best, everyone)
        search_all = bool(classifier.stochastic)
        for query in range(self.max_queries - 1):
            idx = everyone if search_all else everyone[best_margin <= 0]
            if not len(idx):
                break
            side = round(math.sqrt(fraction(self.p_init, query, self.max_queries) * h * w))
            side = min(max(side, 1), min(h, w) - 1) if min(h, w) > 1 else 1
            x_new = self._propose(x0[idx], best[idx], side, eps, (lo, hi))
            new_margin = margin(x_new, idx)
            better = new_margin > best_margin[idx]
            best[idx[better]] = x_new[better]
            best_margin[idx[better]] = new_margin[better]
        return best

    @staticmethod
    def _propose(x0: Tensor, best: Tensor, side: int, eps: float,
                 bounds: tuple[float, float]) -> Tensor:
        """Each example's best point with one random side×side window set to ±ε per channel
        around ``x0``; a window that would leave the point unchanged is redrawn."""
        k, c, h, w = x0.shape
        rows = torch.arange(h, device=x0.device)
        cols = torch.arange(w, device=x0.device)
        top = torch.randint(0, h - side + 1, (k, 1), device=x0.device)
        left = torch.randint(0, w - side + 1, (k, 1), device=x0.device)
        in_rows = (rows >= top) & (rows < top + side)  # (k, h)
        in_cols = (cols >= left) & (cols < left + side)  # (k, w)
        window = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (k, 1, h, w)
        delta = best - x0
        signs = _signs((k, c, 1, 1), x0.device)
        for _ in range(REDRAWS):
            proposal = torch.clamp(x0 + torch.where(window, eps * signs, delta), *bounds)
            same = ((proposal - best).abs() < 1e-7).flatten(1).all(1)
            if not same.any():
                break
            signs = torch.where(same[:, None, None, None], _signs((k, c, 1, 1), x0.device), signs)
        return proposal


def _signs(shape: tuple[int, ...], device: torch.device) -> Tensor:
    """Independent ±1 draws."""
    return torch.randint(0, 2, shape, device=device).float() * 2 - 1


@hookimpl
def register_attacks(register):
    register(Square)
