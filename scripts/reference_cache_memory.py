"""Memory of reference-image mode's cache per sampling step, from the layer shapes of the real UNets.

    .venv/bin/python scripts/reference_cache_memory.py        # SD1.5 512 px and SDXL 1024 px

The full-size SD1.5 / SDXL UNets are built by ComfyUI's own classes on the meta device (no weights, no
memory) and run once on meta tensors with hooks on every self-attention (attn1) and GroupNorm. Per chunk
and model call the cache keeps row 0's q, k and v at each self-attention layer a control reads row 0 at
(tokens x inner width each, in the model's dtype) and, with GroupNorm sharing or ArtBN on GroupNorms,
2 x (groups + channels) float32 statistics at each GroupNorm. At cfg > 1 a step is one call of two chunks.
``bench_inversion.py`` checks this count against the bytes a real cache holds for the tiny model.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MIB = 2 ** 20


def layer_shapes(kind: str, unet_config: dict, size: int):
    """([(tokens, inner width)] of every attn1, [(groups, channels)] of every GroupNorm call) of one
    UNet forward at ``size`` px."""
    import torch
    import comfy.ldm.modules.attention as attention
    from comfy.ldm.modules.attention import BasicTransformerBlock
    from scripts.tiny_models.checkpoints import meta_base_model
    base = meta_base_model(kind, unet_config)
    model = base.diffusion_model
    attn, norms, hooks = [], [], []
    for module in model.modules():
        if isinstance(module, BasicTransformerBlock):
            hooks.append(module.attn1.register_forward_pre_hook(
                lambda m, args: attn.append((args[0].shape[1], m.to_q.out_features))))
        elif isinstance(module, torch.nn.GroupNorm):
            hooks.append(module.register_forward_pre_hook(
                lambda m, args: norms.append((m.num_groups, args[0].shape[1]))))
    side = size // 8
    meta = dict(device="meta", dtype=torch.float16)
    context_dim = unet_config["context_dim"]
    y = torch.empty(1, unet_config["adm_in_channels"], **meta) if unet_config.get("adm_in_channels") else None
    chosen = attention.optimized_attention
    attention.optimized_attention = attention.attention_pytorch  # others query free memory of the device
    try:
        with torch.no_grad():
            model(torch.empty(1, 4, side, side, **meta), torch.ones(1, device="meta"),
                  context=torch.empty(1, 77, context_dim, **meta), y=y)
    finally:
        attention.optimized_attention = chosen
        for hook in hooks:
            hook.remove()
    return attn, norms


def bytes_per_step(attn, norms, chunks: int = 2, itemsize: int = 2, with_norms: bool = False) -> int:
    """Cache bytes of one model call of ``chunks`` chunks (attention in the model's dtype, statistics float32)."""
    total = sum(3 * tokens * width * itemsize for tokens, width in attn)
    if with_norms:
        total += sum(2 * (groups + channels) * 4 for groups, channels in norms)
    return chunks * total


def report():
    """Print the cache's memory per step for SD1.5 512 px and SDXL 1024 px (fp16, cfg > 1)."""
    from scripts.bench_common import FULL_SD15_UNET, FULL_SDXL_UNET
    print("  reference cache per sampling step (cfg > 1: cond + uncond chunks; fp16 q/k/v of row 0 at every "
          "self-attention layer, real layer shapes on the meta device):")
    for name, kind, config, size in (("SD1.5", "SD15", FULL_SD15_UNET, 512), ("SDXL", "SDXL", FULL_SDXL_UNET, 1024)):
        attn, norms = layer_shapes(kind, config, size)
        plain = bytes_per_step(attn, norms)
        shared = bytes_per_step(attn, norms, with_norms=True)
        print(f"    {name} {size} px: {len(attn)} self-attention layers, {len(norms)} GroupNorms: "
              f"{plain / MIB:7.1f} MiB per step ({shared / MIB:7.1f} MiB with GroupNorm sharing), "
              f"{20 * plain / 2 ** 30:5.2f} GiB for 20 steps; cfg 1: half")


if __name__ == "__main__":
    from scripts.tiny_models.env import bootstrap
    bootstrap(cpu=True)
    report()
