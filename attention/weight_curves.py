"""Per-step weight curves c(p) of regional attention, p = sampling progress in [0, 1].

    constant  c(p) = w0
    linear    c(p) = w0 + (w1 - w0) p
    cosine    c(p) = w1 + (w0 - w1) (1 + cos(pi p)) / 2
    step      c(p) = w0 for p < p_s, w1 from p_s on
    list      c = v_k at step k of a run of K steps from the top of its schedule; else
              c(p) = v_k with k = min(floor(p K + 0.01), K - 1), for K values v_0..v_{K-1}

Progress is ComfyUI's percent scale (the one of start/end percent and ControlNet: the inverse of
``model_sampling.percent_to_sigma``, see ``core.schedule.percent_at``) taken at the sigma of the sampling
step an evaluation belongs to: the run's ``sample_sigmas`` give the step, so samplers that evaluate the
model between steps (heun, dpm_2) use one weight per step, and denoise < 1 or split sigmas give the
weight of the same noise level as a full run. Without ``sample_sigmas`` the evaluation's own sigma is
used. A list of as many values as the run has steps, in a run that starts at the top of its schedule
(progress 0: full denoise, any scheduler or custom sigmas), gives value k to step k; otherwise value k
covers progress [k/K, (k+1)/K) (the 1% shift puts a step that lands just below a bin edge after the
sigma round trip into the bin it starts).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .core.errors import AtelierError

CURVE_KINDS = ("constant", "linear", "cosine", "step", "list")
STEP_TOLERANCE = 1e-4  # relative; sigmas a sampler passes back are float copies of sample_sigmas
LIST_EDGE_SHIFT = 0.01  # fraction of a list bin


@dataclass(frozen=True)
class WeightCurve:
    kind: str = "constant"
    start: float = 1.0  # w0
    end: float = 1.0  # w1
    switch_at: float = 0.5  # p_s of the step curve
    values: tuple = ()  # v_0..v_{K-1} of the list curve

    def at(self, p: float, step: int | None = None, steps: int | None = None) -> float:
        """c at progress ``p``; a list curve of ``steps`` values gives step ``step`` its value where given
        (a run from the top of its schedule, see :func:`step_position`)."""
        if self.kind == "list" and step is not None and steps == len(self.values):
            return self.values[step]
        p = min(max(p, 0.0), 1.0)
        if self.kind == "constant":
            return self.start
        if self.kind == "linear":
            return self.start + (self.end - self.start) * p
        if self.kind == "cosine":
            return self.end + (self.start - self.end) * (1.0 + math.cos(math.pi * p)) / 2.0
        if self.kind == "step":
            return self.start if p < self.switch_at else self.end
        # Steps of the normal/simple schedulers sit on or just below a bin edge k / K after the sigma ->
        # timestep round trip; shifting the edges by 1% of a bin puts them in the bin they start.
        return self.values[min(int(p * len(self.values) + LIST_EDGE_SHIFT), len(self.values) - 1)]

    @property
    def always_zero(self) -> bool:
        if self.kind == "list":
            return all(v == 0.0 for v in self.values)
        if self.kind == "constant":
            return self.start == 0.0
        return self.start == 0.0 and self.end == 0.0


def parse_values(text, node: str, input_name: str) -> tuple:
    """'1, 0.8, 0.5' (or a list of numbers) -> (1.0, 0.8, 0.5)."""
    items = text if isinstance(text, (list, tuple)) else str(text or "").replace(";", ",").split(",")
    values = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        try:
            value = float(item)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise AtelierError(node, input_name, f"'{str(item).strip()}' is not a number.",
                               "write the weights as numbers separated by commas, e.g. '1, 0.8, 0.5, 0'.")
        values.append(value)
    return tuple(values)


def make_curve(node: str, kind: str, weight: float, end_weight: float = None, switch_at: float = 0.5,
               values=None, input_name: str = "curve") -> WeightCurve:
    if kind not in CURVE_KINDS:
        raise AtelierError(node, input_name, f"'{kind}' is not a weight curve.",
                           f"use one of: {', '.join(CURVE_KINDS)}.")
    for name, number in (("weight", weight), ("end_weight", end_weight), ("switch_at", switch_at)):
        if number is not None and not (isinstance(number, (int, float)) and math.isfinite(number)):
            raise AtelierError(node, name, f"{number!r} is not a finite number.", "give a number.")
    end = weight if end_weight is None else end_weight
    parsed = ()
    if kind == "list":
        parsed = parse_values(values, node, "weights")
        if not parsed:
            raise AtelierError(node, "weights", "the 'list' curve has no weights.",
                               "write one weight per step, e.g. '1, 1, 0.5, 0', or pick another curve.")
    return WeightCurve(kind, float(weight), float(end), float(switch_at), parsed)


@dataclass(frozen=True)
class StepPosition:
    """Where the evaluation in progress is in its sampling run."""

    progress: float  # p on ComfyUI's percent scale at the sigma of the step
    step: int | None = None  # the step's index, in a run that starts at the top of its schedule
    steps: int | None = None  # how many steps that run has

    def weight(self, curve: WeightCurve) -> float:
        return curve.at(self.progress, self.step, self.steps)


def step_of(sigma: float, sample_sigmas) -> tuple:
    """(index, sigma) of the sampling step that evaluates the model at ``sigma`` (the step started at the
    smallest step sigma at or above it); (None, sigma) without a schedule."""
    if sample_sigmas is None or len(sample_sigmas) < 2:
        return None, sigma
    starts = [float(s) for s in sample_sigmas[:-1]]
    at_or_above = [(s, i) for i, s in enumerate(starts) if s >= sigma * (1.0 - STEP_TOLERANCE)]
    if not at_or_above:
        return None, sigma
    start, index = min(at_or_above)
    return index, start


def step_position(run) -> StepPosition:
    """The :class:`StepPosition` of the evaluation described by ``run`` (a RunInfo), once per evaluation."""
    def compute():
        index, sigma = step_of(run.sigma, run.sample_sigmas)
        progress = dataclasses.replace(run, sigma=sigma).progress()
        if index is None or dataclasses.replace(run, sigma=float(run.sample_sigmas[0])).progress() != 0.0:
            return StepPosition(progress)  # no schedule, or a run that starts below the top (denoise < 1)
        return StepPosition(progress, index, len(run.sample_sigmas) - 1)
    return run.memo("step_position", compute)


def step_progress(run) -> float:
    """Progress p of the step the evaluation described by ``run`` (a RunInfo) belongs to."""
    return step_position(run).progress
