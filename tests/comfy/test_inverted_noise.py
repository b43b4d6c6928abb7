"""The way back in the graph editor: AtelierInvert -> AtelierInvertedNoise -> SamplerCustomAdvanced
(noise = the inverted noise, guider = CFGGuider, sampler = euler, sigmas = the inversion's) regenerates
the inverted latent inside a real ComfyUI. On a flow model (tiny Flux.1 and Z-Image, both test beds)
the sampler's first model input is the inversion's x_T bit for bit; on an eps UNet (tiny SD1.5) to
float rounding, and the result is what KSamplerAdvanced gives from noised_latent."""
import pytest
import torch

from tests.comfy.inversion_families import FAMILIES, latent, relative_error
from tests.tolerance import OPS, SAMPLING, assert_close

STEPS, REFINE, BUDGET = 8, 5, 20
# the round trip of these 8-step, K = 5, 20-evaluation inversions (model-space std-1 latents, 16x16):
# measured <= 1e-3 on both test beds; the bound is the target
ROUND_TRIP = 0.01


class FirstInput:
    """An APPLY_MODEL wrapper keeping the x of the first model evaluation (the sampler's start)."""

    def __init__(self):
        self.x = None

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, t, *args, **kwargs):
        if self.x is None:
            self.x = x.detach().clone()
        return executor(x, t, *args, **kwargs)


def with_first_input(model):
    import comfy.patcher_extension as ext
    spy = FirstInput()
    model = model.clone()
    model.add_wrapper_with_key(ext.WrappersMP.APPLY_MODEL, "atelier_test.first_input", spy)
    return model, spy


def node(comfy, name):
    return comfy.node_class(name)


def sampler_custom_advanced(comfy, model, positive, noise, sigmas, latent_image):
    guider = node(comfy, "CFGGuider").execute(model, positive, positive, 1.0)[0]
    sampler = node(comfy, "KSamplerSelect").execute("euler")[0]
    return node(comfy, "SamplerCustomAdvanced").execute(noise, guider, sampler, sigmas, latent_image)[0]["samples"]


def inverted(comfy, model, positive, x0):
    return node(comfy, "AtelierInvert").execute(model, {"samples": x0}, STEPS, 1.0, "simple", REFINE,
                                                positive=positive, negative=positive,
                                                max_evaluations=BUDGET).args


@pytest.mark.parametrize("family", ["Flux.1", "Z-Image"])
def test_sampler_custom_advanced_starts_at_x_T_exactly_and_regenerates_the_latent(comfy, family):
    family = FAMILIES[family]
    model, positive = family.load(comfy)
    x0 = latent(model, family, 16, seed=3)
    noised, trajectory, sigmas = inverted(comfy, model, positive, x0)
    noise = node(comfy, "AtelierInvertedNoise").execute(model, trajectory).args[0]
    spied, first = with_first_input(model)
    out = sampler_custom_advanced(comfy, spied, positive, noise, sigmas, noised)
    assert float(sigmas[0]) == 1.0 and torch.equal(first.x.cpu(), trajectory.latents[0])
    error = relative_error(model.model.process_latent_in(out), model.model.process_latent_in(x0))
    print(f"\n{family.name}: SamplerCustomAdvanced round trip {error:.3g}")
    assert error <= ROUND_TRIP


def test_any_latent_image_of_the_size_starts_at_x_T_on_a_flow_model(comfy):
    """The noise is solved for the latent_image actually wired: an empty latent works as well."""
    family = FAMILIES["Flux.1"]
    model, positive = family.load(comfy)
    x0 = latent(model, family, 8, seed=4)
    _, trajectory, sigmas = inverted(comfy, model, positive, x0)
    noise = node(comfy, "AtelierInvertedNoise").execute(model, trajectory).args[0]
    spied, first = with_first_input(model)
    sampler_custom_advanced(comfy, spied, positive, noise, sigmas, {"samples": torch.randn_like(x0)})
    assert torch.equal(first.x.cpu(), trajectory.latents[0])


def test_on_an_eps_unet_it_regenerates_as_ksampler_advanced_does(comfy):
    """x = process_in(latent_image) + sqrt(1 + s^2) * noise at the model's sigma_max: the noise is solved
    for that, so the start meets x_T to float rounding and the result is KSamplerAdvanced's (add_noise
    off, ddim) from noised_latent to float rounding."""
    from tests.comfy.inversion_helpers import regenerate
    family = FAMILIES["SD1.5 eps"]
    model, positive = family.load(comfy)
    x0 = latent(model, family, 8, seed=2)
    noised, trajectory, sigmas = node(comfy, "AtelierInvert").execute(
        model, {"samples": x0}, 4, 1.0, "normal", 2, positive=positive, negative=positive).args
    noise = node(comfy, "AtelierInvertedNoise").execute(model, trajectory).args[0]
    spied, first = with_first_input(model)
    for latent_image in (noised, {"samples": torch.zeros_like(x0)}):
        first.x = None
        out = sampler_custom_advanced(comfy, spied, positive, noise, sigmas, latent_image)
        x_T = trajectory.latents[0]
        # (x_T - latent) / sqrt(1 + s^2), then times sqrt(1 + s^2) plus latent: a few float32 roundings
        assert_close(first.x.cpu(), x_T, ulps=OPS, what="the sampler's first input vs x_T")
        via_advanced = regenerate(comfy, model, noised, 4, 1.0, positive, positive)
        assert_close(out, via_advanced, ulps=SAMPLING, what="SamplerCustomAdvanced vs KSamplerAdvanced")


def test_a_latent_of_another_size_or_a_trajectory_of_another_family_is_refused(comfy):
    from tests.pack import pack_module
    errors = pack_module("attention.core.errors")
    flux, sd35 = FAMILIES["Flux.1"], FAMILIES["SD3.5"]
    model, positive = flux.load(comfy)
    x0 = latent(model, flux, 8, seed=1)
    _, trajectory, sigmas = node(comfy, "AtelierInvert").execute(model, {"samples": x0}, 2, 1.0, "simple", 0,
                                                                  positive=positive, negative=positive).args
    noise = node(comfy, "AtelierInvertedNoise").execute(model, trajectory).args[0]
    sizes = r"AtelierInvertedNoise.*trajectory.*\[1, 16, 8, 8\].*\[1, 16, 4, 4\]"
    with pytest.raises(errors.AtelierError, match=sizes):
        sampler_custom_advanced(comfy, model, positive, noise, sigmas, {"samples": torch.zeros(1, 16, 4, 4)})
    other, _ = sd35.load(comfy)
    with pytest.raises(errors.AtelierError, match=r"AtelierInvertedNoise.*trajectory.*Flux.*SD3"):
        node(comfy, "AtelierInvertedNoise").execute(other, trajectory)
