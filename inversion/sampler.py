"""Run DDIM inversion through ComfyUI's own sampling path (CFGGuider + KSAMPLER with a custom
function), so model loading, process_latent_in/out, noise scaling, CFG and model patches are ComfyUI's.
"""
from __future__ import annotations

import torch

from ..attention.core.rows import chunk_layout
from ..attention.models import transformer_family_of
from . import ddim
from .trajectory import RowConds, Trajectory

try:  # guarded: the maths in this package imports without ComfyUI
    import comfy.model_management
    import comfy.patcher_extension as patcher_extension
    import comfy.samplers
    import comfy.utils
except ImportError:  # pragma: no cover
    comfy = patcher_extension = None

RECORDER_KEY = "attention_atelier.inversion_conds"


class ConditionRecorder:
    """APPLY_MODEL wrapper keeping, per cond kind, what latent row 0 was given (first call wins)."""

    def __init__(self):
        self.conds: dict = {}

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
        layout = chunk_layout(x.shape[0], transformer_options.get("cond_or_uncond"))
        for chunk, kind in enumerate(layout.cond_or_uncond):
            if kind in self.conds:
                continue
            row = chunk * layout.rows
            take = lambda v: v[row:row + 1].detach().float().cpu()  # noqa: E731
            extra = {name: take(v) for name, v in kwargs.items()
                     if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == x.shape[0]}
            self.conds[kind] = RowConds(
                c_crossattn=None if c_crossattn is None else take(c_crossattn),
                c_concat=take(c_concat) if isinstance(c_concat, torch.Tensor) and c_concat.shape[0] == x.shape[0] else None,
                extra=extra)
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)


def zero_conditioning(model) -> list:
    """A CONDITIONING of zeros in the model's context shape (77 tokens; SDXL also a zero pooled output;
    Flux a zero pooled output of its vec_in_dim; other models None, as their text encoders give)."""
    base = model.model
    unet_config = base.model_config.unet_config
    context_dim = unet_config.get("context_dim") or unet_config.get("context_in_dim") or 768
    family = transformer_family_of(base.diffusion_model)
    if family is not None:  # a DiT: the text width its adapter reads off the model (SD3, Qwen-Image, ...)
        context_dim = family.context_width(base.diffusion_model)
    extra = {}
    if getattr(base, "adm_channels", 0):
        extra["pooled_output"] = torch.zeros(1, 1280)
    elif unet_config.get("vec_in_dim"):
        extra["pooled_output"] = torch.zeros(1, unet_config["vec_in_dim"])
    else:  # as ComfyUI's text encoders without one hand it (0.3.75's Chroma and FLUX.2 read the key)
        extra["pooled_output"] = None
    return [[torch.zeros(1, 77, context_dim), extra]]


def is_flow_matching(model) -> bool:
    """True for models ComfyUI samples as x = (1 - s) x0 + s eps (CONST sampling: Flux, SD3)."""
    import comfy.model_sampling
    return isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.CONST)


def invert_latent(model, latent_image: torch.Tensor, positive, negative, cfg: float, sigmas: torch.Tensor,
                  refine_iterations: int, scheduler: str = "normal", max_evaluations: int = 0) -> tuple:
    """DDIM-invert ``latent_image`` (latent units) over the descending ``sigmas``.

    Returns (x_T in latent units, Trajectory of model-space sampler variables, with each step's
    evaluations and residuals).
    """
    recorder = ConditionRecorder()
    flow_matching = is_flow_matching(model)
    patched = model.clone()
    patched.add_wrapper_with_key(patcher_extension.WrappersMP.APPLY_MODEL, RECORDER_KEY, recorder)
    guider = comfy.samplers.CFGGuider(patched)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)

    steps = len(sigmas) - 1
    progress = comfy.utils.ProgressBar(steps)
    states = []
    reports = []
    tolerance = ddim.step_tolerance(steps)

    def inversion_sampler(model_k, x, ascending, extra_args=None, callback=None, disable=None):
        extra_args = extra_args or {}
        s_in = x.new_ones([x.shape[0]])

        def denoise(x_, sigma):
            comfy.model_management.throw_exception_if_processing_interrupted()
            return model_k(x_, sigma * s_in, **extra_args)

        def on_step(k, x_):
            progress.update(1)
            if callback is not None:
                callback({"x": x_, "i": k - 1, "sigma": ascending[k], "sigma_hat": ascending[k], "denoised": x_})

        states.extend(ddim.invert(denoise, x, ascending.flip(0), refine_iterations, on_step, flow_matching,
                                  max_evaluations, tolerance, reports))
        return states[0]

    noise = torch.zeros_like(latent_image)
    x_T = guider.sample(noise, latent_image, comfy.samplers.KSAMPLER(inversion_sampler), sigmas.flip(0),
                        disable_pbar=True, seed=0)
    if flow_matching:
        # ComfyUI ends sampling with x / (1 - s_last), infinite at s = 1: take x_T from the trajectory
        x_T = model.model.process_latent_out(states[0].detach())
    x_T = x_T.to(comfy.model_management.intermediate_device())
    trajectory = Trajectory(
        latents=torch.stack([s.detach().float().cpu() for s in states]),
        sigmas=sigmas.detach().float().cpu(),
        conds=dict(recorder.conds),
        model_family=type(model.model.model_config).__name__,
        cfg=float(cfg), scheduler=scheduler, refine_iterations=int(refine_iterations),
        evaluations=tuple(r.evaluations for r in reversed(reports)),
        residuals=torch.stack([r.residuals for r in reversed(reports)]) if reports else None,
        tolerance=tolerance, max_evaluations=max(1 + int(refine_iterations), int(max_evaluations)))
    return x_T, trajectory
