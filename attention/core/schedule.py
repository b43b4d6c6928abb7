"""When a control acts, and how far sampling has come: ComfyUI's percent scale.

Percent is the scale of start/end percent, ControlNet and TimestepRange: ``model_sampling.percent_to_sigma``
maps it to a sigma, read at run time from the model's own model_sampling (so a ModelSampling* node placed
anywhere in the graph is honoured). :func:`percent_at` is its inverse, the progress p at a sigma, which the
weight curves read; :class:`Window` is closed: active when sigma(end) <= sigma <= sigma(start). Both
therefore agree on every family, shifted flow schedules included.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SAME_SIGMA = 1e-5  # relative: a sigma percent_to_sigma gives back from a percent, up to its float32 round trip
BISECTIONS = 64  # halvings of [0, 1]: past double precision


def percent_at(model_sampling, sigma: float) -> float:
    """p in [0, 1] with ``model_sampling.percent_to_sigma(p) = sigma``: the inverse of ComfyUI's percent map
    (it falls from p = 0 to p = 1). Where progress linear in the model's timestep between sigma_max and
    sigma_min is that inverse at this sigma it is taken as it is (a discrete SD model's own table sigmas,
    unshifted flow); else the percent is solved for by bisection (shifted flow schedules: Flux.1, SD3.x,
    Z-Image, Qwen-Image, FLUX.2, Chroma, Krea 2; sigmas between a discrete model's table entries, whose
    timestep ComfyUI rounds to the nearest entry)."""
    ms, sigma = model_sampling, float(sigma)
    if sigma <= 0.0:
        return 1.0
    linear = _timestep_linear(ms, sigma)
    if linear == 0.0 or _same(float(ms.percent_to_sigma(linear)), sigma):
        return linear
    # the largest p whose sigma is still >= sigma: then p >= s exactly when sigma <= percent_to_sigma(s),
    # the rule of ComfyUI's windows, also where float32 sigma tables give many percents one sigma
    low, high = 0.0, 1.0  # percent_to_sigma(low) >= sigma > percent_to_sigma(high)
    for _ in range(BISECTIONS):
        middle = (low + high) / 2.0
        if float(ms.percent_to_sigma(middle)) >= sigma:
            low = middle
        else:
            high = middle
    return low


def _timestep_linear(ms, sigma: float) -> float:
    """Progress linear in the model's timestep between sigma_max (0) and sigma_min (1), clamped."""
    t = float(ms.timestep(torch.tensor(sigma)))
    t_max, t_min = float(ms.timestep(ms.sigma_max)), float(ms.timestep(ms.sigma_min))
    if t_max <= t_min:
        return 0.0
    return min(max((t_max - t) / (t_max - t_min), 0.0), 1.0)


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= SAME_SIGMA * max(abs(a), abs(b))


@dataclass(frozen=True)
class Window:
    start_percent: float = 0.0
    end_percent: float = 1.0

    @property
    def always(self) -> bool:
        return self.start_percent <= 0.0 and self.end_percent >= 1.0

    def contains(self, sigma: float, model_sampling) -> bool:
        if self.always:
            return True
        if self.start_percent >= self.end_percent:
            return False
        hi = model_sampling.percent_to_sigma(self.start_percent)
        lo = model_sampling.percent_to_sigma(self.end_percent)
        return lo <= sigma <= hi
