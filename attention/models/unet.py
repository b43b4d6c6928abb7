"""SD1.x, SD2.x and SDXL: ComfyUI's UNetModel (comfy/ldm/modules/diffusionmodules/openaimodel.py).

Self-attention (``attn1``) and cross-attention (``attn2``) are separate calls of each
SpatialTransformer's transformer blocks; ComfyUI calls a ``patches_replace`` replace keyed
``(block, block_id, index)``, e.g. ``("input", 4, 1)``, named ``input.4.1`` in layer selections.
"""
from __future__ import annotations

import weakref

from ..core.family import ModelFamily

try:  # guarded: the maths in this package imports without ComfyUI
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    SpatialTransformer = UNetModel = None

_keys: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class UNetFamily(ModelFamily):
    name = "SD1.x / SD2.x / SDXL (UNet)"
    joint = False
    block_kinds = ("input", "middle", "output")

    def matches(self, diffusion_model) -> bool:
        return UNetModel is not None and isinstance(diffusion_model, UNetModel)

    def layer_keys(self, diffusion_model) -> tuple:
        cached = _keys.get(diffusion_model)
        if cached is not None:
            return cached
        keys = []
        groups = [("input", list(diffusion_model.input_blocks)), ("middle", [diffusion_model.middle_block]),
                  ("output", list(diffusion_model.output_blocks))]
        for kind, blocks in groups:
            for block_id, block in enumerate(blocks):
                for layer in block:
                    if isinstance(layer, SpatialTransformer):
                        keys.extend((kind, block_id, i) for i in range(len(layer.transformer_blocks)))
        _keys[diffusion_model] = tuple(keys)
        return tuple(keys)

    def layer_key(self, transformer_options: dict):
        return None  # the attention replace of each layer knows its own key

    def context_width(self, diffusion_model) -> int:
        return _first_cross_attention_width(diffusion_model)


def _first_cross_attention_width(diffusion_model) -> int:
    for module in diffusion_model.modules():
        attn2 = getattr(module, "attn2", None)
        if attn2 is not None:
            return attn2.to_k.in_features
    raise ValueError("this UNet has no cross-attention")


FAMILY = UNetFamily()
