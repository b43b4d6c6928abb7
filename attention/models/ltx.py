"""LTX-Video (0.9.x) and LTX-2.x (audio + video): comfy/ldm/lightricks/model.py ``LTXVModel`` and (ComfyUI
0.33) av_model.py ``LTXAVModel``.

Each block's ``CrossAttention`` modules make separate ``optimized_attention`` calls of (batch, tokens,
heads * dim), q/k RMS-normed and RoPE-rotated before them: video self-attention (``attn1``), then video
cross-attention to the prompt (``attn2``; LTX-Video masks the T5 prompt's padding); LTX-2 adds audio
self- and cross-attention and the audio <-> video cross-attentions, whose queries have the audio width:
those are never touched (video tokens only). A "separate" family: layers are the blocks, ``("block", i)``,
named ``block.20``, marked through ``patches_replace["dit"]`` (no version writes a block index); within a
block the video calls are told from the audio ones by their width, self from cross by their keys. A
block under Spatio-Temporal Guidance's skip makes no self-attention call.

Tokens: the video latent [B, 128, frames, H/32, W/32], patch 1, frame-major and row-major; guide frames
(LTXVAddGuide) follow the grid and lie outside every region. LTX-Video's prompt reaches the
cross-attention through ``caption_projection`` (token-wise), so regional and aesthetic prompts ride after
the prompt in the context with the padding mask extended over them. LTX-2's prompt features are prepared
per sampling run by connectors shared with the audio stream: regional attention and aesthetic mixing are
refused there, as is inversion (its latent carries the audio with the video).
"""
from __future__ import annotations

import torch

from ..core.family import INVERSION, ModelFamily, mark_dit_blocks
from ..core.tokens import TokenLayout

try:  # guarded: the maths in this package imports without ComfyUI
    from comfy.ldm.lightricks.model import LTXVModel
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    LTXVModel = None

try:  # LTX-2 exists in ComfyUI 0.33 only
    from comfy.ldm.lightricks.av_model import LTXAVModel
except ImportError:  # pragma: no cover - ComfyUI versions without it
    LTXAVModel = None

BLOCK_KEY = "attention_atelier.block"  # set in a block's transformer_options by the marker
LTX2_TEXT = ("LTX-2 prepares its prompt features once per sampling run (text connectors shared with the "
             "audio stream), which a local or aesthetic prompt would need too: not supported yet")
LTX2_AUDIO = "an LTX-2 clip's latent carries its audio with the video: not supported yet"


class LTXVideoFamily(ModelFamily):
    name = "LTX-Video"
    kind = "separate"
    block_kinds = ("block",)

    def matches(self, diffusion_model) -> bool:
        return LTXVModel is not None and isinstance(diffusion_model, LTXVModel) and not (
            LTXAVModel is not None and isinstance(diffusion_model, LTXAVModel))

    def layer_keys(self, diffusion_model) -> tuple:
        return tuple(("block", i) for i in range(len(diffusion_model.transformer_blocks)))

    def layer_key(self, transformer_options: dict):
        index = transformer_options.get(BLOCK_KEY)
        return ("block", index) if index is not None else None

    def mark_blocks(self, transformer_options: dict, diffusion_model):
        mark_dit_blocks(transformer_options, "double_block", len(diffusion_model.transformer_blocks), BLOCK_KEY)

    def separate_slot(self, transformer_options: dict, q, k, seen: list, diffusion_model=None):
        video = diffusion_model.inner_dim
        if q.shape[-1] != video:  # an audio-side call (LTX-2): never touched
            return None
        earlier = [s for s in seen if s[2] == video]
        if not earlier and k.shape[-2] == q.shape[-2] and not transformer_options.get("stg_skip_self_attn"):
            return "attn1"
        return "attn2" if k.shape[-2] != q.shape[-2] or earlier else None

    def context_width(self, diffusion_model) -> int:
        width = getattr(diffusion_model, "caption_channels", None)  # ComfyUI 0.33; 0.3.75: the projection's input
        return width if width is not None else diffusion_model.caption_projection.linear_1.in_features

    def token_layout(self, diffusion_model, x, context, model_kwargs: dict) -> TokenLayout:
        shapes = model_kwargs.get("latent_shapes")
        frames, h, w = (tuple(shapes[0][-3:]) if shapes else tuple(x.shape[-3:]))  # patch 1 x 1 x 1
        return TokenLayout(text=int(context.shape[1]), image=frames * h * w, grid=(frames, h, w))

    def stream_mask(self, attention_mask, stream_tokens: int):
        """T5's padding mask (1 = a token, or an additive 0 / -inf) extended over the streams: all tokens."""
        keep = attention_mask.new_zeros if torch.is_floating_point(attention_mask) else attention_mask.new_ones
        return torch.cat([attention_mask, keep(*attention_mask.shape[:-1], stream_tokens)], dim=-1)


class LTX2Family(LTXVideoFamily):
    """LTX-2.x: LTX-Video's blocks with audio streams beside the video ones."""

    name = "LTX-2"

    def matches(self, diffusion_model) -> bool:
        return LTXAVModel is not None and isinstance(diffusion_model, LTXAVModel)

    def refusal(self, feature: str, diffusion_model=None):
        if feature in ("regional attention", "aesthetic mixing"):
            return LTX2_TEXT
        if feature == INVERSION:
            return LTX2_AUDIO
        return None


LTX_VIDEO, LTX2 = LTXVideoFamily(), LTX2Family()
