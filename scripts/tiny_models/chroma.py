"""Tiny seeded random-weight Chroma of the real architecture: ComfyUI's ``Chroma`` module
(comfy/ldm/chroma/model.py), its key names and config from ComfyUI's own detection
(``detect_unet_config`` reads ``distilled_guidance_layer`` -> chroma, the width and text width from
``txt_in``, the depths from the block keys; ``supported_models.Chroma``, ``model_base.Chroma``: 16-channel
Flux latent, patch 2, no pooled vector, guidance 0).

Detection pins Chroma's full-size constants it cannot read from the keys: 24 heads of 128 channels
(RoPE axes 16 + 56 + 56; 0.33 derives the heads from the width / 128) and the approximator's output
(3072 = the width) and hidden size (5120). The tiny model overrides exactly those (``TINY_OVERRIDES``:
2 heads of 32, axes 4 + 14 + 14, approximator 32 wide with output 64 = the width); the override is
written into the file's metadata (``atelier_dit_overrides``) and ``dit.load_tiny_dit`` applies it.

Text: :func:`random_conditioning` stands in for T5-XXL: 32-wide tokens, no pooled output.
"""
from __future__ import annotations

import dataclasses

import torch

from .dit import DIFFUSION_MODELS, build_detected_dit, load_tiny_dit, verify_detected_dit
from .files import ensure_built

CHROMA = "atelier_tiny_chroma.safetensors"
KIND = "Chroma"
SEED = 2301
VERSION_KEY = ("atelier_chroma_version", "1")  # bump the value when the tiny model changes
WIDTH = 64
TEXT_WIDTH = 32
# detection pins 24 heads x 128 (axes 16 + 56 + 56), an approximator of 5120 hidden -> 3072 out
TINY_OVERRIDES = {"num_heads": 2, "axes_dim": [4, 14, 14], "out_dim": WIDTH, "hidden_dim": 32}


def _unet_config() -> dict:
    from comfy.ldm.chroma.model import ChromaParams
    config = {"image_model": "chroma", "in_channels": 64, "out_channels": 64, "context_in_dim": TEXT_WIDTH,
              "hidden_size": WIDTH, "mlp_ratio": 4.0, "depth": 2, "depth_single_blocks": 2, "theta": 10000,
              "patch_size": 2, "qkv_bias": True, "in_dim": 64, "n_layers": 5, **TINY_OVERRIDES}
    fields = {f.name for f in dataclasses.fields(ChromaParams)}
    if "txt_ids_dims" in fields:  # 0.33 (detection fills these)
        config["txt_ids_dims"] = []
    if "vec_in_dim" in fields:
        config["vec_in_dim"] = None
    return config


def to_file_keys(state_dict: dict) -> dict:
    """ComfyUI 0.33's RMSNorm names (``.weight``) back to the checkpoint names (``.scale``) that 0.3.75's
    detection and both versions' loaders read (q/k norms and the approximator's norms)."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith(("query_norm.weight", "key_norm.weight")) or (
                key.startswith("distilled_guidance_layer.norms.") and key.endswith(".weight")):
            key = key[: -len(".weight")] + ".scale"
        out[key] = value
    return out


def _meta_state_dict() -> dict:
    import comfy.supported_models as sm
    config = sm.Chroma(_unet_config())
    config.set_inference_dtype(torch.float32, None)
    return to_file_keys(config.get_model({}, device=torch.device("meta")).diffusion_model.state_dict())


def build_chroma(path, name: str | None = None) -> dict:
    return build_detected_dit(path, _meta_state_dict(), KIND, SEED, VERSION_KEY, TINY_OVERRIDES)


def verify_chroma(path, full: bool = False) -> dict:
    return verify_detected_dit(path, KIND, VERSION_KEY, full)


def random_conditioning(tokens: int = 8, seed: int = 0) -> list:
    """CONDITIONING standing in for Chroma's T5-XXL: [[context (1, tokens, TEXT_WIDTH), {"pooled_output": None}]] (as the encoder gives: no pooled vector)."""
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, TEXT_WIDTH, generator=gen), {"pooled_output": None}]]


def chroma_artifacts() -> dict:
    """ARTIFACTS entry (subfolder, builder, verifier) of the tiny Chroma."""
    return {CHROMA: (DIFFUSION_MODELS, build_chroma, verify_chroma)}


def bench_family():
    """The tiny Chroma for ``scripts/bench_families.py --family chroma``."""
    from scripts.bench_families import Family
    from .env import DEFAULT_BASE
    path = ensure_built(DEFAULT_BASE / "models" / DIFFUSION_MODELS / CHROMA, verify_chroma, build_chroma)
    return Family("Chroma", load_tiny_dit(path), lambda tokens, seed: random_conditioning(tokens, seed))
