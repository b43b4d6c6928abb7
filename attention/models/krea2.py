"""Krea 2 (K2): comfy/ldm/krea2/model.py, ComfyUI's ``SingleStreamDiT`` (ComfyUI >= 0.24; absent from 0.3.75).

One stack of ``single`` blocks: the text and image tokens run as one sequence through every block,
and the forward writes ``block_type = "single"`` and ``block_index`` into the transformer_options each
block's attention receives (its ``attn1_patch`` / ``attn1_output_patch`` hooks run inside the block,
before and after the attention call, and keep running). Layer keys ``("single", i)``, named
``single.10``. q/k/v arrive as (batch, heads, tokens, dim) after per-head QK-norm, RoPE and the
repeat of the grouped key/value heads; tokens ``[text | image | reference latents]``: an edit or
image-style-reference conditioning's ``reference_latents`` follow the image (their own RoPE index,
with ``index_timestep_zero`` their own modulation); they are :attr:`TokenLayout.extra`, never styled
or regioned (their queries get the model's own attention).

The text path runs before the blocks, with no block index (no layer): ``txtfusion`` attends per text
token across the tapped Qwen3-VL layers (batch = rows * tokens, tokens = the 12 layers), then over
the text tokens (its refiner blocks, batch = rows, no mask). A regional or aesthetic prompt appended
to the context would meet the prompt in those refiner calls: they are text-only calls
(:meth:`Krea2Family.text_only_call`), in which the dispatcher lets the prompt and each stream attend to
themselves alone, as each would encoded on its own. (A ``post_input`` patch cannot carry the streams
instead: the forward takes the text length for its output slice before that patch runs.)
The layer-mixing calls are told from the refiner's by their place in the evaluation, not by tokens
(a prompt with its streams may be 12 tokens long, as many as the tapped layers).
"""
from __future__ import annotations


from ..core.family import ModelFamily, patch_grid
from ..core.tokens import TokenLayout

try:  # guarded: the maths in this package imports without ComfyUI, and 0.3.75 has no Krea 2
    from comfy.ldm.krea2.model import SingleStreamDiT
except ImportError:  # pragma: no cover - exercised only outside ComfyUI >= 0.24
    SingleStreamDiT = None


def reference_tokens(diffusion_model, model_kwargs: dict) -> int:
    """Tokens the model appends after the image for the conditioning's ``reference_latents``: a
    patch x patch grid per reference (a video reference's frames become batch rows, not tokens), only
    where a reference method is set (the model ignores reference latents without one)."""
    refs = model_kwargs.get("ref_latents") or ()
    if model_kwargs.get("ref_latents_method", diffusion_model.default_ref_method) is None:
        return 0
    return sum(h * w for h, w in (patch_grid(r, diffusion_model.patch) for r in refs))


class Krea2Family(ModelFamily):
    name = "Krea 2"
    block_kinds = ("single",)

    def matches(self, diffusion_model) -> bool:
        return SingleStreamDiT is not None and isinstance(diffusion_model, SingleStreamDiT)

    def layer_keys(self, diffusion_model) -> tuple:
        return tuple(("single", i) for i in range(len(diffusion_model.blocks)))

    def context_width(self, diffusion_model) -> int:
        # the conditioning carries the tapped text-encoder layers side by side: (B, T, layers * width)
        return diffusion_model.txtlayers * diffusion_model.txtdim

    def token_layout(self, diffusion_model, x, context, model_kwargs: dict) -> TokenLayout:
        grid = patch_grid(x, diffusion_model.patch)
        return TokenLayout(text=int(context.shape[1]), image=grid[0] * grid[1], grid=grid,
                           extra=reference_tokens(diffusion_model, model_kwargs))

    def text_only_call(self, transformer_options: dict, diffusion_model, tokens: int, layout: TokenLayout,
                       calls: int) -> bool:
        # txtfusion's calls come first in every evaluation: one per layer-mixing block (batch rows * text
        # tokens, over the tapped layers), then one per refiner block over [text | streams] (batch rows)
        fusion = diffusion_model.txtfusion
        first = len(fusion.layerwise_blocks)
        return (first <= calls < first + len(fusion.refiner_blocks) and tokens == layout.text_total
                and transformer_options.get("block_index") is None)


FAMILY = Krea2Family()
