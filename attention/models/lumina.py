"""Lumina 2 and Z-Image (Turbo, Base and fine-tunes): comfy/ldm/lumina/model.py, ComfyUI's ``NextDiT``.

Each evaluation runs ``context_refiner`` blocks on the caption tokens alone, then ``noise_refiner``
blocks on the image tokens alone, then the main ``layers`` on the joint sequence
``[caption | caption padding | image | image padding]``: Z-Image pads the caption and the image
tokens each to a multiple of ``pad_tokens_multiple`` (32) with learned pad tokens, Lumina 2 pads
nothing. Layer keys are the main layers, ``("layer", i)``, named ``layer.12``; the refiner blocks see
one kind of token only and no control acts on them.

How a call's layer is known: ComfyUI 0.33.0 writes ``block_type = "double"`` and ``block_index`` before
each main layer (and leaves them in the options, where a later evaluation's refiner calls would see
them); 0.3.75 writes nothing and its forward looks up no block replace. A main layer's call is the only
one that holds the whole ``[caption | image]`` sequence (a refiner call holds one part), so a call is a
layer only when its token count is the evaluation's whole layout; its index is the ``block_index``
where the model wrote one, else the number of such calls before it in this evaluation (the model runs
``self.layers`` in order, one attention call each).

q/k/v arrive as (batch, heads, tokens, dim) after RMS q/k-norm, RoPE and the repeat of grouped
key/value heads (Lumina 2). The caption's RoPE positions count up from 1 and the image sits after the
last caption position, so a text stream (regional or aesthetic prompt) goes BEFORE the prompt
(``TokenLayout.streams_first``), padded by a zero filler to a whole multiple of the padding, so that the
prompt, its padding and the image keep their relative positions and padding; in the context refiner
the streams are kept apart from the prompt like in the main layers.

Z-Image Omni (0.33.0, ``ref_latents``): captions, SigLIP tokens and the reference images' tokens all
come before the image; they count as the layout's text, so they are never styled or regioned;
regional and aesthetic prompts are left out of such a call (its captions follow the references').
"""
from __future__ import annotations

import torch

from ..core.family import ModelFamily, patch_grid
from ..core.tokens import TokenLayout

try:  # guarded: the maths in this package imports without ComfyUI
    from comfy.ldm.lumina.model import NextDiT
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    NextDiT = None


def padded(tokens: int, multiple) -> int:
    """``tokens`` rounded up to a whole ``multiple`` (as the model pads; None = no padding)."""
    return tokens + (-tokens) % multiple if multiple else tokens


def _grid_tokens(latent, patch: int) -> int:
    return (latent.shape[-2] // patch) * (latent.shape[-1] // patch)


def omni_prefix(diffusion_model, context, model_kwargs: dict) -> int:
    """Tokens before the image in an omni call (0.33.0, ``ref_latents`` given): every caption (one per
    reference, the prompt's, any left over), the SigLIP tokens where the model has them, the reference
    images' tokens, each padded as ``NextDiT.patchify_and_embed`` pads them."""
    multiple, patch = diffusion_model.pad_tokens_multiple, diffusion_model.patch_size
    refs = list(model_kwargs.get("ref_latents") or ())
    ref_contexts = list(model_kwargs.get("ref_contexts") or ())
    siglip = list(model_kwargs.get("siglip_feats") or ())
    has_siglip = getattr(diffusion_model, "siglip_embedder", None) is not None
    captions = [c.shape[1] for c in ref_contexts[:len(refs)]] + [0] * max(0, len(refs) - len(ref_contexts))
    captions += [int(context.shape[1])] + [c.shape[1] for c in ref_contexts[len(refs):]]
    total = sum(padded(n, multiple) if n else multiple for n in captions)
    if has_siglip:
        total += sum(padded(s.shape[1] * s.shape[2], multiple) for s in siglip[:len(refs)])
        total += multiple * (len(refs) - min(len(refs), len(siglip)) + 1)
    total += sum(padded(_grid_tokens(r, patch), multiple) for r in refs)
    return total


class LuminaFamily(ModelFamily):
    name = "Z-Image / Lumina 2"
    block_kinds = ("layer",)

    def matches(self, diffusion_model) -> bool:
        return NextDiT is not None and isinstance(diffusion_model, NextDiT)

    def layer_keys(self, diffusion_model) -> tuple:
        return tuple(("layer", i) for i in range(len(diffusion_model.layers)))

    def call_key(self, transformer_options: dict, diffusion_model, tokens: int, layout: TokenLayout,
                 joint_calls: int):
        if not layout.matches(tokens):  # a refiner block (caption or image tokens only)
            return None
        index = transformer_options.get("block_index")
        if transformer_options.get("block_type") == "double" and isinstance(index, int):  # ComfyUI >= 0.4
            return "layer", index
        return "layer", joint_calls  # 0.3.75: the main layers run in order, one call each

    def text_only_call(self, transformer_options: dict, diffusion_model, tokens: int, layout: TokenLayout,
                       calls: int) -> bool:
        # the context refiner runs first in every evaluation, one call per block, on the caption alone
        return calls < len(diffusion_model.context_refiner) and tokens == layout.text_total

    def stream_filler(self, diffusion_model, model_kwargs: dict, stream_tokens: int):
        if model_kwargs.get("ref_latents"):
            return None
        multiple = diffusion_model.pad_tokens_multiple
        return (-stream_tokens) % multiple if multiple else 0

    def carry_streams(self, transformer_options: dict, diffusion_model, context, parts: list):
        return torch.cat([*parts, context], dim=1)

    def stream_positions(self, q, k, layout: TokenLayout, diffusion_model):
        """The image padding tokens sit at RoPE position (0, 0, 0) whatever the caption's length, while
        the prompt and the image move up by the streams' length: their q/k (unrotated at 0) get the
        rotation of that length on the caption axis, so every distance is as without the streams. In
        the main layers and the noise refiner (the calls that hold the image padding)."""
        pad, shift = layout.extra, sum(layout.streams)
        if not pad or q.shape[-2] not in (layout.text_total + layout.image + pad, layout.image + pad):
            return q, k
        ids = torch.zeros(1, pad, 3, device=q.device)
        ids[..., 0] = shift
        freqs = diffusion_model.rope_embedder(ids).to(q.device)  # (1, 1, pad, dim / 2, 2, 2) rotations

        def rotate(x):  # as comfy.ldm.flux.math.apply_rope1, on (batch, heads, tokens, dim)
            pairs = x.to(freqs.dtype).reshape(*x.shape[:-1], -1, 1, 2)
            return (freqs[..., 0] * pairs[..., 0] + freqs[..., 1] * pairs[..., 1]).reshape(x.shape).to(x.dtype)
        return (torch.cat([q[..., :-pad, :], rotate(q[..., -pad:, :])], dim=-2),
                torch.cat([k[..., :-pad, :], rotate(k[..., -pad:, :])], dim=-2))

    def context_width(self, diffusion_model) -> int:
        return diffusion_model.cap_embedder[1].in_features

    def token_layout(self, diffusion_model, x, context, model_kwargs: dict) -> TokenLayout:
        multiple = diffusion_model.pad_tokens_multiple
        grid = patch_grid(x, diffusion_model.patch_size)
        image = grid[0] * grid[1]
        if model_kwargs.get("ref_latents"):
            text = omni_prefix(diffusion_model, context, model_kwargs)
        else:
            text = padded(int(context.shape[1]), multiple)
        return TokenLayout(text=text, image=image, grid=grid, extra=padded(image, multiple) - image,
                           streams_first=True)


FAMILY = LuminaFamily()
