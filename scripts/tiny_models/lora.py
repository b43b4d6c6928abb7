"""A seeded random LoRA for the tiny SD1.5 with real (kohya / diffusers-style) key names.

Names are taken from ComfyUI's own LoRA key maps (comfy.lora.model_lora_keys_unet/_clip) for the
tiny UNet and CLIP-L, so every key in the file is one core LoraLoader applies.
"""
from __future__ import annotations

import re

import torch

from .checkpoints import TINY_SD15_UNET, meta_base_model, meta_clip
from .fill import TINY_VERSION, SeededFiller

LORA_RANK = 4
UNET_ATTN = re.compile(r"^lora_unet_(down_blocks|mid_block|up_blocks)_.*_attn[12]_(to_q|to_k|to_v|to_out_0)$")
TE_ATTN = re.compile(r"^lora_te_text_model_encoder_layers_[01]_self_attn_(q|k|v|out)_proj$")


def sd15_lora_targets() -> dict[str, str]:
    """lora key prefix -> model weight key (diffusion_model.* / clip_l.*) for the tiny SD1.5."""
    import comfy.lora
    model = meta_base_model("SD15", TINY_SD15_UNET)
    clip = meta_clip(model.model_config)
    unet_map = comfy.lora.model_lora_keys_unet(model, {})
    te_map = comfy.lora.model_lora_keys_clip(clip, {})
    targets = {k: v for k, v in unet_map.items() if UNET_ATTN.match(k)}
    targets.update({k: v for k, v in te_map.items() if TE_ATTN.match(k)})
    shapes = {**{"diffusion_model." + k: v.shape for k, v in model.diffusion_model.state_dict().items()},
              **{k: v.shape for k, v in clip.state_dict().items()}}
    return {k: (v, tuple(shapes[v])) for k, v in sorted(targets.items())}


def sd15_lora_state_dict(seed: int = 4242, rank: int = LORA_RANK, std: float = 0.1) -> dict:
    filler = SeededFiller(seed, torch.float16)
    sd = {}
    for prefix, (_, shape) in sd15_lora_targets().items():
        out_f, in_f = shape[0], shape[1]
        sd[f"{prefix}.lora_down.weight"] = filler.normal((rank, in_f), std)
        sd[f"{prefix}.lora_up.weight"] = filler.normal((out_f, rank), std)
        sd[f"{prefix}.alpha"] = torch.tensor(float(rank), dtype=torch.float16)
    return sd


def build_sd15_lora(path) -> dict:
    import comfy.utils
    from pathlib import Path
    path = Path(path)
    sd = sd15_lora_state_dict()
    tmp = path.with_suffix(".tmp")
    comfy.utils.save_torch_file(sd, str(tmp), metadata={"atelier_tiny": TINY_VERSION, "ss_network_dim": str(LORA_RANK)})
    tmp.replace(path)
    n_unet = sum(1 for k in sd if k.startswith("lora_unet_") and k.endswith(".alpha"))
    n_te = sum(1 for k in sd if k.startswith("lora_te_") and k.endswith(".alpha"))
    return {"unet_modules": n_unet, "te_modules": n_te}
