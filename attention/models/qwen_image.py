"""Qwen-Image and Qwen-Image-Edit (2509, 2511): comfy/ldm/qwen_image/model.py
(``QwenImageTransformer2DModel``).

Every transformer block is an MMDiT double-stream block (separate text and image modulation and MLP,
one joint attention), and the forward writes ``block_type = "double"`` and ``block_index`` into the
transformer_options every attention call receives (ComfyUI 0.3.75 and 0.33.0 alike; the only
attention calls are the blocks'). Layer keys ``("double", i)``, named ``double.12``. q/k/v arrive as
(batch, heads, tokens, dim) after RoPE (``skip_reshape=True``), tokens
``[Qwen2.5-VL text | image | Edit's reference latents]``: ReferenceLatent / TextEncodeQwenImageEdit
give ``ref_latents`` that the model patchifies and appends after the generated latent's tokens; they
are :attr:`TokenLayout.extra` (never styled or regioned; the image grid is the generated latent's).
ComfyUI 0.33.0 passes an attention mask only where the prompt has padding tokens.
"""
from __future__ import annotations

from ..core.family import ModelFamily, patch_grid
from ..core.tokens import TokenLayout

try:  # guarded: the maths in this package imports without ComfyUI
    from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    QwenImageTransformer2DModel = None


def latent_tokens(latent, patch: int) -> int:
    """Tokens the model makes of a latent [B, C, (T,) H, W]: every frame cut into patch x patch."""
    h, w = patch_grid(latent, patch)
    frames = latent.shape[-3] if latent.ndim == 5 else 1
    return frames * h * w


class QwenImageFamily(ModelFamily):
    name = "Qwen-Image"
    block_kinds = ("double",)

    def matches(self, diffusion_model) -> bool:
        return QwenImageTransformer2DModel is not None and isinstance(diffusion_model, QwenImageTransformer2DModel)

    def layer_keys(self, diffusion_model) -> tuple:
        return tuple(("double", i) for i in range(len(diffusion_model.transformer_blocks)))

    def context_width(self, diffusion_model) -> int:
        return diffusion_model.txt_in.in_features

    def token_layout(self, diffusion_model, x, context, model_kwargs: dict) -> TokenLayout:
        patch = diffusion_model.patch_size
        refs = model_kwargs.get("ref_latents") or ()
        extra = sum(latent_tokens(r, patch) for r in refs)
        h, w = patch_grid(x, patch)
        frames = latent_tokens(x, patch) // (h * w)  # > 1 only for Qwen-Image-Layered (0.33.0): frames stacked
        return TokenLayout(text=int(context.shape[1]), image=frames * h * w, grid=(frames * h, w), extra=extra)


FAMILY = QwenImageFamily()
