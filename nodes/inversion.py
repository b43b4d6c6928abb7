"""AtelierInvert: DDIM inversion of a latent, with its whole trajectory and the sigmas that regenerate it."""
from __future__ import annotations

import comfy.sample
import comfy.samplers
from comfy_api.latest import io

from .common import search_aliases

from ..attention import models
from ..attention.core.errors import AtelierError
from ..attention.core.family import INVERSION
from ..attention.dispatch.dispatcher import require_supported
from ..inversion.reference import check_conditioning_width
from ..inversion.sampler import invert_latent, zero_conditioning
from .common import CATEGORY, families_running
from .input_guard import guarded

NODE = "AtelierInvert"
TrajectoryType = io.Custom("ATELIER_TRAJECTORY")  # inversion.trajectory.Trajectory


def check_latent(samples, latent: dict, family):
    """An image latent [batch, C, H, W] ([batch, C, 1, H, W] where the VAE is a video one: Qwen-Image, Krea 2),
    or a clip [batch, C, frames, H, W] on a video model, every frame noised: inversion walks every token up
    the same sigmas, which a latent that keeps frames clean (an image-to-video start frame's noise_mask) does
    not sample."""
    video = family is not None and family.kind == "separate"
    if samples.ndim not in (4, 5) or (samples.ndim == 5 and samples.shape[2] > 1 and not video):
        raise AtelierError(NODE, "latent", f"expected an image latent [batch, C, H, W], got {list(samples.shape)}.",
                           "encode a still image with VAEEncode (a clip: on a video model).")
    if video and latent.get("noise_mask") is not None:
        raise AtelierError(NODE, "latent", "the latent keeps some frames as they are (a noise_mask, as an "
                           "image-to-video start frame's); inversion noises every frame along one schedule, "
                           "which such a clip is never sampled with.",
                           "invert a clip without kept frames (encode it with VAEEncode, no start image).")


def require_invertible(model):
    """UNets (eps / v-prediction) and Flux.1 / SD3 (flow matching); other families are refused by name."""
    require_supported(model, NODE, features=(INVERSION,))


class AtelierInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE,
            **search_aliases("Atelier DDIM inversion", "Atelier inversion", "Atelier invert image"),
            display_name="DDIM Inversion (with trajectory)",
            category=f"{CATEGORY}/inversion",
            description=(
                "Deterministic DDIM inversion: finds the noise x_T from which deterministic DDIM sampling "
                "(KSamplerAdvanced with add_noise disabled, sampler ddim, the same steps and scheduler; or "
                "SamplerCustom with the sigmas output) gives back the input latent. Works for eps- and "
                "v-prediction models and flow-matching Flux.1 / SD3.5 (x = (1 - s) x0 + s eps; there "
                "x_T is the noise the sampler starts from at s = 1) at any cfg; refine_iterations solves "
                "each step's implicit equation "
                "by fixed-point iteration for a much smaller round-trip error. Also outputs every "
                "per-step latent (the trajectory) for AtelierStyleAligned's reference input."),
            inputs=[
                io.Model.Input("model", tooltip=f"The diffusion model ({families_running((INVERSION, ()))}) "
                                                "the image will be regenerated with."),
                io.Latent.Input("latent", tooltip="The latent to invert, e.g. from VAEEncode of the reference image."),
                io.Conditioning.Input("positive", optional=True,
                                      tooltip="Prompt describing the image (regenerate with the same one). "
                                              "Not connected: a zero conditioning of the model's context "
                                              "shape (not the empty prompt, which needs a text encoder)."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Negative prompt, used when cfg is not 1. Not connected: a "
                                              "zero conditioning."),
                io.Int.Input("steps", default=20, min=1, max=1000,
                             tooltip="Number of DDIM steps; regenerate with the same number."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale of the inversion; regenerate with "
                                       "the same. 1 is the most faithful and costs one model call per step."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="Sigma schedule; regenerate with the same scheduler."),
                io.Int.Input("refine_iterations", default=2, min=0, max=50,
                             tooltip="Fixed-point refinements per step (one extra model call each). "
                                     "0 = plain DDIM inversion; 2-5 cut the round-trip error many times."),
            ],
            outputs=[
                io.Latent.Output(display_name="noised_latent",
                                 tooltip="x_T: the latent at the highest sigma; sample it with noise "
                                         "disabled to get the input back."),
                TrajectoryType.Output(display_name="trajectory",
                                  tooltip="Every per-step latent with its sigma and conditioning; wire it "
                                          "to AtelierStyleAligned's reference input."),
                io.Sigmas.Output(display_name="sigmas",
                                 tooltip="The descending sigmas that regenerate the input from x_T "
                                         "(SamplerCustom with add_noise off)."),
            ],
        )

    @classmethod
    @guarded
    def execute(cls, model, latent, steps, cfg, scheduler, refine_iterations, positive=None,
                negative=None) -> io.NodeOutput:
        require_invertible(model)
        samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        diffusion_model = model.get_model_object("diffusion_model")
        check_latent(samples, latent, models.family_of(diffusion_model))
        for name, conditioning in (("positive", positive), ("negative", negative)):
            check_conditioning_width(conditioning, diffusion_model, NODE, name, f"the {name} conditioning")
        positive = positive if positive is not None else zero_conditioning(model)
        negative = negative if negative is not None else zero_conditioning(model)
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()
        x_T, trajectory = invert_latent(model, samples, positive, negative, cfg, sigmas, refine_iterations,
                                        scheduler)
        out = {key: value for key, value in latent.items() if key not in ("samples", "noise_mask")}
        out["samples"] = x_T
        return io.NodeOutput(out, trajectory, sigmas)


NODES = [AtelierInvert]
