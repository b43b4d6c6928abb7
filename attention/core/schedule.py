"""When a control acts: a window over sampling progress, like ControlNet's start/end percent.

Percent is converted to sigma with the model's own model_sampling at run time (so a ModelSampling*
node placed anywhere in the graph is honoured), and the window is closed: active when
sigma(end) <= sigma <= sigma(start).
"""
from __future__ import annotations

from dataclasses import dataclass


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
