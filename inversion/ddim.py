"""Deterministic DDIM inversion on the sampler variable, with fixed-point refinement.

ComfyUI samples eps- and v-prediction models on x = x0 + sigma * eps (the process_in-scaled latent),
and its deterministic DDIM ("ddim" = euler) steps down a descending schedule s_0 > ... > s_n = 0 as

    x_{i+1} = x_i + (s_{i+1} - s_i) * eps(x_i, s_i),      eps(x, s) = (x - D(x, s)) / s

with D the (CFG-combined) denoiser. Inverting that step for x_i given x_{i+1} is the implicit equation

    x_i = x_{i+1} + (s_i - s_{i+1}) * eps(x_i, s_i)

Plain DDIM inversion (Song et al.; Mokady et al.'s null-text code) takes one Euler step up the
ascending schedule with the noise read at the target level from the DDPM latent z = x / sqrt(1 + s^2)
of the current step: eps(x_{i+1} * sqrt((1 + s_i^2) / (1 + s_{i+1}^2)), s_i), i.e. the model sees the same
input as at the step below (no model call at sigma 0 is needed). ``refine_iterations`` then iterates the
implicit equation as a fixed point (ReNoise-style, Garibi et al. 2024): each iteration is one model call
and, where (s_i - s_{i+1}) * Lip(eps) < 1, shrinks the error of the step geometrically. Where it does not
(the residual stops shrinking) or stalls above the step's tolerance with budget left, ``fixed_point``
takes over with a safeguarded Anderson solve of the same equation, within ``max_evaluations`` calls;
wherever the plain iteration contracts the result is the plain iteration's, bit for bit.

Flow-matching models (Flux.1, SD3.x: ComfyUI's CONST sampling) sample x = (1 - s) x0 + s eps with
s in [0, 1], and the model sees x itself. ComfyUI's Euler step is the same line,
x_{i+1} = x_i + (s_{i+1} - s_i) (x_i - D(x_i, s_i)) / s_i, so the same implicit equation inverts it;
only the first guess differs: ``flow_matching=True`` starts from x_high = x_low, the model input of
the step below.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from . import fixed_point

# The round-trip error (RMS relative to the input) a solved inversion aims at: the bar, far
# below what a user sees in a decoded picture, yet reachable in float32 (eps 1.2e-7) at any step count.
ROUND_TRIP_TARGET = 0.01

# denoise(x, sigma) -> D(x, sigma), the model's x0 prediction at noise level sigma (a 0-d tensor)
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def noise_estimate(denoise: Denoiser, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """eps(x, s) = (x - D(x, s)) / s, the slope of the DDIM path in sigma."""
    return (x - denoise(x, sigma)) / sigma


def initial_guess(x_low: torch.Tensor, sigma_low: torch.Tensor, sigma_high: torch.Tensor,
                  flow_matching: bool = False) -> torch.Tensor:
    """The first guess for x_high: the model sees the step below's input again."""
    if flow_matching:
        return x_low  # the model input is x itself
    return x_low * ((1 + sigma_high ** 2) / (1 + sigma_low ** 2)) ** 0.5  # the same DDPM latent z_low


def solve_step(denoise: Denoiser, x_low: torch.Tensor, sigma_low: torch.Tensor, sigma_high: torch.Tensor,
               refine_iterations: int = 0, flow_matching: bool = False, max_evaluations: int = 0,
               tolerance: float = 0.0, reference: Optional[torch.Tensor] = None) -> tuple:
    """x at sigma_high whose DDIM step down to sigma_low lands on x_low, and the solve's StepReport.

    1 + refine_iterations model calls of plain fixed-point iteration, bit for bit the plain iteration
    where it contracts; where it does not, the safeguarded Anderson solve of fixed_point.solve, within
    max(1 + refine_iterations, max_evaluations) calls."""
    def G(x_high):
        return x_low + (sigma_high - sigma_low) * noise_estimate(denoise, x_high, sigma_high)
    return fixed_point.solve(G, x_low, initial_guess(x_low, sigma_low, sigma_high, flow_matching),
                             refine_iterations, max_evaluations, tolerance, reference)


def inversion_step(denoise: Denoiser, x_low: torch.Tensor, sigma_low: torch.Tensor, sigma_high: torch.Tensor,
                   refine_iterations: int = 0, flow_matching: bool = False, max_evaluations: int = 0,
                   tolerance: float = 0.0) -> torch.Tensor:
    """x at sigma_high whose DDIM step down to sigma_low lands on x_low (solve_step without its report)."""
    return solve_step(denoise, x_low, sigma_low, sigma_high, refine_iterations, flow_matching, max_evaluations,
                      tolerance)[0]


def step_tolerance(steps: int) -> float:
    """Residual, relative to the inverted latent x0, at which a step is solved: ROUND_TRIP_TARGET / steps,
    so that the steps' own round-trip errors (each step's residual is exactly how far its Euler step down
    misses) add up to at most the target where later steps do not amplify them. Relative to x0, not to
    the step's own x (~ sigma times larger at high sigma on eps / v models): that is what the round trip
    is measured against, and the sampler carries an absolute error at high sigma down to x0 about as is
    (tiny SD1.5: x3 from sigma 14.6)."""
    return ROUND_TRIP_TARGET / max(int(steps), 1)


def invert(denoise: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, refine_iterations: int = 0,
           on_step: Optional[Callable[[int, torch.Tensor], None]] = None, flow_matching: bool = False,
           max_evaluations: int = 0, tolerance: Optional[float] = None, reports: Optional[list] = None) -> list:
    """Invert ``x0`` (at sigmas[-1] = 0) up the descending schedule ``sigmas``.

    Returns the trajectory in the schedule's order: ``states[i]`` is x at ``sigmas[i]``, so states[0]
    is x_T and states[-1] is x0. ``on_step(k, x)`` is called after the k-th step up (k = 1..n).
    ``reports``, when given, gets each step's fixed_point.StepReport in the order the steps ran (up
    the schedule). ``tolerance``: the relative residual a step stops at (default step_tolerance).
    """
    states = [x0]
    x = x0
    steps = len(sigmas) - 1
    tolerance = step_tolerance(steps) if tolerance is None else tolerance
    for k in range(1, steps + 1):
        sigma_low, sigma_high = sigmas[steps - k + 1], sigmas[steps - k]
        x, report = solve_step(denoise, x, sigma_low, sigma_high, refine_iterations, flow_matching,
                               max_evaluations, tolerance, reference=x0)
        states.append(x)
        if reports is not None:
            reports.append(report)
        if on_step is not None:
            on_step(k, x)
    states.reverse()
    return states


def ddim_step(denoise: Denoiser, x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM (= Euler) sampling step from sigma down to sigma_next."""
    return x + (sigma_next - sigma) * noise_estimate(denoise, x, sigma)


def regenerate(denoise: Denoiser, x_T: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM sampling over the descending schedule ``sigmas`` from x at sigmas[0]."""
    x = x_T
    for i in range(len(sigmas) - 1):
        x = ddim_step(denoise, x, sigmas[i], sigmas[i + 1])
    return x


def relative_error(x: torch.Tensor, target: torch.Tensor) -> float:
    """RMS(x - target) / RMS(target)."""
    return float((x - target).float().pow(2).mean().sqrt() / target.float().pow(2).mean().sqrt())
