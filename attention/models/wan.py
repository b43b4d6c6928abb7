"""Wan 2.1 / 2.2 (text-to-video, image-to-video, the 1.3B, 5B and 14B layouts; also single stills):
comfy/ldm/wan/model.py, ComfyUI's ``WanModel``.

Each block runs self-attention over the video tokens, then (Wan 2.1 image-to-video only) a cross-attention
to the CLIP-vision tokens, then a cross-attention to the prompt, each an ``optimized_attention`` call of
(batch, tokens, heads * dim), q/k RMS-normed and (self-attention) RoPE-rotated before it: a "separate"
family. Layers are the blocks, ``("block", i)``, named ``block.12``; ComfyUI 0.33.0 writes a block index,
0.3.75 does not, so each evaluation the adapter marks the blocks through ``patches_replace["dit"]`` (as for
SD3), and within a block the calls come in that fixed order.

Tokens: the latent [B, C, frames, H, W] cut into 1 x 2 x 2 patches, frame-major and row-major
(``(f * h + y) * w + x``); a still is one frame. The prompt reaches the cross-attention through the model's
``text_embedding`` (a token-wise MLP), so regional and aesthetic prompts ride after the prompt in the
context and that same path makes their keys and values. Wan Fun's prepended reference latents and
Bernini's appended context latents are not placed on the region grid (untested here).
"""
from __future__ import annotations

from ..core.family import ModelFamily, mark_dit_blocks
from ..core.tokens import TokenLayout

try:  # guarded: the maths in this package imports without ComfyUI
    from comfy.ldm.wan.model import WanModel
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    WanModel = None

BLOCK_KEY = "attention_atelier.block"  # set in a block's transformer_options by the marker


def grid_of(x, patch=(1, 2, 2)) -> tuple:
    """(frames, h, w) of the tokens of latent ``x`` (B, C, frames, H, W) cut into ``patch``es (padded)."""
    return tuple(-(-size // step) for size, step in zip(x.shape[-3:], patch))


class WanFamily(ModelFamily):
    name = "Wan 2.1 / 2.2"
    kind = "separate"
    block_kinds = ("block",)

    def matches(self, diffusion_model) -> bool:
        return WanModel is not None and type(diffusion_model) is WanModel  # variants change the forward

    def layer_keys(self, diffusion_model) -> tuple:
        return tuple(("block", i) for i in range(len(diffusion_model.blocks)))

    def layer_key(self, transformer_options: dict):
        index = transformer_options.get(BLOCK_KEY)
        return ("block", index) if index is not None else None

    def mark_blocks(self, transformer_options: dict, diffusion_model):
        mark_dit_blocks(transformer_options, "double_block", len(diffusion_model.blocks), BLOCK_KEY)

    def separate_slot(self, transformer_options: dict, q, k, seen: list, diffusion_model=None):
        image_to_video = getattr(diffusion_model, "img_emb", None) is not None  # a CLIP-vision call between
        order = ("attn1", None, "attn2") if image_to_video else ("attn1", "attn2")
        slot = order[len(seen)] if len(seen) < len(order) else None
        if slot == "attn1" and k.shape[-2] != q.shape[-2]:
            return None
        return slot

    def context_width(self, diffusion_model) -> int:
        return diffusion_model.text_embedding[0].in_features

    def token_layout(self, diffusion_model, x, context, model_kwargs: dict) -> TokenLayout:
        frames, h, w = grid_of(x, tuple(diffusion_model.patch_size))
        return TokenLayout(text=int(context.shape[1]), image=frames * h * w, grid=(frames, h, w))


FAMILY = WanFamily()
