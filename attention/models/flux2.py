"""FLUX.2 (dev, klein 4B / 9B and fine-tunes): comfy/ldm/flux/model.py with ``global_modulation`` on.

ComfyUI runs FLUX.2 with the Flux.1 class (``model_base.Flux2``, ``supported_models.Flux2``): one
modulation shared by all blocks instead of one per block, SiLU-gated MLPs, no biases, 4 RoPE axes,
patch size 1 on the 128-channel FLUX.2 VAE latent (32 channels x 2 x 2 packed by the VAE). Its blocks
are Flux.1's: ``double`` blocks, then ``single`` blocks, and the forward writes ``block_type`` and
``block_index`` into the transformer_options of every attention call (0.3.75 and later), so layer
keys are ``("double", i)`` / ``("single", i)``, named ``double.3`` / ``single.10``; the model makes no
other attention call. q/k/v arrive as (batch, heads, tokens, dim) after RoPE.

Tokens of a call: ``[text | image | reference images]``. ``model_base.Flux2`` pads the prompt at the
front to 512 tokens (zeros), so ``text`` is the context length the model is given (512 for a short
prompt); the text width is the encoder's (dev: Mistral Small 3 hidden states of 3 layers, 15360;
klein: Qwen3, 7680 / 12288), read from the model (``context_in_dim``). Reference images
(ReferenceLatent, an edit's input images) are patchified and appended after the image tokens: they
are the layout's declared ``extra`` tokens: their queries leave every control's chain (their outputs
are the model's own attention), and as keys they keep the model's own keys and values.
"""
from __future__ import annotations

from ..core.family import patch_grid
from ..core.tokens import TokenLayout
from .flux import FluxFamily, FluxModel, flux_params


def reference_tokens(diffusion_model, model_kwargs: dict) -> int:
    """Tokens the model appends after the image for the reference latents of this call (each padded to
    whole patches and patchified as the image is)."""
    total = 0
    for latent in model_kwargs.get("ref_latents") or ():
        h, w = patch_grid(latent, diffusion_model.patch_size)
        total += h * w
    return total


class Flux2Family(FluxFamily):
    name = "FLUX.2"

    def matches(self, diffusion_model) -> bool:
        if FluxModel is None or not isinstance(diffusion_model, FluxModel):
            return False
        return bool(getattr(flux_params(diffusion_model), "global_modulation", False))

    def token_layout(self, diffusion_model, x, context, model_kwargs: dict) -> TokenLayout:
        grid = patch_grid(x, diffusion_model.patch_size)
        return TokenLayout(text=int(context.shape[1]), image=grid[0] * grid[1], grid=grid,
                           extra=reference_tokens(diffusion_model, model_kwargs))


FAMILY = Flux2Family()
