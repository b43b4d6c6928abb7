"""Decoupled image cross-attention (IP-Adapter, Ye et al. arXiv 2308.06721; CreativeSynth's image branch).

At every selected cross-attention layer, for each row of the batch::

    Z = softmax(Q K_t^T / sqrt(d)) V_t  +  w * softmax(Q K_i^T / sqrt(d)) V_i
    K_i = c W'_k^T        V_i = c W'_v^T

per head, with K_t/V_t the text keys/values (whatever the rest of the chain computes), W'_k/W'_v the
adapter's to_k_ip/to_v_ip of that layer, and c the row's image tokens: the projection of the CLIP
features of the image for rows of cond chunks, the projection of all-zero features (IP-Adapter's
negative) for rows of uncond chunks. One image conditions every row; N images and N latent rows give
row i image i; otherwise the tokens of all images are joined (every row sees every image).
In reference-image mode (AtelierStyleAligned with a trajectory) the artwork row that mode puts first
in every chunk gets no image branch: it keeps the features of its own inversion.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .core.chain import default_attention
from .core.controls import AttentionControl
from .core.errors import AtelierError
from .core.keys import REFERENCE_INSERTED_KEY
from .core.layers import LayerSelection
from .core.rows import ChunkLayout
from .core.schedule import Window
from .ip_adapter_file import ImageAdapter, adapter_family


def image_attention(q, k, v, call):
    """Attention of q over the image keys/values: ComfyUI's own attention (tests may swap it)."""
    return default_attention(q, k, v, call)


def adapter_layer_order(layer_keys: tuple) -> tuple:
    """Model layer keys in the order an IP-Adapter file numbers its layers: input, output, middle.

    (diffusers registers a UNet's down_blocks, then up_blocks, then mid_block.)
    """
    return tuple(k for kind in ("input", "output", "middle") for k in layer_keys if k[0] == kind)


def joined_tokens(cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor, rows: int):
    """(cond, uncond) token tables with equal token counts, for ``rows`` latent rows per chunk."""
    images = cond_tokens.shape[0]
    if images == 1 or images == rows:
        return cond_tokens, uncond_tokens
    # Join every image's tokens; the negative is repeated to the same length, which leaves its
    # attention unchanged (duplicated keys with duplicated values).
    return cond_tokens.reshape(1, -1, cond_tokens.shape[-1]), uncond_tokens.repeat(1, images, 1)


def rows_of_tokens(cond: torch.Tensor, uncond: torch.Tensor, layout: ChunkLayout,
                   reference_first: bool = False) -> torch.Tensor:
    """(batch, T, D): each row's image keys (or values), by the kind of its chunk. With
    ``reference_first`` row 0 of each chunk is an inserted reference row (given a placeholder)."""
    blocks = []
    for kind in layout.cond_or_uncond:
        table = cond if kind == 0 else uncond
        if reference_first:
            blocks.append(table[:1])
        blocks.append(table.expand(layout.rows - reference_first, -1, -1))
    return torch.cat(blocks, dim=0)


def inserted_reference(call) -> bool:
    """Whether reference-image mode put its artwork row first in every chunk of this model call
    (its APPLY_MODEL wrapper marks the calls it inserts a row into)."""
    return bool(call.extra_options.get(REFERENCE_INSERTED_KEY))


@dataclass(frozen=True, eq=False)
class ImagePromptControl(AttentionControl):
    adapter: ImageAdapter = None
    cond_tokens: torch.Tensor = None  # (images, T, context_dim), float32
    uncond_tokens: torch.Tensor = None  # (1, T, context_dim), float32
    layer_index: dict = field(default_factory=dict)  # model layer key -> adapter layer
    weight: float = 1.0
    layers: LayerSelection = LayerSelection()
    window: Window = Window()
    slot: str = "attn2"
    reads_reference_row = False  # each row alone (see AttentionControl)
    feature = "image prompt / CreativeSynth"
    named_in_errors = "image prompts (IP-Adapter)"
    _projected: dict = field(default_factory=dict, repr=False)  # (layer, rows, device, dtype) -> K/V tables

    def keys_values(self, index: int, layout: ChunkLayout, like: torch.Tensor, reference_first: bool = False):
        """Per-row image keys and values (batch, T, inner) for adapter layer ``index``."""
        user_rows = layout.rows - reference_first
        cache_key = (index, user_rows, like.device, like.dtype)
        tables = self._projected.get(cache_key)
        if tables is None:
            cond, uncond = joined_tokens(self.cond_tokens, self.uncond_tokens, user_rows)
            compute = torch.promote_types(cond.dtype, torch.float32)  # file weights are often fp16
            tables = []
            for weight in (self.adapter.to_k[index], self.adapter.to_v[index]):
                w = weight.to(like.device, compute)
                tables.append(tuple((t.to(like.device, compute) @ w.T).to(like.dtype) for t in (cond, uncond)))
            self._projected[cache_key] = tables
        (k_cond, k_uncond), (v_cond, v_uncond) = tables
        return (rows_of_tokens(k_cond, k_uncond, layout, reference_first),
                rows_of_tokens(v_cond, v_uncond, layout, reference_first))

    def attend(self, next_attention, q, k, v, call, mask=None):
        out = next_attention(q, k, v, call, mask)
        index = self.layer_index.get(call.key)
        if index is None or self.weight == 0.0:
            return out
        layout = call.layout(q.shape[0])
        reference_first = inserted_reference(call) and layout.rows > 1
        k_image, v_image = self.keys_values(index, layout, q, reference_first)
        image = image_attention(q, k_image, v_image, call)
        if not reference_first:
            return out + self.weight * image
        row_weight = torch.full((q.shape[0], 1, 1), self.weight, dtype=out.dtype, device=out.device)
        row_weight[layout.reference_rows()] = 0.0
        return out + row_weight * image


def map_adapter_layers(adapter: ImageAdapter, modules: dict, node: str, input_name: str = "ipadapter") -> dict:
    """Layer key -> adapter layer index, after checking the adapter fits the model whose cross-attention
    modules are ``modules`` (layer key -> attn2 module, in execution order)."""
    keys = tuple(modules)
    context_dim = next(iter(modules.values())).to_k.in_features if modules else 0
    if context_dim != adapter.context_dim:
        raise AtelierError(node, input_name,
                           f"this is a {adapter.family} IP-Adapter (context width {adapter.context_dim}) but "
                           f"the model is {adapter_family(context_dim)} (context width {context_dim}).",
                           f"load an IP-Adapter made for {adapter_family(context_dim)}, or a "
                           f"{adapter.family} checkpoint.")
    order = adapter_layer_order(keys)
    if len(order) != adapter.layer_count:
        raise AtelierError(node, input_name,
                           f"the adapter has {adapter.layer_count} cross-attention layers but the model has "
                           f"{len(order)}.", "use an IP-Adapter made for this exact model architecture.")
    for index, key in enumerate(order):
        width, expected = adapter.to_k[index].shape[0], modules[key].to_k.out_features
        if width != expected:
            raise AtelierError(node, input_name,
                               f"adapter layer {index} has width {width} but model layer "
                               f"{'.'.join(map(str, key))} has width {expected}.",
                               "use an IP-Adapter made for this exact model architecture.")
    return {key: index for index, key in enumerate(order)}
