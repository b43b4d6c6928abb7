"""Flux.1 (dev, schnell, Kontext and fine-tunes): comfy/ldm/flux/model.py, ``global_modulation`` off.

``double`` blocks (separate text and image streams, one joint attention) then ``single`` blocks
(one stream); the forward writes ``block_type`` and ``block_index`` into the transformer_options
every attention call receives. Layer keys ``("double", i)`` / ``("single", i)``, named
``double.3`` / ``single.10``. q/k/v arrive as (batch, heads, tokens, dim) after RoPE, tokens
``[T5 text | image | Kontext reference latents]``.
"""
from __future__ import annotations

from ..core.family import ModelFamily, patch_grid
from ..core.tokens import TokenLayout

try:  # guarded: the maths in this package imports without ComfyUI
    from comfy.ldm.flux.model import Flux as FluxModel
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    FluxModel = None


def flux_params(diffusion_model):
    return getattr(diffusion_model, "params", None)


class FluxFamily(ModelFamily):
    name = "Flux.1"
    block_kinds = ("double", "single")

    def matches(self, diffusion_model) -> bool:
        if FluxModel is None or not isinstance(diffusion_model, FluxModel):
            return False
        return not getattr(flux_params(diffusion_model), "global_modulation", False)

    def layer_keys(self, diffusion_model) -> tuple:
        return (tuple(("double", i) for i in range(len(diffusion_model.double_blocks)))
                + tuple(("single", i) for i in range(len(diffusion_model.single_blocks))))

    def context_width(self, diffusion_model) -> int:
        return flux_params(diffusion_model).context_in_dim

    def token_layout(self, diffusion_model, x, context, model_kwargs: dict) -> TokenLayout:
        grid = patch_grid(x, diffusion_model.patch_size)
        return TokenLayout(text=int(context.shape[1]), image=grid[0] * grid[1], grid=grid)


FAMILY = FluxFamily()
