"""SD3.x (MMDiT): comfy/ldm/modules/diffusionmodules/mmdit.py.

``joint`` blocks only, and the model writes no block index: each evaluation the adapter puts a
``patches_replace["dit"]`` block replace on every joint block (``core.family.BlockMarker``) that
writes :data:`JOINT_KEY` into a copy of the block's transformer_options and calls the block (or the
replace another pack had there). Layer keys ``("joint", i)``, named ``joint.5``. q and k arrive as
(batch, tokens, heads * dim), v as (batch, tokens, heads, dim); tokens ``[register | text | image]``.
SD3.5 Medium's extra image-only attention (MMDiT-X) is left alone.
"""
from __future__ import annotations

from ..core.family import ModelFamily, mark_dit_blocks, patch_grid
from ..core.tokens import TokenLayout

try:  # guarded: the maths in this package imports without ComfyUI
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    MMDiT = None

JOINT_KEY = "attention_atelier.joint_block"  # set in a joint block's transformer_options by the marker


class SD3Family(ModelFamily):
    name = "SD3.x"
    block_kinds = ("joint",)

    def matches(self, diffusion_model) -> bool:
        return MMDiT is not None and isinstance(diffusion_model, MMDiT)

    def layer_keys(self, diffusion_model) -> tuple:
        return tuple(("joint", i) for i in range(len(diffusion_model.joint_blocks)))

    def layer_key(self, transformer_options: dict):
        index = transformer_options.get(JOINT_KEY)
        return ("joint", index) if index is not None else None

    def mark_blocks(self, transformer_options: dict, diffusion_model):
        mark_dit_blocks(transformer_options, "double_block", len(diffusion_model.joint_blocks), JOINT_KEY)

    def context_width(self, diffusion_model) -> int:
        return diffusion_model.context_embedder.in_features

    def token_layout(self, diffusion_model, x, context, model_kwargs: dict) -> TokenLayout:
        grid = patch_grid(x, diffusion_model.patch_size)
        text = int(context.shape[1]) + int(getattr(diffusion_model, "register_length", 0) or 0)
        return TokenLayout(text=text, image=grid[0] * grid[1], grid=grid)


FAMILY = SD3Family()
