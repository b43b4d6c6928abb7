"""AtelierInvert on a flow-matching model (tiny seeded Flux.1, x = (1 - s) x0 + s eps) inside a real
ComfyUI: the inverted noise regenerates the latent through ComfyUI's own Euler sampler, fixed-point
refinement shrinks the round-trip error, and reference-image StyleAligned runs on it."""
import pytest
import torch

from tests.comfy.dit_helpers import conditioning, sample, tiny_flux
from tests.tolerance import (OPS, REFINE_GAIN, ROUND_TRIP, SAMPLING, assert_changed, assert_close, assert_exact,
                             rel_rms)

INVERT, STYLE = "AtelierInvert", "AtelierStyleAligned"
STEPS = 12  # the fixed point contracts when (s_i - s_{i+1}) Lip(eps) < 1: small steps


@pytest.fixture(scope="module")
def flux(comfy):
    model = tiny_flux(comfy)
    return model, conditioning(model, seed=1), conditioning(model, seed=2)


@pytest.fixture(scope="module")
def x0():
    return torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))


def invert(comfy, model, latent, pos, refine):
    return comfy.node_class(INVERT).execute(model, {"samples": latent}, STEPS, 1.0, "simple", refine,
                                            positive=pos, negative=pos).args


def regenerate(model, x_T, sigmas, pos):
    """ComfyUI's deterministic Euler sampler from x_T (latent units) over the inversion's sigmas."""
    from comfy import sample as comfy_sample, samplers
    noise = model.model.process_latent_in(x_T)  # a flow model starts at x = eps (s = 1)
    return comfy_sample.sample_custom(model, noise, 1.0, samplers.ksampler("euler"), sigmas, pos, pos,
                                      torch.zeros_like(x_T), disable_pbar=True, seed=0)


@pytest.fixture(scope="module")
def round_trips(comfy, flux, x0):
    model, pos, _ = flux
    errors = {}
    for refine in (0, 4):
        x_T, trajectory, sigmas = invert(comfy, model, x0, pos, refine)
        assert torch.isfinite(x_T["samples"]).all()
        errors[refine] = rel_rms(regenerate(model, x_T["samples"], sigmas, pos), x0)
    return errors


def test_flow_inversion_regenerates_the_latent(round_trips):
    assert round_trips[4] < ROUND_TRIP, round_trips


def test_fixed_point_refinement_shrinks_the_round_trip_error(round_trips):
    assert round_trips[4] < REFINE_GAIN * round_trips[0], round_trips


def test_trajectory_follows_the_flow_line_at_the_ends(comfy, flux, x0):
    model, pos, _ = flux
    _, trajectory, sigmas = invert(comfy, model, x0, pos, 0)
    assert trajectory.model_family == "Flux"
    assert_close(float(sigmas[0]), 1.0, ulps=OPS, dtype=sigmas.dtype, what="the first sigma")
    # the sampler starts from process_latent_in(x0) scaled by exactly 1 plus 0 * noise: the same bits
    assert_exact(trajectory.latents[-1], model.model.process_latent_in(x0), "the trajectory's end")


def style(comfy, model, **settings):
    defaults = dict(share_attention=True, adain_queries=True, adain_keys=True, adain_values=False,
                    share_group_norm=False, shared_score_scale=1.0, shared_score_shift=0.0, layers="all",
                    unshared_fraction=0.0, start_percent=0.0, end_percent=1.0)
    return comfy.node_class(STYLE).execute(model, **dict(defaults, **settings)).args[0]


def test_reference_image_mode_on_flux(comfy, flux, x0):
    model, pos, neg = flux
    _, trajectory, _ = invert(comfy, model, x0, pos, 2)
    plain = sample(comfy, model, pos, neg, batch=2, size=64)
    styled = sample(comfy, style(comfy, model, reference=trajectory), pos, neg, batch=2, size=64)
    assert styled.shape == plain.shape and torch.isfinite(styled).all()
    assert_changed(styled, plain, what="reference-image mode")
    # with sharing off, the inserted reference row changes nothing for the generated rows
    neutral = style(comfy, model, share_attention=False, adain_queries=False, adain_keys=False,
                    reference=trajectory)
    assert_close(sample(comfy, neutral, pos, neg, batch=2, size=64), plain, ulps=SAMPLING,
                 what="neutral reference-image mode")


def test_the_trajectory_records_each_steps_evaluations_and_residual(comfy, flux, x0):
    """Default budget (max_evaluations 0): 1 + refine_iterations model calls per step at most."""
    model, pos, _ = flux
    _, trajectory, _ = invert(comfy, model, x0, pos, 2)
    assert len(trajectory.evaluations) == STEPS and all(1 <= n <= 3 for n in trajectory.evaluations)
    assert trajectory.residuals.shape == (STEPS, 1) and bool((trajectory.residuals >= 0).all())
    assert trajectory.max_evaluations == 3 and trajectory.tolerance == pytest.approx(0.01 / STEPS)
    _, plain, _ = invert(comfy, model, x0, pos, 0)
    assert plain.evaluations == (1,) * STEPS and bool(plain.residuals.isnan().all()) and not plain.unsolved_steps()


def test_steps_that_do_not_converge_are_named_in_a_warning_with_the_fix(comfy, flux, x0, caplog):
    import logging
    model, pos, _ = flux
    with caplog.at_level(logging.WARNING, logger="attention_atelier"):
        _, trajectory, sigmas = comfy.node_class(INVERT).execute(model, {"samples": x0}, 3, 1.0, "simple", 1,
                                                                 positive=pos, negative=pos).args
    unsolved = trajectory.unsolved_steps()
    assert unsolved, "one refinement on 3 big steps leaves steps above 0.01 / 3"
    text = " ".join(r.getMessage() for r in caplog.records if r.name == "attention_atelier")
    assert f"AtelierInvert: {len(unsolved)} of 3 steps did not converge within 2 model evaluations" in text
    first = unsolved[0]
    assert f"{first + 1} ({float(sigmas[first]):.3g} -> {float(sigmas[first + 1]):.3g}" in text
    assert "raise max_evaluations" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="attention_atelier"):
        _, solved, _ = comfy.node_class(INVERT).execute(model, {"samples": x0}, 3, 1.0, "simple", 1, positive=pos,
                                                        negative=pos, max_evaluations=40).args
    assert not solved.unsolved_steps() and not [r for r in caplog.records if r.name == "attention_atelier"]
    assert max(solved.evaluations) <= 40
