"""The paper's L∞ attacks (section 2.1): FGSM, PGD and CW-PGD. Budgets are in [0, 1] pixel units.

All three are :class:`hrsbench.GradientAttack` s: FGSM is one full-ε step,
PGD iterates smaller sign steps with projection, and CW-PGD is PGD with Carlini–Wagner's margin
loss in place of cross-entropy, so the three differ by exactly the piece the paper names.
They replace ART's FGSM/PGD: same update rule (a test checks they agree with ART's on a
deterministic model), but no per-step numpy round trip, which keeps PGD within a few percent
of a bare torch loop (benchmarks/attack_throughput.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from hrsbench import hookimpl
from hrsbench.plugin.gradient import GradientAttack, Tensor, margin_loss, uniform_start


@dataclass
class FGSM(GradientAttack):
    """Goodfellow et al.'s one-step attack: x ± ε·sign(∇ cross-entropy)."""

    name = "fgsm"


@dataclass
class PGD(GradientAttack):
    """L∞ PGD with sign steps; ``step`` (pixel units) defaults to Madry et al.'s
    2.5·ε/``max_iter``, so the path can cross the ball and back whatever ε is.

    The paper's code instead feeds the gradient sign to Adam (lr 0.1) and clips; with ε ≤ 0.3 a
    0.1 step is a third of the ball or more and Adam's per-pixel rescaling makes the step size
    data-dependent, so textbook PGD is the reference and ``step`` can reproduce large steps.
    """

    name = "pgd"
    iterative = True
    max_iter: int = 100
    step: float | None = None
    random_init: bool = False

    def __post_init__(self) -> None:
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be at least 1, got {self.max_iter}")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be positive, got {self.step}")

    def iterations(self) -> int:
        return self.max_iter

    def step_size(self, eps: float) -> float:
        return self.step if self.step is not None else 2.5 * eps / self.max_iter

    def start(self, x0: Tensor, eps: float) -> Tensor:
        return uniform_start(x0, eps) if self.random_init else x0.clone()


@dataclass
class CWPGD(PGD):
    """CW-PGD (Athalye et al. 2018): PGD's schedule on the margin z_t − max_{j≠t} z_j
    (targeted) or max_{j≠y} z_j − z_y (untargeted), without κ, as the paper's code."""

    name = "cwpgd"

    def loss(self, logits: Tensor, y: Tensor, targets: Tensor | None = None) -> Tensor:
        return margin_loss(logits, y, targets)


@hookimpl
def register_attacks(register):
    register(FGSM)
    register(PGD)
    register(CWPGD)
