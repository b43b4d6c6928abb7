"""A seeded random-weight CLIP vision model that core CLIPVisionLoader accepts.

comfy/clip_vision.py picks a fixed JSON config from the keys it finds, so no smaller model than its
smallest config loads: ViT-L/14 at 224 px (24 layers of width 1024, projection 768; chosen when
layer 22 exists, layer 30 does not and there are 257 positions). Built from ComfyUI's own
CLIPVisionModelProjection on the meta device (exact key names) and saved in fp16 (~0.6 GB).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .fill import TINY_VERSION, SeededFiller

CLIP_VISION = "atelier_tiny_clip_vision_vitl.safetensors"
SEED = 2201


def vitl_config() -> dict:
    import comfy.clip_vision
    path = Path(comfy.clip_vision.__file__).parent / "clip_vision_config_vitl.json"
    return json.loads(path.read_text())


def clip_vision_state_dict(seed: int = SEED, dtype=torch.float16) -> dict:
    import comfy.clip_model
    import comfy.ops
    with torch.device("meta"):
        model = comfy.clip_model.CLIPVisionModelProjection(vitl_config(), dtype, torch.device("meta"),
                                                           comfy.ops.manual_cast)
    return {k: v.contiguous() for k, v in SeededFiller(seed, dtype).fill(model.state_dict()).items()}


def build_clip_vision(path) -> dict:
    import comfy.utils
    path = Path(path)
    sd = clip_vision_state_dict()
    tmp = path.with_suffix(".tmp")
    comfy.utils.save_torch_file(sd, str(tmp), metadata={"atelier_tiny": TINY_VERSION, "kind": "clip_vision_vitl"})
    tmp.replace(path)
    return {"params": sum(v.numel() for v in sd.values())}


def verify_clip_vision(path, full: bool = False) -> dict:
    """Header check; ``full`` loads it through comfy.clip_vision.load and encodes one image."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    if "vision_model.encoder.layers.22.layer_norm1.weight" not in keys or "visual_projection.weight" not in keys:
        raise ValueError(f"{path}: not a ViT-L CLIP vision layout")
    info = {"keys": len(keys)}
    if full:
        import comfy.clip_vision
        model = comfy.clip_vision.load(str(path))
        out = model.encode_image(torch.rand(1, 64, 64, 3))
        embeds, hidden = out["image_embeds"], out["penultimate_hidden_states"]
        if tuple(embeds.shape) != (1, 768) or tuple(hidden.shape) != (1, 257, 1024) or not torch.isfinite(hidden).all():
            raise ValueError(f"{path}: encode gave {tuple(embeds.shape)} / {tuple(hidden.shape)}")
        info["image_embeds"] = tuple(embeds.shape)
    return info
