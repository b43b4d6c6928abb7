"""Shared pieces of the inversion family's ComfyUI tests: an image-like latent of model-space std 1,
inversion through the real node, regeneration through core's KSamplerAdvanced."""
from __future__ import annotations

import torch


def image_latent(checkpoint, size: int = 64, batch: int = 1) -> torch.Tensor:
    """VAE-encode a smooth synthetic picture, rescaled to model-space std 1 like real SD latents
    (the random tiny VAE encodes at std ~5; see testbed.md)."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = []
    for b in range(batch):
        images.append(torch.stack([xs, ys, 0.5 + 0.5 * torch.sin((6 + b) * xs + 3 * ys)], -1))
    latent = checkpoint.vae.encode(torch.stack(images)).float()
    scale = checkpoint.model.model.latent_format.scale_factor
    return latent / latent.std() / scale  # model space (process_in: x * scale) then has std 1


def invert(comfy, model, latent: torch.Tensor, steps: int, cfg: float = 1.0, refine: int = 0, positive=None,
           negative=None, scheduler: str = "normal"):
    """AtelierInvert.execute as ComfyUI calls it: returns (latent dict, trajectory, sigmas)."""
    node = comfy.node_class("AtelierInvert")
    return node.execute(model, {"samples": latent}, steps, cfg, scheduler, refine, positive=positive,
                        negative=negative).result


def regenerate(comfy, model, noised: dict, steps: int, cfg: float, positive, negative, scheduler: str = "normal"):
    """Core KSamplerAdvanced, add_noise disabled, sampler ddim: the documented way back."""
    node = comfy.node_class("KSamplerAdvanced")()
    out = node.sample(model, "disable", 0, steps, cfg, "ddim", scheduler, positive, negative, noised,
                      0, 10000, "disable")
    return out[0]["samples"]


def relative_error(x: torch.Tensor, target: torch.Tensor) -> float:
    return float((x - target).pow(2).mean().sqrt() / target.pow(2).mean().sqrt())


def with_unet_spy(model, spy, key: str = "atelier_test.unet_spy"):
    """A clone of ``model`` whose UNet calls pass through ``spy`` first (an innermost DIFFUSION_MODEL
    wrapper: it sees x, timesteps, context, ... as the UNet gets them); returns (clone, spy)."""
    import comfy.patcher_extension as ext
    model = model.clone()
    model.add_wrapper_with_key(ext.WrappersMP.DIFFUSION_MODEL, key, spy)
    return model, spy
