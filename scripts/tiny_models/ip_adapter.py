"""Seeded random-weight IP-Adapter files in the standard key layout, for the tiny checkpoints.

Keys are those of the published files: ``image_proj.*`` (a base linear projection or a plus
Resampler) and ``ip_adapter.{1,3,5,...}.to_k_ip.weight`` / ``to_v_ip.weight``, one pair per
cross-attention layer in diffusers order (input blocks, output blocks, middle block). Widths follow
the tiny UNet's layers; the CLIP feature widths match the tiny CLIP vision model (ViT-L layout:
image_embeds 768, hidden states 1024).
"""
from __future__ import annotations

import math

import torch

from .fill import TINY_VERSION

CLIP_EMBEDS = 768  # ViT-L projection_dim: what base adapters read
CLIP_HIDDEN = 1024  # ViT-L hidden_size: what plus adapters read
SD15_BASE = "atelier_tiny_ip_adapter_sd15.safetensors"
SD15_PLUS = "atelier_tiny_ip_adapter_plus_sd15.safetensors"
SDXL_BASE = "atelier_tiny_ip_adapter_sdxl.safetensors"
# name -> (checkpoint kind, variant, context width, seed)
ADAPTERS = {
    SD15_BASE: ("SD15", "base", 768, 7101),
    SD15_PLUS: ("SD15", "plus", 768, 7102),
    SDXL_BASE: ("SDXL", "base", 2048, 7103),
}


class _Normals:
    def __init__(self, seed: int, dtype: torch.dtype):
        self.gen = torch.Generator().manual_seed(seed)
        self.dtype = dtype

    def __call__(self, *shape, std: float = 0.02) -> torch.Tensor:
        return (torch.randn(*shape, generator=self.gen) * std).to(self.dtype)


def _layer_norm(sd: dict, prefix: str, width: int, dtype):
    sd[f"{prefix}.weight"] = torch.ones(width, dtype=dtype)
    sd[f"{prefix}.bias"] = torch.zeros(width, dtype=dtype)


def adapter_state_dict(variant: str, context_dim: int, layer_widths: list[int], seed: int = 0,
                       embeds_dim: int = CLIP_EMBEDS, hidden_dim: int = CLIP_HIDDEN, tokens: int | None = None,
                       resampler_width: int = 768, depth: int = 4, dtype=torch.float16) -> dict:
    """A state dict with the published key names (base: 4 tokens; plus: 16 tokens, 64-wide heads)."""
    rand = _Normals(seed, dtype)
    sd = {}
    if variant == "base":
        tokens = tokens or 4
        sd["image_proj.proj.weight"] = rand(tokens * context_dim, embeds_dim)
        sd["image_proj.proj.bias"] = rand(tokens * context_dim)
        _layer_norm(sd, "image_proj.norm", context_dim, dtype)
    elif variant == "plus":
        tokens, width = tokens or 16, resampler_width
        sd["image_proj.latents"] = rand(1, tokens, width, std=1 / math.sqrt(width))
        sd["image_proj.proj_in.weight"] = rand(width, hidden_dim)
        sd["image_proj.proj_in.bias"] = rand(width)
        sd["image_proj.proj_out.weight"] = rand(context_dim, width)
        sd["image_proj.proj_out.bias"] = rand(context_dim)
        _layer_norm(sd, "image_proj.norm_out", context_dim, dtype)
        for i in range(depth):
            p = f"image_proj.layers.{i}"
            _layer_norm(sd, f"{p}.0.norm1", width, dtype)
            _layer_norm(sd, f"{p}.0.norm2", width, dtype)
            sd[f"{p}.0.to_q.weight"] = rand(width, width)
            sd[f"{p}.0.to_kv.weight"] = rand(2 * width, width)
            sd[f"{p}.0.to_out.weight"] = rand(width, width)
            _layer_norm(sd, f"{p}.1.0", width, dtype)
            sd[f"{p}.1.1.weight"] = rand(4 * width, width)
            sd[f"{p}.1.3.weight"] = rand(width, 4 * width)
    else:
        raise ValueError(f"unknown variant {variant}")
    for i, width in enumerate(layer_widths):
        sd[f"ip_adapter.{2 * i + 1}.to_k_ip.weight"] = rand(width, context_dim)
        sd[f"ip_adapter.{2 * i + 1}.to_v_ip.weight"] = rand(width, context_dim)
    return sd


def tiny_layer_widths(kind: str) -> list[int]:
    """Inner widths of the tiny UNet's cross-attention layers, in IP-Adapter file order."""
    from .checkpoints import TINY_SD15_UNET, TINY_SDXL_UNET, meta_base_model
    unet = meta_base_model(kind, TINY_SD15_UNET if kind == "SD15" else TINY_SDXL_UNET).diffusion_model
    found = [(name, m.to_k.out_features) for name, m in unet.named_modules() if name.endswith(".attn2")]
    order = ("input_blocks", "output_blocks", "middle_block")
    return [w for group in order for name, w in found if name.startswith(group)]


def build_ip_adapter(path) -> dict:
    import comfy.utils
    from pathlib import Path
    path = Path(path)
    kind, variant, context_dim, seed = ADAPTERS[path.name]
    sd = adapter_state_dict(variant, context_dim, tiny_layer_widths(kind), seed)
    tmp = path.with_suffix(".tmp")
    comfy.utils.save_torch_file(sd, str(tmp), metadata={"atelier_tiny": TINY_VERSION, "kind": kind, "variant": variant})
    tmp.replace(path)
    return {"kind": kind, "variant": variant, "layers": sum(1 for k in sd if k.endswith("to_k_ip.weight"))}


def verify_ip_adapter(path, full: bool = False) -> dict:
    """Header check: the projection of the intended variant and one key/value pair per tiny UNet layer."""
    from pathlib import Path
    from safetensors import safe_open
    kind, variant, context_dim, _ = ADAPTERS[Path(path).name]
    with safe_open(str(path), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    widths = tiny_layer_widths(kind)
    want = [(w, context_dim) for w in widths]
    got = [shapes.get(f"ip_adapter.{2 * i + 1}.to_k_ip.weight") for i in range(len(widths))]
    marker = "image_proj.latents" if variant == "plus" else "image_proj.proj.weight"
    if got != want or marker not in shapes:
        raise ValueError(f"{path}: not the expected {kind} {variant} adapter layout")
    return {"kind": kind, "variant": variant, "layers": len(widths)}


def creative_synth_artifacts() -> dict:
    """ARTIFACTS entries (subfolder, builder, verifier) for the IP-Adapters and the CLIP vision model."""
    from .clip_vision import CLIP_VISION, build_clip_vision, verify_clip_vision
    entries = {name: ("ipadapter", build_ip_adapter, verify_ip_adapter) for name in ADAPTERS}
    entries[CLIP_VISION] = ("clip_vision", build_clip_vision, verify_clip_vision)
    return entries
