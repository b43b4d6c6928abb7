"""Tiny seeded random-weight Qwen-Image (and Qwen-Image-Edit 2509: the same network) of the real
architecture: ComfyUI's ``QwenImageTransformer2DModel`` (comfy/ldm/qwen_image/model.py), its key names
and config from ComfyUI's own detection (``detect_unet_config`` reads ``txt_norm`` -> qwen_image, the
input channels from ``img_in`` and the depth from the block keys; ``supported_models.QwenImage``).

Detection pins the full-size constants it cannot read from the keys: 24 heads of 128 channels
(RoPE axes 16 + 56 + 56) and a Qwen2.5-VL text width of 3584. The tiny model overrides exactly those
(``TINY_OVERRIDES``: 2 heads of 32, axes 8 + 12 + 12, text width 32, so width 64); the override is
written into the file's metadata (``atelier_dit_overrides``) and ``dit.load_tiny_dit`` applies it.
Everything else (patch size 2, 16 latent channels as the Wan 2.1 VAE, the 3D latent [B, 16, 1, H, W],
reference latents appended after the image tokens) is ComfyUI's, on both ComfyUI versions.

Text: :func:`random_conditioning` stands in for Qwen2.5-VL (32-wide tokens, no pooled output);
:func:`with_reference_latents` adds what ReferenceLatent / TextEncodeQwenImageEdit add for the Edit
models (``reference_latents``).
"""
from __future__ import annotations

import json

import torch

from .dit import DIFFUSION_MODELS, build_detected_dit, detected_config, load_tiny_dit, verify_detected_dit
from .files import ensure_built

QWEN_IMAGE = "atelier_tiny_qwen_image.safetensors"
SEED = 2509
VERSION_KEY = ("atelier_qwen_image_version", "1")  # bump the value when the tiny model changes
LAYERS = 2
WIDTH = 64
TEXT_WIDTH = 32
# detection pins 24 heads x 128 (axes 16 + 56 + 56) and a 3584-wide text input
TINY_OVERRIDES = {"num_attention_heads": 2, "attention_head_dim": 32, "axes_dims_rope": [8, 12, 12],
                  "joint_attention_dim": TEXT_WIDTH}


def _unet_config() -> dict:
    return {"image_model": "qwen_image", "in_channels": 64, "num_layers": LAYERS, **TINY_OVERRIDES}


def _meta_state_dict() -> dict:
    """Key names and shapes of the tiny model, from ComfyUI's own class on the meta device."""
    import comfy.supported_models as sm
    config = sm.QwenImage(_unet_config())
    config.set_inference_dtype(torch.float32, None)
    base = config.get_model({}, device=torch.device("meta"))
    return base.diffusion_model.state_dict()


def build_qwen_image(path, name: str | None = None) -> dict:
    return build_detected_dit(path, _meta_state_dict(), "QwenImage", SEED, VERSION_KEY, TINY_OVERRIDES)


def verify_qwen_image(path, full: bool = False) -> dict:
    return verify_detected_dit(path, "QwenImage", VERSION_KEY, full)


def load_tiny_qwen_image(path, edit_2511: bool = False):
    """A ModelPatcher of the tiny file (fp32, CPU), as ``comfy.sd.load_diffusion_model`` builds one.
    ``edit_2511``: as ComfyUI 0.33.0 detects Qwen-Image-Edit 2511 (its ``__index_timestep_zero__``
    marker: reference latents modulated at timestep 0), the same weights."""
    if not edit_2511:
        return load_tiny_dit(path)
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.utils
    sd, metadata = comfy.utils.load_torch_file(str(path), safe_load=True, return_metadata=True)
    sd = dict(sd, __index_timestep_zero__=torch.tensor([]))
    config = detected_config(sd, json.loads(metadata["atelier_dit_overrides"]))
    if config.unet_config.get("default_ref_method") != "index_timestep_zero":
        raise ValueError("this ComfyUI does not detect Qwen-Image-Edit 2511")
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model(sd, "")
    model.load_model_weights(sd, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def random_conditioning(tokens: int = 8, seed: int = 0) -> list:
    """CONDITIONING standing in for Qwen2.5-VL: [[context (1, tokens, TEXT_WIDTH), {}]]."""
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, TEXT_WIDTH, generator=gen), {}]]


def with_reference_latents(conditioning: list, latents: list) -> list:
    """``conditioning`` with ``reference_latents`` appended, as ComfyUI's ReferenceLatent node does
    (each latent [1, 16, 1, h, w] in latent units)."""
    out = []
    for context, extra in conditioning:
        extra = dict(extra)
        extra["reference_latents"] = list(extra.get("reference_latents", [])) + list(latents)
        out.append([context, extra])
    return out


def qwen_image_artifacts() -> dict:
    """ARTIFACTS entry (subfolder, builder, verifier) of the tiny Qwen-Image."""
    return {QWEN_IMAGE: (DIFFUSION_MODELS, build_qwen_image, verify_qwen_image)}


def bench_family():
    """The tiny Qwen-Image for ``scripts/bench_families.py --family qwen_image`` (latent [B, 16, 1, H, W])."""
    from scripts.bench_families import Family
    from .env import DEFAULT_BASE
    path = ensure_built(DEFAULT_BASE / "models" / DIFFUSION_MODELS / QWEN_IMAGE, verify_qwen_image, build_qwen_image)
    return Family("Qwen-Image", load_tiny_qwen_image(path), lambda tokens, seed: random_conditioning(tokens, seed))
