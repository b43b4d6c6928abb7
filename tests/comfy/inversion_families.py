"""Every family AtelierInvert supports, as its round-trip tests drive it: the tiny seeded model with the
family's usual shift (Z-Image ModelSamplingAuraFlow 3 and Qwen-Image 3.5, as ComfyUI's own templates; the
others their model's own sampling: Flux.1, Chroma and Krea 2 shift 1.15, SD3.5 3, FLUX.2 2.02; UNets
their discrete schedule), a stand-in prompt, and a latent of model-space std 1 of any size.

Random weights make absolute errors meaningless unless the latent has the scale real latents have in
model space (std ~1; see README, *DDIM inversion*): ``latent`` draws N(0, 1) in model space and returns
it in latent units (process_latent_out), so the model sees std 1 whatever the family's scale and shift.

Regeneration is ComfyUI's own deterministic sampler over the inversion's sigmas from x_T as the sampler
noise: ``comfy.sample.sample_custom`` with euler (flow models: x_T is the noise at s = 1, where the
latent is scaled by 1 - s = 0) or, for UNets, KSAMPLER ddim with x_T as the latent and zero noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Family:
    name: str
    load: Callable  # comfy -> (model, positive): the tiny model with its usual shift, a prompt
    channels: int
    video: bool = False  # latents [B, C, 1, H, W] (Qwen-Image, Krea 2)
    flow: bool = True
    newest_only: bool = False  # the family exists in ComfyUI 0.33.0 only
    scheduler: str = "simple"  # as the family's templates sample (UNets: normal)

    def shape(self, side: int, batch: int = 1) -> tuple:
        return (batch, self.channels, 1, side, side) if self.video else (batch, self.channels, side, side)


def _dit(comfy, name, guidance=3.5):
    from tests.comfy.dit_helpers import conditioning, tiny_dit
    model = tiny_dit(comfy, name)
    return model, conditioning(model, seed=1, guidance=guidance)


def _built(comfy, module, name, build, verify, load):
    path = comfy.base_dir / "models" / "diffusion_models" / name
    try:
        verify(path)
    except Exception:  # missing or stale: rebuild (a second)
        build(path)
    return load(path)


def _z_image(comfy):
    from tiny_models import lumina
    model = _built(comfy, lumina, lumina.Z_IMAGE, lumina.build_z_image, lumina.verify_z_image, lumina.load_tiny_z_image)
    model = comfy.node_class("ModelSamplingAuraFlow")().patch_aura(model, 3.0)[0]  # as Z-Image Turbo runs
    return model, lumina.random_conditioning(8, seed=1)


def _qwen_image(comfy):
    from tiny_models import qwen_image as q
    model = _built(comfy, q, q.QWEN_IMAGE, q.build_qwen_image, q.verify_qwen_image, q.load_tiny_qwen_image)
    model = comfy.node_class("ModelSamplingAuraFlow")().patch_aura(model, 3.5)[0]  # as ComfyUI's Qwen-Image template
    return model, q.random_conditioning(8, seed=1)


def _flux2(comfy):
    from tiny_models import flux2
    from tiny_models.dit import load_tiny_dit
    model = _built(comfy, flux2, flux2.FLUX2, flux2.build_flux2, flux2.verify_flux2, load_tiny_dit)
    return model, flux2.random_conditioning(8, seed=1)


def _chroma(comfy):
    from tiny_models import chroma
    from tiny_models.dit import load_tiny_dit
    model = _built(comfy, chroma, chroma.CHROMA, chroma.build_chroma, chroma.verify_chroma, load_tiny_dit)
    return model, chroma.random_conditioning(8, seed=1)


def _krea2(comfy):
    import importlib.util

    import pytest
    if importlib.util.find_spec("comfy.ldm.krea2") is None:
        pytest.skip("Krea 2 exists in ComfyUI >= 0.24 only (comfy/ldm/krea2); this test bed's ComfyUI has none")
    from tiny_models import krea2
    model = _built(comfy, krea2, krea2.KREA2, krea2.build_krea2, krea2.verify_krea2, krea2.load_krea2)
    return model, krea2.random_conditioning(model, seed=1)


def _sd15(prediction):
    def load(comfy):
        checkpoint = comfy.sd15
        model = checkpoint.model
        if prediction != "eps":
            import comfy_extras.nodes_model_advanced as advanced
            model = advanced.ModelSamplingDiscrete().patch(model, prediction, False)[0]
        return model, comfy.encode(checkpoint.clip, "a landscape at dusk")
    return load


def _sdxl(comfy):
    checkpoint = comfy.sdxl
    return checkpoint.model, comfy.encode(checkpoint.clip, "a landscape at dusk")


FAMILIES = {family.name: family for family in (
    Family("Flux.1", lambda comfy: _dit(comfy, "atelier_tiny_flux.safetensors"), 16),
    Family("SD3.5", lambda comfy: _dit(comfy, "atelier_tiny_sd35.safetensors", guidance=None), 16),
    Family("Z-Image", _z_image, 16),
    Family("Qwen-Image", _qwen_image, 16, video=True),
    Family("FLUX.2", _flux2, 128),
    Family("Chroma", _chroma, 16),
    Family("Krea 2", _krea2, 16, video=True, newest_only=True),
    Family("SD1.5 eps", _sd15("eps"), 4, flow=False, scheduler="normal"),
    Family("SD1.5 v", _sd15("v_prediction"), 4, flow=False, scheduler="normal"),
    Family("SDXL", _sdxl, 4, flow=False, scheduler="normal"),
)}


def latent(model, family: Family, side: int, seed: int, batch: int = 1) -> torch.Tensor:
    """N(0, 1) in model space, in latent units."""
    x = torch.randn(family.shape(side, batch), generator=torch.Generator().manual_seed(seed))
    return model.model.process_latent_out(x)


def invert(comfy, model, x0: torch.Tensor, positive, steps: int, refine: int, max_evaluations: int = 0,
           scheduler: str = "simple", **optional):
    """AtelierInvert.execute as ComfyUI calls it (cfg 1): (latent dict, trajectory, sigmas)."""
    return comfy.node_class("AtelierInvert").execute(model, {"samples": x0}, steps, 1.0, scheduler, refine,
                                                     positive=positive, negative=positive,
                                                     max_evaluations=max_evaluations, **optional).args


def regenerate(model, family: Family, x_T: torch.Tensor, sigmas: torch.Tensor, positive) -> torch.Tensor:
    """ComfyUI's own deterministic sampler from x_T over ``sigmas`` (cfg 1), in latent units."""
    from comfy import sample as comfy_sample, samplers
    if family.flow:  # x_T is the noise at s = 1 (the latent is scaled by 1 - s = 0 there)
        return comfy_sample.sample_custom(model, model.model.process_latent_in(x_T), 1.0, samplers.ksampler("euler"),
                                          sigmas, positive, positive, torch.zeros_like(x_T), disable_pbar=True, seed=0)
    return comfy_sample.sample_custom(model, torch.zeros_like(x_T), 1.0, samplers.sampler_object("ddim"), sigmas,
                                      positive, positive, x_T, disable_pbar=True, seed=0)


def relative_error(x: torch.Tensor, target: torch.Tensor) -> float:
    return float((x - target).pow(2).mean().sqrt() / target.pow(2).mean().sqrt())


def round_trip(comfy, model, family: Family, positive, side: int, seed: int, steps: int, refine: int,
               max_evaluations: int = 0) -> tuple:
    """(relative RMS round-trip error in model space, trajectory): AtelierInvert at cfg 1, then ComfyUI's
    own sampler back over the inversion's sigmas."""
    x0 = latent(model, family, side, seed)
    x_T, trajectory, sigmas = invert(comfy, model, x0, positive, steps, refine, max_evaluations, family.scheduler)
    back = regenerate(model, family, x_T["samples"], sigmas, positive)
    error = relative_error(model.model.process_latent_in(back), model.model.process_latent_in(x0))
    return error, trajectory
