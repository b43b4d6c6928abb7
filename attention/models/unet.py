"""SD1.x, SD2.x and SDXL: ComfyUI's UNetModel (comfy/ldm/modules/diffusionmodules/openaimodel.py).

Self-attention (``attn1``) and cross-attention (``attn2``) are separate calls of each
SpatialTransformer's transformer blocks; ComfyUI calls a ``patches_replace`` replace keyed
``(block, block_id, index)``, e.g. ``("input", 4, 1)``, named ``input.4.1`` in layer selections.
The one walk over the UNet's blocks (:func:`transformer_blocks`) serves the layer keys and every
method that needs a layer's own attention module.
"""
from __future__ import annotations

import weakref

from ..core.family import ModelFamily

try:  # guarded: the maths in this package imports without ComfyUI
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    UNetModel = None

_keys: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
BLOCK_KINDS = ("input", "middle", "output")


def blocks(diffusion_model, kind: str) -> list:
    """The UNet's blocks of one kind ("input", "middle", "output"), in execution order."""
    if kind == "middle":
        return [diffusion_model.middle_block]
    return list(diffusion_model.input_blocks if kind == "input" else diffusion_model.output_blocks)


def spatial_transformer(block):
    """The SpatialTransformer of a UNet block (the layer holding ``transformer_blocks``), or None."""
    return next((layer for layer in block if hasattr(layer, "transformer_blocks")), None)


def transformer_blocks(diffusion_model):
    """Every (layer key, transformer block) of the UNet, in execution order."""
    for kind in BLOCK_KINDS:
        for block_id, block in enumerate(blocks(diffusion_model, kind)):
            transformer = spatial_transformer(block)
            if transformer is not None:
                for index, transformer_block in enumerate(transformer.transformer_blocks):
                    yield (kind, block_id, index), transformer_block


class UNetFamily(ModelFamily):
    name = "SD1.x / SD2.x / SDXL (UNet)"
    kind = "unet"
    block_kinds = BLOCK_KINDS

    def matches(self, diffusion_model) -> bool:
        return UNetModel is not None and isinstance(diffusion_model, UNetModel)

    def layer_keys(self, diffusion_model) -> tuple:
        cached = _keys.get(diffusion_model)
        if cached is None:
            cached = _keys[diffusion_model] = tuple(key for key, _ in transformer_blocks(diffusion_model))
        return cached

    def layer_key(self, transformer_options: dict):
        return None  # the attention replace of each layer knows its own key

    def attention_module(self, diffusion_model, key: tuple, slot: str):
        """The CrossAttention module of layer (block, block_id, index), looked up in the model being run
        (a module another object patch put there included)."""
        kind, block_id, index = key
        transformer = spatial_transformer(blocks(diffusion_model, kind)[block_id])
        if transformer is None:
            raise LookupError(f"no transformer block at {key}")
        return getattr(transformer.transformer_blocks[index], slot)

    def context_width(self, diffusion_model) -> int:
        for _, block in transformer_blocks(diffusion_model):
            return block.attn2.to_k.in_features
        raise ValueError("this UNet has no cross-attention")


FAMILY = UNetFamily()
