"""Chroma (Chroma1-HD, Chroma1-Base and fine-tunes): comfy/ldm/chroma/model.py.

A Flux.1-schnell-derived model with its own ``nn.Module``: no pooled text vector and no per-block
modulation layers; one small network (the distilled guidance approximator) computes every block's
modulation from the timestep and a guidance value (0 in ComfyUI). Its blocks are Flux.1's
``DoubleStreamBlock`` / ``SingleStreamBlock``, and the forward writes ``block_type`` and
``block_index`` into the transformer_options of every attention call (0.3.75 and later). Layer keys
``("double", i)`` / ``("single", i)``, named ``double.3`` / ``single.10``; q/k/v arrive as
(batch, heads, tokens, dim) after RoPE.

Tokens of a call: ``[T5 text | image]`` (patch 2 on the 16-channel Flux latent). ComfyUI's Chroma text
encoder does not pad the prompt (PixArt T5 tokenizer, no padding), so the model runs unmasked and the
appended regional / aesthetic prompt streams work; when a conditioning does bring an attention mask
(``attention_mask`` with ``attention_mask_img_shape``), the dispatcher leaves the streams out of that
call and says so once (``dispatch.dit_override.with_streams``). Chroma Radiance (pixel space, NeRF
decoder) is not matched: untested here.
"""
from __future__ import annotations

from .flux import FluxFamily

try:  # guarded: the maths in this package imports without ComfyUI
    from comfy.ldm.chroma.model import Chroma as ChromaModel
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    ChromaModel = None

try:
    from comfy.ldm.chroma_radiance.model import ChromaRadiance
except ImportError:  # pragma: no cover - ComfyUI versions without it
    ChromaRadiance = None


class ChromaFamily(FluxFamily):
    """Flux.1's blocks, layer keys, text width and token layout in a model class of its own."""

    name = "Chroma"

    def matches(self, diffusion_model) -> bool:
        if ChromaModel is None or not isinstance(diffusion_model, ChromaModel):
            return False
        return ChromaRadiance is None or not isinstance(diffusion_model, ChromaRadiance)


FAMILY = ChromaFamily()
