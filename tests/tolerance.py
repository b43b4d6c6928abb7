"""How every tier of the tests compares numbers: bit for bit, or within a rounding tolerance derived from the
dtype and the magnitudes compared, never a bare number that held on one machine (issue 26). Pure torch.

A numerical check is one of three kinds:

- **Exact**: the same operations on the same inputs (a row passed through, a control at weight 0, the same
  call recomputed, a copy): ``assert_exact``, bit for bit.
- **Equal up to rounding**: the same maths computed another way (a row alone vs in a batch, another call
  shape, a formula written out in float64, folded vs masked): ``assert_close(actual, expected, ulps=BUDGET)``
  allows ``|actual - expected| <= BUDGET * eps(dtype) * max|expected|`` elementwise, with ``eps`` the float
  spacing at 1 (``torch.finfo(dtype).eps``) of the precision the computation ran in (expected's dtype unless
  given: pass ``dtype=torch.float32`` when a float32 result is checked against a float64 formula).
- **A claim about an effect or a physical quantity**: "the control acts" (``assert_changed``, at least
  ``EFFECT`` of the magnitude), a round-trip target (``ROUND_TRIP``), an epsilon's known effect. Each is a
  named constant saying why, or a bound derived in the test from the quantities involved.

Why ulps of the *largest* magnitude: results differ between CPU kernels (AVX-512 with or without AMX, AVX2,
no SIMD, oneDNN capped at AVX2: scripts/cpu_kernels.sh runs the suite under each) and between call shapes
because sums are accumulated in another order (8 or 16 SIMD lanes, another blocking). A sum's rounding
error scales with its partial sums, i.e. with the largest values in play, not with each element's own size:
an output near 0 carries the rounding of its large neighbours. So one tolerance per comparison, a number of
ulps of ``max|expected|`` (or of ``magnitude_of``, where the compared values are statistics of larger ones:
a mean is rounded at the scale of what it averages). Zero expected values leave no slack: exact.

The budgets are sized from the longest reductions involved and the number of chained operations, with a
factor of ten or more over the largest difference scripts/cpu_kernels.sh has seen under any kernel setting
(set ``ATELIER_TOLERANCE_LOG=path`` to log every comparison: setting, test, what, kind, budget, observed
ulps, magnitude, dtype), and far below the effects the tests detect: ``EFFECT`` is at least ``EFFECT_MARGIN``
times the largest float32 budget, so rounding alone can never pass for an effect.
"""
from __future__ import annotations

import os

import torch

OPS = 32
"""A few elementwise operations or one short reduction computed in another order or by another formula:
channel or group statistics (mean, variance, AdaIN, ArtBN, a norm's), a blend, a schedule value, a sum of two
projections. Each elementwise operation rounds by at most half an ulp; a reduction of n terms accumulated
in another order (another SIMD width, pairwise or sequential) differs by about sqrt(n) ulps of its partial
sums, and the statistics here reduce at most a few hundred terms: ~16, twice that. (The largest seen: 3.)"""

ONE_CALL = 64
"""One attention or linear call computed as another call: a row alone vs in the batch, a block of queries, a
call with more keys (two copies of the reference's, a carried prompt's stream), a fused kernel vs softmax
written out in float64, a folded vs a masked score shift. Scores are dot products over the head width
(<= 128 here, ~11 ulps apart between blockings), the softmax turns a score difference into a relative weight
difference scaled by the score size (up to ~10), and the output sums again over <= a few hundred keys:
a few tens of ulps of the output's magnitude, 64. (The largest seen: 6.)"""

LAYERS = 256
"""A few layers of a tiny random-weight model computed as another call: a text adapter's refiner blocks over
a longer sequence, a resampler, a multi-step recursion in float64. Each layer adds its own rounding (up to
ONE_CALL) to what it passes on with its gain (about 1 for these normalised blocks): four ONE_CALLs, 256.
(A Xeon with AVX-512 and AMX put Krea 2's text adapter 4.4 ulps off, 5.8 with AVX2 kernels.)"""

SAMPLING = 512
"""A whole few-step sampling run (2-3 Euler steps through a tiny model, cfg up to 5) computed as another run:
the reference row alone or beside the shared call vs in the batch, streams carried through no layer, a
replayed cache, split vs joined cond/uncond calls. Each model evaluation's rounding (LAYERS) becomes part
of the next step's input, moved by a step size below 1; cfg multiplies the cond-uncond difference by up to
5 of which the steps keep about half: two LAYERS, 512. (The largest seen: 24 ulps, SD1.5 at cfg 5.)"""

EFFECT_MARGIN = 10
"""How many times the largest float32 rounding budget (SAMPLING) an effect threshold must be, so that a test
proving that something acts cannot pass on rounding alone."""

EFFECT = 1e-3
"""The claim "it acts": a control, a LoRA, a seed changes the result by more than this fraction of the
baseline's largest magnitude, 16x float32 sampling rounding (SAMPLING * 1.2e-7 = 6e-5). The changes the
tests detect are 0.2 % of it and up (the smallest: Krea 2's attn1 hooks alone and StyleAligned's rows on the
tiny SD1.5, whose latents reach 400)."""

ROUND_TRIP = 0.05
"""The refined flow inversion regenerates its input (ComfyUI's Euler over the inversion's sigmas) within 5 %
relative RMS on the tiny random-weight DiTs at 8-12 steps: a target of the method (its step size against
the random model's Lipschitz constant), some 1e5 times float32 rounding; not a rounding tolerance."""

REFINE_GAIN = 0.5
"""Fixed-point refinement at least halves the plain inversion's round-trip error (relative RMS) on the tiny
DiTs: a target of the method."""

assert EFFECT >= EFFECT_MARGIN * SAMPLING * torch.finfo(torch.float32).eps, "an effect must dwarf rounding"

_LOG = os.environ.get("ATELIER_TOLERANCE_LOG")


def _tensor(x) -> torch.Tensor:
    return x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float64)


def magnitude(x) -> float:
    """The largest finite |value| of ``x`` (0 for none)."""
    x = _tensor(x).double()
    finite = x[torch.isfinite(x)]
    return float(finite.abs().max()) if finite.numel() else 0.0


def rounding_tolerance(expected, *, ulps: float, dtype: torch.dtype | None = None, magnitude_of=None) -> float:
    """``ulps * eps(dtype) * max|expected|``: the absolute tolerance of :func:`assert_close`.

    ``dtype``: the precision the compared values were computed in (default: expected's); ``magnitude_of``:
    the values whose rounding is compared when larger than ``expected`` itself (the inputs of a mean)."""
    expected = _tensor(expected)
    scale = magnitude(expected if magnitude_of is None else magnitude_of)
    return ulps * torch.finfo(dtype or expected.dtype).eps * scale


def _log(kind: str, what: str, budget: float, observed: float, mag: float, dtype) -> None:
    if _LOG:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
        with open(_LOG, "a") as log:
            log.write(f"{os.environ.get('ATELIER_KERNELS', 'native')}\t{test}\t{what}\t{kind}\t{budget}\t"
                      f"{observed:.4g}\t{mag:.4g}\t{dtype}\n")


def _where(what: str) -> str:
    return f"{what}: " if what else ""


def assert_exact(actual, expected, what: str = "") -> None:
    """Bit for bit: the same shape, dtype and values (``torch.equal``). For the same operations on the same
    inputs; the message gives the largest difference and how many elements differ."""
    actual, expected = _tensor(actual), _tensor(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (
        f"{_where(what)}{tuple(actual.shape)} {actual.dtype} vs expected {tuple(expected.shape)} {expected.dtype}")
    if torch.equal(actual, expected):
        return
    differ = ~((actual == expected) | (torch.isnan(actual) & torch.isnan(expected)))
    diff = (actual.double() - expected.double()).abs()
    largest = float(diff[torch.isfinite(diff)].max()) if torch.isfinite(diff).any() else float("nan")
    unit = torch.finfo(expected.dtype).eps * magnitude(expected) if expected.is_floating_point() else 0.0
    ulps = f" ({largest / unit:.3g} ulps of max|expected| {magnitude(expected):.4g})" if unit else ""
    raise AssertionError(f"{_where(what)}not bit for bit: max |difference| {largest:.3g}{ulps}; "
                         f"{int(differ.sum())} of {differ.numel()} elements differ "
                         f"(shape {tuple(expected.shape)}, {expected.dtype})")


def assert_close(actual, expected, *, ulps: float, dtype: torch.dtype | None = None, magnitude_of=None,
                 what: str = "") -> None:
    """Equal up to rounding: ``|actual - expected| <= ulps * eps(dtype) * max|expected|`` elementwise
    (:func:`rounding_tolerance`), with ``ulps`` one of the budgets above. Scalars are compared as float64
    tensors; non-finite values must match."""
    actual, expected = _tensor(actual), _tensor(expected)
    assert actual.shape == expected.shape, f"{_where(what)}shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    dtype = dtype or expected.dtype
    mag = magnitude(expected if magnitude_of is None else magnitude_of)
    unit = torch.finfo(dtype).eps * mag
    a, e = actual.double(), expected.double()
    diff = (a - e).abs()
    ok = (diff <= ulps * unit) | (a == e) | (torch.isnan(a) & torch.isnan(e))
    finite = diff[torch.isfinite(diff)]
    largest = float(finite.max()) if finite.numel() else 0.0
    seen = largest / unit if unit else (0.0 if largest == 0.0 else float("inf"))
    _log("close", what, ulps, seen, mag, dtype)
    if not bool(ok.all()):
        raise AssertionError(
            f"{_where(what)}differs beyond rounding: max |difference| {largest:.3g} = {seen:.3g} ulps of "
            f"{mag:.4g} ({dtype}), allowed {ulps} ulps = {ulps * unit:.3g}; {int((~ok).sum())} of {ok.numel()} "
            f"elements beyond (shape {tuple(expected.shape)})")


def relative_change(actual, baseline) -> float:
    """max|actual - baseline| / max|baseline| (inf for an all-zero baseline that changed)."""
    diff = magnitude(_tensor(actual).double() - _tensor(baseline).double())
    mag = magnitude(baseline)
    return diff / mag if mag else (0.0 if diff == 0.0 else float("inf"))


def assert_changed(actual, baseline, *, by: float = EFFECT, what: str = "") -> None:
    """The claim "it acts": ``max|actual - baseline| > by * max|baseline|``. ``by`` (default EFFECT) must
    stay at least EFFECT_MARGIN times float32 sampling rounding, so rounding can never pass for an effect."""
    assert by >= EFFECT_MARGIN * SAMPLING * torch.finfo(torch.float32).eps, f"{by} is within rounding"
    change = relative_change(actual, baseline)
    _log("changed", what, by, change, magnitude(baseline), _tensor(baseline).dtype)
    assert change > by, (f"{_where(what)}did not change: max |difference| is {change:.3g} of max|baseline| "
                         f"{magnitude(baseline):.4g}, at most {by}")


def rel_rms(actual, expected) -> float:
    """RMS(actual - expected) / RMS(expected), in float64: a round trip's relative error."""
    a, e = _tensor(actual).double(), _tensor(expected).double()
    return float((a - e).pow(2).mean().sqrt() / e.pow(2).mean().sqrt())
