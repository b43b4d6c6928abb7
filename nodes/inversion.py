"""AtelierInvert: DDIM inversion of a latent, with its whole trajectory and the sigmas that regenerate it;
AtelierInvertedNoise: the NOISE that starts SamplerCustomAdvanced at the inversion's x_T."""
from __future__ import annotations

import logging

import comfy.sample
import comfy.samplers
from comfy_api.latest import io

from .common import search_aliases

from ..attention import models
from ..attention.core.errors import AtelierError
from ..attention.core.family import INVERSION
from ..attention.dispatch.dispatcher import require_supported
from ..inversion.noise import InvertedNoise
from ..inversion.reference import check_conditioning_width
from ..inversion.sampler import invert_latent, is_flow_matching, zero_conditioning
from ..inversion.schedule import checked_sigmas
from ..inversion.trajectory import Trajectory
from .common import CATEGORY, families_running
from .input_guard import guarded

log = logging.getLogger("attention_atelier")

NODE = "AtelierInvert"
NOISE_NODE = "AtelierInvertedNoise"
TrajectoryType = io.Custom("ATELIER_TRAJECTORY")  # inversion.trajectory.Trajectory
MAX_EVALUATIONS = 1000  # per step; beyond this a step is better split into more steps


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


def warn_unsolved(trajectory: Trajectory):
    """One warning naming the steps whose solve ended above the tolerance, and what to do."""
    unsolved = trajectory.unsolved_steps()
    if not unsolved:
        return
    sigmas = trajectory.sigmas
    worst = trajectory.residuals.nan_to_num(nan=0.0).amax(dim=1)
    listed = ", ".join(f"{i + 1} ({float(sigmas[i]):.3g} -> {float(sigmas[i + 1]):.3g}: residual {float(worst[i]):.2g})"
                       for i in unsolved[:8]) + (f", ... ({len(unsolved)} in all)" if len(unsolved) > 8 else "")
    log.warning(
        "%s: %d of %d steps did not converge within %d model evaluations per step (residual above %.2g of the "
        "latent's size; "
        "steps counted as the sampler runs them, sigma high -> low): %s. Their round trip back to your latent is "
        "off by about the residuals shown. Fix: raise max_evaluations (e.g. to %d), or refine_iterations, or use "
        "more steps (a smaller last step is easier to invert).", NODE, len(unsolved), trajectory.steps,
        trajectory.max_evaluations, trajectory.tolerance, listed, max(2 * trajectory.max_evaluations, 12))


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
                "SamplerCustom with the sigmas output; or SamplerCustomAdvanced with AtelierInvertedNoise) gives "
                "back the input latent. Works for eps- and v-prediction models and the flow-matching DiTs "
                "(Flux.1, SD3.5, Z-Image, Qwen-Image, FLUX.2, Chroma, Krea 2; x = (1 - s) x0 + s eps, where "
                "x_T is the noise the sampler starts from at s = 1) at any cfg; refine_iterations solves each "
                "step's implicit equation by fixed-point iteration, and where that does not contract a "
                "safeguarded Anderson solve takes over within max_evaluations per step. Any scheduler node "
                "can drive it through the optional sigmas input. Also outputs every per-step latent (the "
                "trajectory) for AtelierStyleAligned's reference input and AtelierInvertedNoise."),
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
                             tooltip="Number of DDIM steps; regenerate with the same number. Ignored when "
                                     "sigmas is connected."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale of the inversion; regenerate with "
                                       "the same. 1 is the most faithful and costs one model call per step."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="Sigma schedule; regenerate with the same scheduler. Ignored when "
                                       "sigmas is connected."),
                io.Int.Input("refine_iterations", default=2, min=0, max=50,
                             tooltip="Fixed-point refinements per step (one extra model call each). "
                                     "0 = plain DDIM inversion; 2-5 cut the round-trip error many times. "
                                     "A step whose refinement stops shrinking its residual switches to a "
                                     "safeguarded Anderson solve for the calls left."),
                io.Int.Input("max_evaluations", default=0, min=0, max=MAX_EVALUATIONS, optional=True,
                             tooltip="Model calls one step may use at most. 0 = 1 + refine_iterations (the "
                                     "cost without this input). Higher: a step still above its tolerance "
                                     "(a round-trip share of 0.01 / steps of the latent's size) after the "
                                     "refinements goes on with the Anderson solve until it converges or this "
                                     "many calls are spent; solved steps stop early. 20 with refine_iterations "
                                     "2 gives a 1 % round trip at 20 steps on every family (README table)."),
                io.Sigmas.Input("sigmas", optional=True,
                                tooltip="Optional schedule from any scheduler node (BasicScheduler, "
                                        "Flux2Scheduler, AlignYourStepsScheduler, custom sigmas): replaces steps "
                                        "and scheduler. At least 2 finite sigmas, strictly descending, ending "
                                        "at 0 (flow models: at most 1). Regenerate over the sigmas output."),
            ],
            outputs=[
                io.Latent.Output(display_name="noised_latent",
                                 tooltip="x_T: the latent at the highest sigma; sample it with noise "
                                         "disabled to get the input back (flow models: use "
                                         "AtelierInvertedNoise as SamplerCustomAdvanced's noise)."),
                TrajectoryType.Output(display_name="trajectory",
                                      tooltip="Every per-step latent with its sigma, conditioning, and each step's "
                                              "model calls and residual; wire it to AtelierStyleAligned's "
                                              "reference input or AtelierInvertedNoise."),
                io.Sigmas.Output(display_name="sigmas",
                                 tooltip="The descending sigmas that regenerate the input from x_T "
                                         "(SamplerCustom with add_noise off, or SamplerCustomAdvanced); the "
                                         "sigmas input itself when connected."),
            ],
        )

    @classmethod
    @guarded
    def execute(cls, model, latent, steps, cfg, scheduler, refine_iterations, positive=None,
                negative=None, max_evaluations=0, sigmas=None) -> io.NodeOutput:
        require_invertible(model)
        samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        diffusion_model = model.get_model_object("diffusion_model")
        check_latent(samples, latent, models.family_of(diffusion_model))
        for name, conditioning in (("positive", positive), ("negative", negative)):
            check_conditioning_width(conditioning, diffusion_model, NODE, name, f"the {name} conditioning")
        positive = positive if positive is not None else zero_conditioning(model)
        negative = negative if negative is not None else zero_conditioning(model)
        if sigmas is None:
            schedule = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()
            out_sigmas = schedule
        else:
            schedule = checked_sigmas(sigmas, NODE, "sigmas", is_flow_matching(model))
            out_sigmas, scheduler = sigmas, "custom"
        x_T, trajectory = invert_latent(model, samples, positive, negative, cfg, schedule, refine_iterations,
                                        scheduler, max_evaluations or 0)
        warn_unsolved(trajectory)
        out = {key: value for key, value in latent.items() if key not in ("samples", "noise_mask")}
        out["samples"] = x_T
        return io.NodeOutput(out, trajectory, out_sigmas)


class AtelierInvertedNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NOISE_NODE,
            **search_aliases("Atelier inverted noise", "Atelier inversion noise"),
            display_name="Inverted Noise (for SamplerCustomAdvanced)",
            category=f"{CATEGORY}/inversion",
            description=(
                "The NOISE that starts SamplerCustomAdvanced exactly at AtelierInvert's x_T (its noised "
                "latent, in model space), so CFGGuider + euler (or ddim) over AtelierInvert's sigmas gives "
                "the inverted picture back. Flow-matching models (Flux, Z-Image, ...: the sampler starts "
                "at x = noise at s = 1) start there bit for bit; eps / v UNets to float rounding. Works with "
                "any latent_image of the same size (AtelierInvert's noised_latent is the natural one)."),
            inputs=[
                io.Model.Input("model", tooltip="The model SamplerCustomAdvanced's guider samples: the one the "
                                                f"picture was inverted with ({families_running((INVERSION, ()))})."),
                TrajectoryType.Input("trajectory", tooltip="AtelierInvert's trajectory: its x_T (model space) "
                                                           "and first sigma."),
            ],
            outputs=[io.Noise.Output(display_name="noise",
                                     tooltip="Wire to SamplerCustomAdvanced's noise, with AtelierInvert's sigmas "
                                             "as its sigmas and noised_latent as its latent_image.")],
        )

    @classmethod
    @guarded
    def execute(cls, model, trajectory) -> io.NodeOutput:
        family = type(model.model.model_config).__name__
        if family != trajectory.model_family:
            raise AtelierError(NOISE_NODE, "trajectory", f"the picture was inverted with a {trajectory.model_family} "
                               f"model but this model is {family}.",
                               "connect the model AtelierInvert inverted with.")
        return io.NodeOutput(InvertedNoise(model, trajectory, NOISE_NODE))


NODES = [AtelierInvert, AtelierInvertedNoise]
