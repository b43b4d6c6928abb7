"""AtelierInvert in a real ComfyUI: regenerating from x_T with core KSamplerAdvanced (noise off, ddim,
same steps and scheduler) or SamplerCustom with the returned sigmas gives back the input latent, and
fixed-point refinement makes that round trip much more exact, for eps and v-prediction models
(flow-matching models: tests/comfy/test_dit_inversion.py). The refinement is the same code for every UNet;
the tiny SDXL's inversion runs in test_reference_mode.py (its conditioning) and in the e2e SDXL template (a
12-step, K=5 SDXL round trip here took ~100 s of the suite's time, 2026-12-03).

Test bed: random-weight tiny checkpoints, 64 px (latent 8x8), image-like latents of model-space std 1,
cfg 1. Errors are RMS(regenerated - input) / RMS(input); model calls per inversion = steps * (1 + K).
"""
import pytest

from tests.harness import SD15
from tests.comfy.inversion_helpers import image_latent, invert, regenerate, relative_error
from tests.tolerance import EFFECT, OPS, assert_close, assert_exact

REFINEMENT_GAIN = 10  # the claim: K refinement iterations cut the plain round trip's error at least tenfold
CASES = {  # name: (checkpoint, prediction, steps, refine_iterations K)
    "sd15-eps": (SD15, "eps", 10, 5),
    "sd15-v": (SD15, "v_prediction", 10, 5),
}


def with_prediction(model, prediction):
    if prediction == "eps":
        return model
    import comfy_extras.nodes_model_advanced as advanced
    return advanced.ModelSamplingDiscrete().patch(model, prediction, False)[0]


@pytest.mark.parametrize("case", list(CASES))
def test_refinement_cuts_the_round_trip_error_at_least_tenfold(comfy, case):
    name, prediction, steps, refine = CASES[case]
    checkpoint = comfy.checkpoint(name)
    model = with_prediction(checkpoint.model, prediction)
    latent = image_latent(checkpoint)
    positive = comfy.encode(checkpoint.clip, "a landscape at dusk")
    negative = comfy.encode(checkpoint.clip, "")
    errors = {}
    for k in (0, refine):
        noised, trajectory, sigmas = invert(comfy, model, latent, steps, refine=k, positive=positive)
        back = regenerate(comfy, model, noised, steps, 1.0, positive, negative)
        errors[k] = relative_error(back, latent)
    print(f"\n{case}: {name}, 64 px, latent std 1 in model space, {steps} steps, cfg 1: relative error "
          f"K=0 {errors[0]:.4g} ({steps} calls), K={refine} {errors[refine]:.4g} ({steps * (1 + refine)} calls), "
          f"x{errors[0] / errors[refine]:.1f}")
    assert errors[0] > EFFECT, "the plain inversion should not already be exact on random weights"
    assert errors[refine] * REFINEMENT_GAIN <= errors[0], errors


def test_trajectory_holds_every_step_at_the_schedule_sigmas(comfy):
    from comfy.samplers import calculate_sigmas
    checkpoint = comfy.sd15
    latent = image_latent(checkpoint)
    steps = 4
    noised, trajectory, sigmas = invert(comfy, checkpoint.model, latent, steps, refine=1, scheduler="karras")
    expected = calculate_sigmas(checkpoint.model.get_model_object("model_sampling"), "karras", steps)
    assert_exact(sigmas, expected.cpu(), "the inversion's sigmas vs core's schedule")
    assert trajectory.latents.shape == (steps + 1, 1, 4, 8, 8)
    assert_exact(trajectory.sigmas, sigmas, "the trajectory's sigmas")
    assert float(sigmas[-1]) == 0.0 and bool((sigmas[:-1] > sigmas[1:]).all())
    latent_format = checkpoint.model.model.latent_format
    # the sampler starts from process_in(latent) plus 0 * noise, and x_T leaves through process_out: same bits
    assert_exact(trajectory.latents[-1], latent_format.process_in(latent), "the trajectory's end")
    assert_exact(noised["samples"], latent_format.process_out(trajectory.latents[0]), "x_T")
    assert trajectory.model_family == "SD15" and 0 in trajectory.conds
    assert trajectory.conds[0].c_crossattn.shape == (1, 77, 768)


def test_sampler_custom_with_the_returned_sigmas_regenerates_like_ksampler_advanced(comfy):
    import comfy_extras.nodes_custom_sampler as custom
    checkpoint = comfy.sd15
    latent = image_latent(checkpoint)
    positive = comfy.encode(checkpoint.clip, "a landscape")
    negative = comfy.encode(checkpoint.clip, "blurry")
    steps, cfg = 4, 2.5
    noised, _, sigmas = invert(comfy, checkpoint.model, latent, steps, cfg=cfg, refine=2, positive=positive,
                               negative=negative)
    sampler = custom.KSamplerSelect.execute("ddim").result[0]
    out = custom.SamplerCustom.execute(checkpoint.model, False, 0, cfg, positive, negative, sampler, sigmas,
                                       noised).result[0]["samples"]
    via_advanced = regenerate(comfy, checkpoint.model, noised, steps, cfg, positive, negative)
    assert_exact(out, via_advanced, "SamplerCustom vs KSamplerAdvanced")  # one sampler, the same sigmas
    print(f"\nsd15 cfg {cfg}, {steps} steps, K=2: relative round-trip error {relative_error(out, latent):.4g}")


def test_the_inversion_tests_image_latent_has_model_space_std_1(comfy):
    checkpoint = comfy.sd15
    latent = image_latent(checkpoint)
    model_space = checkpoint.model.model.latent_format.process_in(latent)
    assert_close(float(model_space.std()), 1.0, ulps=OPS, dtype=model_space.dtype, what="model-space std")
