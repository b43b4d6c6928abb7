"""A safeguarded solver for one inversion step's implicit equation x = G(x), pure torch.

Inverting ComfyUI's Euler/DDIM step from x_low (at s_low) up to s_high means solving

    x = G(x),   G(x) = x_low + (s_high - s_low) * eps(x, s_high)

and the residual f(x) = G(x) - x of a candidate is exactly its own round-trip error over that step:
the Euler step down from x lands on x - h eps(x) = x_low - f(x).

Plain fixed-point iteration x <- G(x) (``refine_iterations``) multiplies the error by G's Jacobian
h * d eps / dx each time: it contracts only while that stays below 1 in size. On the last sampling
step of a rough model it need not (tiny Z-Image, 16x16: the Jacobian's largest singular value is
about 2 on the step 0.136 -> 0), and the iteration stalls or grows the error. Each row of the batch is
solved on its own (the model is evaluated on the whole batch at once, and a row's result never depends
on another row's iterates where the model treats rows apart):

1. **Plain phase**, evaluations 1 .. 1 + K (K = ``plain_iterations``): x_n = G(x_{n-1}), the same
   expression as the plain refinement, while each evaluation's residual is smaller than the previous
   one's (contraction) or already within the tolerance. A row that stays in this phase through all
   1 + K evaluations returns x_{K+1} = G(x_K): bit for bit what plain refinement returns. It goes on
   to 2 instead when its residual did not shrink (not contracting), or when after 1 + K evaluations it
   is still above the tolerance and the budget allows more evaluations (a stall).
2. **Accelerated phase**: Anderson acceleration (Walker & Ni 2011; nonlinear GMRES on x - G(x) = 0).
   From the last ``MEMORY`` + 1 evaluated points (x_j, f_j), plain ones included, take weights a
   (summing to 1) minimising |sum_j a_j f_j|, and evaluate next sum_j a_j (x_j + beta f_j). On a
   linear map it converges like GMRES on (I - J) x = b: an eigenvalue lambda of J costs what
   |1 - lambda| away from 0 costs, so lambda = -3 is no harder than lambda = 0.5, where plain
   iteration diverges (|lambda| > 1). beta: see :func:`damping`. Safeguard: a candidate whose residual
   is more than ``RESTART_GROWTH`` times the best one seen (or not finite) restarts the history at the
   best point with beta halved (a damped step from there).
   A row stops as soon as its best relative residual |f| / |x_ref| is within ``tolerance`` or the
   budget is spent, and returns its best *evaluated* point, whose residual is measured (never G of it,
   which grows the error where G expands).

Budget: a step makes at most max(1 + K, ``max_evaluations``) model evaluations of the batch, and
stops early once every row is done. With max_evaluations = 0 that is 1 + K, the plain refinement's
cost: the accelerated phase then only replaces plain iterations that stopped contracting.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

# Anderson memory: the last MEMORY differences (MEMORY + 1 points), the usual 5-10. Memories of 12 and 40
# did no better on the tiny models' hardest step (Z-Image, last step, 2026-12): there the limit is how
# far the map is from linear, not how many directions are remembered.
MEMORY = 6
# Anderson's residuals need not fall monotonically on a nonlinear map; growth beyond this factor over the
# best seen means the extrapolation left the region where the map is near linear: restart from the best.
RESTART_GROWTH = 4.0
# Tikhonov weight of the least squares, relative to the largest squared residual in the history: far
# below float32's resolution of the residuals (eps ~ 1.2e-7, squared ~ 1.4e-14), it only keeps the
# Gram matrix invertible when two residuals coincide.
RIDGE = 1e-12


def damping(ratio: float) -> float:
    """beta of the accelerated phase from the plain phase's last residual ratio rho = |f_n| / |f_{n-1}|.

    A stall (rho < 1: contracting, too slowly for the budget) keeps Anderson's usual beta = 1. A step
    that grew the residual (rho >= 1) most likely overshoots along a dominant eigenvalue near -rho of
    G's Jacobian (the fixed point is passed back and forth): x + beta f with beta = 1 / (1 + rho) cancels
    exactly that eigenvalue, and the least squares handles the rest (for an eigenvalue near +rho > 1 it
    matters less: Anderson's first secant step already points the other way)."""
    return 1.0 if ratio < 1.0 else 1.0 / (1.0 + ratio)


Map = Callable[[torch.Tensor], torch.Tensor]  # G: x (B, ...) -> G(x) (B, ...)


@dataclass(frozen=True)
class StepReport:
    """What one step's solve did, per row of the batch."""

    evaluations: int  # model evaluations of the batch
    residuals: torch.Tensor  # (B,) float64: |f| / |x_ref| of the returned point (see ``measured``)
    measured: torch.Tensor  # (B,) bool: residual is the returned point's own; False: the returned
    #                         point is G of the last evaluated one, ``residuals`` is that one's residual
    #                         (an upper bound on the returned one's while G contracts; NaN when K = 0)
    accelerated: torch.Tensor  # (B,) bool: the row left the plain iteration


def _rms(t: torch.Tensor) -> torch.Tensor:
    """Per-row RMS in float64, (B,)."""
    return t.detach().double().flatten(1).pow(2).mean(1).sqrt()


class _Row:
    """One row's evaluated points x_j and residuals f_j (flat, float64; the last MEMORY + 1) and its
    best evaluated point."""

    def __init__(self):
        self.points: list = []
        self.residuals: list = []
        self.beta = 1.0
        self.best = float("inf")  # relative residual of the best evaluated point
        self.best_point = None  # (x, f) of it, flat float64

    def add(self, x: torch.Tensor, f: torch.Tensor, relative: float) -> bool:
        """Record an evaluated point; True when it is the best so far. A non-finite residual (the model
        gave NaN or inf there) is no information: left out."""
        if not math.isfinite(relative):
            return False
        point = (x.flatten().double(), f.flatten().double())
        self.points.append(point[0])
        self.residuals.append(point[1])
        del self.points[:-(MEMORY + 1)], self.residuals[:-(MEMORY + 1)]
        if relative < self.best:
            self.best, self.best_point = relative, point
            return True
        return False

    def restart(self):
        """Forget every point but the best, and halve the damping."""
        self.points, self.residuals = [self.best_point[0]], [self.best_point[1]]
        self.beta *= 0.5

    def candidate(self) -> torch.Tensor:
        """Anderson: weights a (sum 1) minimising |F a|, then X a + beta F a (flat, float64)."""
        F = torch.stack(self.residuals, 1)  # (N, p)
        X = torch.stack(self.points, 1)
        gram = F.T @ F
        ridge = RIDGE * gram.diagonal().max().clamp_min(torch.finfo(torch.float64).tiny)
        gram = gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype)
        w = torch.linalg.solve(gram, torch.ones(gram.shape[0], 1, dtype=gram.dtype))
        alpha = w / w.sum()
        return (X @ alpha + self.beta * (F @ alpha)).squeeze(1)


def solve(G: Map, x_low: torch.Tensor, guess: torch.Tensor, plain_iterations: int, max_evaluations: int = 0,
          tolerance: float = 0.0, reference: torch.Tensor | None = None) -> tuple:
    """Solve x = G(x) row by row from ``guess``; returns (x, StepReport).

    ``plain_iterations`` K: today's fixed-point refinements (1 + K evaluations, bit for bit today's
    result where they contract); ``max_evaluations``: the step's budget, at least 1 + K (0: 1 + K);
    ``tolerance``: relative residual |G(x) - x| / |x_ref| at which a row is done, RMS over the row, with
    x_ref = ``reference`` (the latent the whole inversion started from: the residual is a share of its
    round-trip error) or, not given, x_low.
    """
    plain_budget = 1 + plain_iterations
    budget = max(plain_budget, max_evaluations)
    rows = x_low.shape[0]
    scale = _rms(x_low if reference is None else reference).clamp_min(torch.finfo(torch.float32).tiny)
    x = guess
    result = [None] * rows
    residual = torch.full((rows,), float("nan"), dtype=torch.float64)
    measured = torch.zeros(rows, dtype=torch.bool)
    accelerated = torch.zeros(rows, dtype=torch.bool)
    active = [True] * rows
    previous = [float("inf")] * rows  # |f| of the previous plain point
    ratio = [1.0] * rows  # the last plain residual ratio
    history = [_Row() for _ in range(rows)]
    evaluations = 0
    for n in range(1, budget + 1):
        g = G(x)
        evaluations = n
        f = g - x
        size = _rms(f).tolist()
        relative = (_rms(f) / scale).tolist()
        nxt = x.clone()
        for b in range(rows):
            if not active[b]:
                continue
            row = history[b]
            is_best = row.add(x[b], f[b], relative[b])
            if not accelerated[b]:  # plain phase: x_{n} = G(x_{n-1}) while the residual shrinks
                # (or is already within the tolerance: at float rounding it no longer shrinks for sure)
                shrinking = size[b] < previous[b] or relative[b] <= tolerance
                if n > 1:
                    ratio[b] = size[b] / previous[b] if previous[b] > 0 else float("inf")
                previous[b] = size[b]
                if shrinking and n < plain_budget:
                    nxt[b] = g[b]
                    continue
                if shrinking and (budget == plain_budget or relative[b] <= tolerance):
                    # contracted through all 1 + K evaluations: today's x_{K+1} = G(x_K), residual of x_K
                    # (plain inversion, K = 0: no contraction seen, no residual of the result known)
                    result[b], active[b] = g[b], False
                    residual[b] = relative[b] if plain_iterations else float("nan")
                    continue
                if row.best_point is None:  # not one finite residual yet: nothing to accelerate from
                    result[b], active[b] = g[b], False
                    continue
                accelerated[b] = True  # did not contract, or stalled above the tolerance with budget left
                row.beta = damping(ratio[b])
            elif not is_best and not relative[b] <= RESTART_GROWTH * row.best:  # (NaN too)
                row.restart()
            if row.best <= tolerance or n == budget:
                result[b] = row.best_point[0].to(x.dtype).view_as(x[b])
                residual[b], measured[b], active[b] = row.best, True, False
                continue
            nxt[b] = row.candidate().to(x.dtype).view_as(x[b])
        if not any(active):
            break
        x = nxt
    out = torch.stack(result)
    return out, StepReport(evaluations=evaluations, residuals=residual, measured=measured, accelerated=accelerated)
