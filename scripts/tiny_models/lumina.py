"""Tiny seeded random-weight Z-Image of the real architecture: ComfyUI's ``NextDiT``
(comfy/ldm/lumina/model.py), its key names and config from ComfyUI's own detection
(``detect_unet_config`` reads ``cap_embedder`` -> lumina2, the width and the caption width from
``cap_embedder.1.weight``, the depth from the ``layers.`` keys; ``supported_models.Lumina2``).

Detection sets Z-Image's constants only for its full width (3840: 30 heads of 128, RoPE axes
32 + 48 + 48, theta 256, FFN 8/3, Z-Image modulation, time scale 1000, padding of caption and image
tokens to multiples of 32). The tiny model (width 256: Z-Image's modulation needs at least 256,
4 heads of 64, axes 16 + 24 + 24) overrides exactly those constants (``TINY_OVERRIDES``), written into
the file's metadata (``atelier_dit_overrides``) and applied by ``dit.load_tiny_dit``; ComfyUI then
builds it as ``supported_models.Lumina2`` (``ZImage`` matches width 3840 only), the same ``NextDiT``.
Two main layers and two context / noise refiner blocks each (the real count of refiners).

Text: :func:`random_conditioning` stands in for Qwen3-4B (32-wide tokens instead of 2560, no pooled
output, no attention mask: ComfyUI's Z-Image text encoder pads nothing).
"""
from __future__ import annotations

import torch

from .dit import DIFFUSION_MODELS, build_detected_dit, load_tiny_dit, verify_detected_dit
from .files import ensure_built

Z_IMAGE = "atelier_tiny_z_image.safetensors"
SEED = 3840
VERSION_KEY = ("atelier_z_image_version", "1")  # bump the value when the tiny model changes
LAYERS = 2
WIDTH = 256
TEXT_WIDTH = 32
# what detection sets for Z-Image at width 3840 only, at the tiny width
TINY_OVERRIDES = {"n_heads": 4, "n_kv_heads": 4, "axes_dims": [16, 24, 24], "axes_lens": [1536, 512, 512],
                  "rope_theta": 256.0, "ffn_dim_multiplier": 8.0 / 3.0, "z_image_modulation": True,
                  "time_scale": 1000.0, "pad_tokens_multiple": 32}


def _unet_config() -> dict:
    return {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": WIDTH,
            "cap_feat_dim": TEXT_WIDTH, "n_layers": LAYERS, "qk_norm": True, **TINY_OVERRIDES}


def _meta_state_dict() -> dict:
    """Key names and shapes of the tiny model, from ComfyUI's own class on the meta device."""
    import comfy.supported_models as sm
    config = sm.Lumina2(_unet_config())
    config.set_inference_dtype(torch.float32, None)
    base = config.get_model({}, device=torch.device("meta"))
    return base.diffusion_model.state_dict()


def build_z_image(path, name: str | None = None) -> dict:
    return build_detected_dit(path, _meta_state_dict(), "Lumina2", SEED, VERSION_KEY, TINY_OVERRIDES)


def verify_z_image(path, full: bool = False) -> dict:
    return verify_detected_dit(path, "Lumina2", VERSION_KEY, full)


def load_tiny_z_image(path):
    """A ModelPatcher of the tiny file (fp32, CPU), as ``comfy.sd.load_diffusion_model`` builds one."""
    return load_tiny_dit(path)


def random_conditioning(tokens: int = 8, seed: int = 0) -> list:
    """CONDITIONING standing in for Qwen3-4B: [[context (1, tokens, TEXT_WIDTH), {}]]."""
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, TEXT_WIDTH, generator=gen), {}]]


def z_image_artifacts() -> dict:
    """ARTIFACTS entry (subfolder, builder, verifier) of the tiny Z-Image."""
    return {Z_IMAGE: (DIFFUSION_MODELS, build_z_image, verify_z_image)}


def bench_family():
    """The tiny Z-Image for ``scripts/bench_families.py --family lumina``."""
    from scripts.bench_families import Family
    from .env import DEFAULT_BASE
    path = ensure_built(DEFAULT_BASE / "models" / DIFFUSION_MODELS / Z_IMAGE, verify_z_image, build_z_image)
    return Family("Z-Image", load_tiny_z_image(path), lambda tokens, seed: random_conditioning(tokens, seed))
