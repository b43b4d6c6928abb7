"""Weight curves, lists and windows read one scale on every family: ComfyUI's percent scale (issue 25).

The progress p of an evaluation is the inverse of ``model_sampling.percent_to_sigma`` at its step's sigma,
the scale of start/end percent, ControlNet and TimestepRange. Shifted flow schedules (Flux.1, SD3.5,
Z-Image, Qwen-Image, FLUX.2, Chroma, Krea 2) used to be read linearly in the model's timestep, which puts a
3-step Flux run at p = 0, 0.137, 0.388 instead of 0, 1/3, 2/3. Checked here on each family's own
model_sampling (the tiny test-bed models, with the sampling nodes its templates use, and shifts drawn by
hypothesis): a K-value list over K steps gives value k to step k (normal and simple schedulers, any K), a
step curve switches exactly where percent_to_sigma(switch_at) lies, and a window [start, end] and a
curve agree on every sigma.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.pack import pack_module
from tests.tolerance import OPS, SAMPLING, assert_close

FAMILIES = ("sd15", "flux", "sd35", "lumina", "qwen_image", "flux2", "chroma", "krea2")
FLOW = FAMILIES[1:]
SHIFTS = st.sampled_from([None, 1.0, 1.15, 2.0, 3.0, 3.5, 5.0, 8.0, 12.0])  # None: the model's own sampling
ONCE = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def models(comfy):
    comfy.load_nodes()
    from scripts.bench_families import family
    loaded = {}
    for name in FAMILIES:
        try:
            loaded[name] = family(name).model
        except SystemExit:  # Krea 2 on a ComfyUI without it
            pass
    return loaded


def model_sampling(models, name: str, shift):
    """The family model's model_sampling, or that of ModelSamplingSD3(shift) on it (a shifted flow)."""
    if name not in models:
        pytest.skip(f"{name}: not in this ComfyUI")
    model = models[name]
    if shift is not None and name in FLOW:
        import comfy_extras.nodes_model_advanced as advanced
        model = advanced.ModelSamplingSD3().patch(model, shift)[0]
    return model.get_model_object("model_sampling")


def position(ms, sigma, sample_sigmas):
    calls, curves = pack_module("attention.core.calls"), pack_module("attention.weight_curves")
    run = calls.RunInfo(model_sampling=ms, sigma=float(sigma), layer_keys=(), sample_sigmas=sample_sigmas)
    return curves.step_position(run)


@pytest.mark.parametrize("name", FAMILIES)
@given(steps=st.integers(2, 40), shift=SHIFTS, scheduler=st.sampled_from(["normal", "simple"]))
@ONCE
def test_a_list_of_k_values_gives_value_k_to_step_k(models, name, steps, shift, scheduler):
    import comfy.samplers
    curves = pack_module("attention.weight_curves")
    ms = model_sampling(models, name, shift)
    sigmas = comfy.samplers.calculate_sigmas(ms, scheduler, steps)
    curve = curves.WeightCurve("list", values=tuple(float(k) for k in range(steps)))
    got = [position(ms, sigmas[k], sigmas).weight(curve) for k in range(steps)]
    assert got == [float(k) for k in range(steps)]


@pytest.mark.parametrize("name", FAMILIES)
@given(steps=st.integers(2, 30), shift=SHIFTS, switch_at=st.floats(0.05, 0.95))
@ONCE
def test_a_step_curve_switches_where_percent_to_sigma_says(models, name, steps, shift, switch_at):
    import comfy.samplers
    curves = pack_module("attention.weight_curves")
    ms = model_sampling(models, name, shift)
    sigmas = comfy.samplers.calculate_sigmas(ms, "simple", steps)
    curve = curves.WeightCurve("step", start=1.0, end=0.0, switch_at=switch_at)
    boundary = float(ms.percent_to_sigma(switch_at))
    for sigma in sigmas[:-1].tolist():
        if abs(sigma - boundary) <= OPS * torch.finfo(torch.float32).eps * boundary:
            continue  # on the boundary itself: either side is right within the sigmas' float32 rounding
        assert position(ms, sigma, sigmas).weight(curve) == (1.0 if sigma > boundary else 0.0), (sigma, boundary)


@pytest.mark.parametrize("name", FAMILIES)
@given(shift=SHIFTS, start=st.floats(0.0, 1.0), length=st.floats(0.01, 1.0), p=st.floats(0.001, 0.999))
@ONCE
def test_a_window_and_the_curves_share_one_scale(models, name, shift, start, length, p):
    schedule = pack_module("attention.core.schedule")
    ms = model_sampling(models, name, shift)
    sigma = float(ms.percent_to_sigma(p))
    # the inverse of percent_to_sigma within the rounding of its float32 sigma tables (a flat run of
    # percents shares one float32 sigma: up to a table step's interpolation, within a few ulps of 1)
    assert_close(schedule.percent_at(ms, sigma), p, ulps=SAMPLING, dtype=torch.float32, magnitude_of=1.0,
                 what="percent_at(percent_to_sigma(p))")
    end = min(1.0, start + length)
    edge = SAMPLING * torch.finfo(torch.float32).eps
    if min(abs(p - start), abs(p - end)) > edge:  # away from the window's edges
        window = schedule.Window(start, end)
        assert window.contains(sigma, ms) == (start <= p <= end)


def test_flux_three_steps_sit_at_thirds_not_where_the_timestep_puts_them(models):
    """The issue's numbers: Flux.1's simple schedule at 3 steps is at percent 0, 1/3, 2/3 (the timestep
    line gave 0, 0.137, 0.388), so a linear curve 1 -> 0 gives 1, 2/3, 1/3 and "1, .5, 0" gives step k value k."""
    import comfy.samplers
    curves = pack_module("attention.weight_curves")
    ms = model_sampling(models, "flux", None)
    sigmas = comfy.samplers.calculate_sigmas(ms, "simple", 3)
    progress = [position(ms, s, sigmas).progress for s in sigmas[:-1]]
    table_step = 1 / 1000  # the simple scheduler picks entries of the model's 1000-step sigma table
    assert progress == pytest.approx([0.0, 1 / 3, 2 / 3], abs=table_step)
    linear = curves.WeightCurve("linear", start=1.0, end=0.0)
    weights = [position(ms, s, sigmas).weight(linear) for s in sigmas[:-1]]
    assert weights == pytest.approx([1, 2 / 3, 1 / 3], abs=table_step)


def test_a_run_that_starts_below_the_top_reads_the_list_by_progress(models):
    """denoise 0.5 (the last 3 steps of a 6-step schedule): no step index of a full run exists, so each
    step takes the list value whose bin holds its progress (0.5, 0.67, 0.83 of "0, 1, 2, 3, 4, 5")."""
    import comfy.samplers
    curves = pack_module("attention.weight_curves")
    ms = model_sampling(models, "flux", None)
    tail = comfy.samplers.calculate_sigmas(ms, "simple", 6)[-4:]
    curve = curves.WeightCurve("list", values=(0.0, 1.0, 2.0, 3.0, 4.0, 5.0))
    assert [position(ms, s, tail).weight(curve) for s in tail[:-1]] == [3.0, 4.0, 5.0]
    assert all(position(ms, s, tail).step is None for s in tail[:-1])
