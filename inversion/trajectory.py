"""An inversion trajectory: every per-step latent, its sigma, and the conditioning the model saw.

Latents are the sampler variable x = x0 + sigma * eps in model space (after process_latent_in), the
value ComfyUI hands the model's APPLY_MODEL wrappers, so a reference row can be replayed as is.
Between two stored sigmas the reference follows the DDIM step itself, which is linear in sigma:

    x(s) = x_{i+1} + (s - s_{i+1}) / (s_i - s_{i+1}) * (x_i - x_{i+1}),   s_{i+1} <= s <= s_i

Outside [0, s_0] the nearest end is used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

COND = 0
UNCOND = 1


@dataclass(frozen=True, eq=False)
class RowConds:
    """What one latent row of one cond kind was given by ComfyUI: cross-attention context, concat
    channels and every other batch-shaped model input (SDXL's ``y``), each with a batch of 1."""

    c_crossattn: Optional[torch.Tensor]
    c_concat: Optional[torch.Tensor] = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Held by reference: ``__deepcopy__`` returns self, so model clones never copy the latents."""

    latents: torch.Tensor  # (steps + 1, batch, C, H, W); latents[i] is x at sigmas[i]
    sigmas: torch.Tensor  # (steps + 1,), descending, sigmas[-1] = 0
    conds: dict  # COND / UNCOND -> RowConds of latent row 0
    model_family: str  # model config name, e.g. "SD15", "SDXL"
    cfg: float = 1.0
    scheduler: str = "normal"
    refine_iterations: int = 0
    # the solve of each step, in schedule order: evaluations[i] model evaluations (of the whole batch)
    # found latents[i] from latents[i + 1]; residuals[i, b] is row b's relative residual
    # |x_{i+1} + (s_i - s_{i+1}) eps(x_i, s_i) - x_i| / |x_n| (RMS; x_n = latents[-1], the inverted
    # latent; NaN where not measured: plain inversion); tolerance: the residual a step counted as solved
    # at; max_evaluations: the budget
    evaluations: tuple = ()
    residuals: Optional[torch.Tensor] = None  # (steps, batch) float64
    tolerance: float = 0.0
    max_evaluations: int = 0

    def __deepcopy__(self, memo):
        return self

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def latent_shape(self) -> tuple:
        """(C, H, W) of one row, in latent units."""
        return tuple(self.latents.shape[2:])

    def unsolved_steps(self) -> list:
        """Sampling-step indices i (sigmas[i] -> sigmas[i + 1]) some row of which ended above the
        tolerance; a plain inversion (no residual measured) has none."""
        if self.residuals is None:
            return []
        worst = torch.nan_to_num(self.residuals, nan=0.0).amax(dim=1)
        return [i for i in range(len(worst)) if float(worst[i]) > self.tolerance]

    def conds_for(self, kind: int) -> RowConds:
        """The row conditioning for a chunk kind; the cond's when the inversion ran no uncond."""
        return self.conds.get(kind) or self.conds[COND]

    def latent_at(self, sigma: float, row: int = 0) -> torch.Tensor:
        """x of ``row`` at ``sigma`` (C, H, W): a stored latent at a stored sigma, else the DDIM line."""
        sigmas = self.sigmas.double()
        exact = torch.isclose(sigmas, torch.tensor(sigma, dtype=torch.float64), rtol=1e-5, atol=1e-7)
        if exact.any():
            return self.latents[int(exact.nonzero()[0, 0]), row]
        if sigma >= float(sigmas[0]):
            return self.latents[0, row]
        if sigma <= float(sigmas[-1]):
            return self.latents[-1, row]
        i = int((sigmas > sigma).sum()) - 1  # sigmas[i] > sigma > sigmas[i + 1]
        hi, lo = float(sigmas[i]), float(sigmas[i + 1])
        w = (sigma - lo) / (hi - lo)
        return self.latents[i + 1, row] + w * (self.latents[i, row] - self.latents[i + 1, row])
