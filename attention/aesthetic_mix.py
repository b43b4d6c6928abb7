"""Aesthetic value mixing: a training-free approximation of VMix (Wu et al., arXiv 2412.20800).

In a selected cross-attention layer with content context c (keys and values) and an aesthetic
embedding e (an encoded aesthetic description, minus the encoded empty prompt when ``baseline`` is
given), the rows of cond chunks compute

    A   = softmax(Q K_c^T / sqrt(d)),  K_c = to_k(c)          (the content prompt's attention map)
    out = A (V_c + s * V_aes),         V_c = to_v(c),  V_aes = value_branch(to_v, align(e))

and uncond rows keep out = A V_c, so classifier-free guidance pushes towards the aesthetic like any
positive-prompt term. The training-free ``value_branch`` is the layer's own value projection, so
V_c + s V_aes = to_v(c + s e) (to_v has no bias). VMix itself trains a zero-initialised branch;
a trained adapter plugs in as another ``value_branch(to_v, e) -> V_aes``. Because the rows of A sum
to 1, any affine branch applied after attention (A V_aes W + b) can be written as one applied to
V_aes before it, so this slot holds the paper's form too.

``align`` matches the aesthetic tokens to the content length T the way ComfyUI joins conds of
different lengths: both are repeated to lcm(T_e, T). Repeating the content k times leaves attention
unchanged, so it is the same as giving content token j the mean of the aesthetic tokens at
positions j, j + T, ... of the repeated aesthetic (a plain tile when T_e divides T).

In the joint attention of a diffusion transformer the aesthetic prompt is a text stream appended to the
context for the evaluation (``text_streams``), so each layer projects it with its own value projection:
at the selected layers the prompt's text values of cond rows become V_c + s * V_aes, with V_aes the
aesthetic stream's values at the layer, token-aligned to the prompt as above; uncond rows keep V_c.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .core.controls import AttentionControl
from .core.errors import AtelierError
from .core.layers import LayerSelection
from .core.rows import ChunkLayout
from .core.schedule import Window

# value_branch(to_v, aesthetic) -> values: to_v is the layer's value projection (comfy.ops, LoRA-aware)
ValueBranch = Callable[[Callable, torch.Tensor], torch.Tensor]


def layer_values(to_v: Callable, aesthetic: torch.Tensor) -> torch.Tensor:
    """The training-free branch: the aesthetic embedding through the layer's own value projection."""
    return to_v(aesthetic)


def align_tokens(x: torch.Tensor, length: int) -> torch.Tensor:
    """(rows, T_e, D) -> (rows, length, D): repeat to lcm(T_e, length), fold the repeats by their mean."""
    tokens = x.shape[1]
    if tokens == length:
        return x
    common = math.lcm(tokens, length)
    tiled = x.repeat(1, common // tokens, 1)
    if common == length:
        return tiled
    return tiled.reshape(x.shape[0], common // length, length, x.shape[2]).mean(dim=1)


def relative_to_empty_prompt(aesthetic: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """e = E(aesthetic) - E(""), the empty prompt brought to the aesthetic's token count T_a the way
    ComfyUI joins conditionings of different lengths: both repeated to lcm(T_a, T_0), subtracted, and
    the repeats folded back by their mean (:func:`align_tokens`). So aesthetic token j loses the mean of
    the empty prompt's tokens at positions i = j (mod gcd(T_a, T_0)): the empty prompt token by token
    where T_0 divides T_a (CLIP's 77-token chunks, T5's 256), the mean of its tokens of the same residue
    where it does not (unpadded LLM encoders: Qwen2.5-VL, Qwen3). Defined for any two lengths; an
    empty prompt of no tokens subtracts nothing."""
    if empty.shape[1] == 0:
        return aesthetic
    return aesthetic - align_tokens(empty.to(aesthetic), aesthetic.shape[1])


def row_weights(layout: ChunkLayout, strength: float) -> torch.Tensor:
    """(batch, 1, 1): s on the rows of cond chunks, 0 on uncond rows."""
    per_chunk = [strength if kind == 0 else 0.0 for kind in layout.cond_or_uncond]
    return torch.tensor(per_chunk, dtype=torch.float64).repeat_interleave(layout.rows).view(-1, 1, 1)


def mix_values(v: torch.Tensor, aesthetic_values: torch.Tensor, strength: float, layout: ChunkLayout,
               weights: torch.Tensor = None) -> torch.Tensor:
    """V + s * V_aes on the rows of cond chunks, V (bit for bit) on uncond rows.

    ``aesthetic_values`` is (1 or B, T, D) with B the latent rows per chunk; ``weights`` is
    :func:`row_weights` already on v's device (one fused kernel, no host-to-device copy per call).
    """
    if 0 not in layout.cond_or_uncond:
        return v
    if aesthetic_values.shape[0] not in (1, v.shape[0]):
        aesthetic_values = aesthetic_values.repeat(layout.chunks, 1, 1)
    if weights is None:
        weights = row_weights(layout, strength).to(device=v.device, dtype=v.dtype)
    return torch.addcmul(v, weights, aesthetic_values)


@dataclass(frozen=True)
class AestheticMixControl(AttentionControl):
    aesthetic: torch.Tensor = field(default=None, compare=False, repr=False)  # (1 or B, T_e, D) context space
    strength: float = 1.0
    value_branch: ValueBranch = layer_values
    layers: LayerSelection = LayerSelection()
    window: Window = Window()
    slot: str = "attn2"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)  # per device/dtype/layout
    feature = "aesthetic mixing"
    joint_attention = True
    separate_attention = True

    def _cached(self, key, make):
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = make()
        return value

    def prepare(self, q, k, v, call):
        """Mix on the whole batch before any control attends, so every chain order sees the same V."""
        layout = call.layout(v.shape[0])
        if 0 not in layout.cond_or_uncond:  # an uncond-only call: nothing to mix
            return q, k, v
        weights = self._cached((v.device, v.dtype, layout), lambda: row_weights(layout, self.strength).to(v))
        if call.text_in_streams:  # a video transformer: its own text path made the aesthetic prompt's values
            stream = call.streams.get(id(self))
            if stream is None:  # not carried in this call (see dispatch.dit_override.with_streams)
                return q, k, v
            aesthetic_values = align_tokens(stream[1][:1], v.shape[1])
        else:  # a UNet: the layer's own value projection of the aesthetic embedding
            aesthetic = self._cached((v.device, v.dtype), lambda: self.aesthetic.to(device=v.device, dtype=v.dtype))
            aesthetic_values = align_tokens(self.value_branch(call.module(self.slot).to_v, aesthetic), v.shape[1])
        return q, k, mix_values(v, aesthetic_values, self.strength, layout, weights)

    def text_streams(self, run) -> list:
        width = run.text_width()
        if self.aesthetic.shape[-1] != width:
            raise AtelierError("AtelierAestheticMix", "clip",
                               f"the text encoder gives {self.aesthetic.shape[-1]}-wide embeddings but this "
                               f"model's text input takes {width}.", "wire the text encoder of the same model.")
        return [(id(self), self.aesthetic[:1])]

    def dit_prepare(self, q, k, v, call):
        layout = call.layout(v.shape[0])
        stream = call.streams.get(id(self))
        if 0 not in layout.cond_or_uncond or stream is None or v.shape[0] != call.batch:
            return q, k, v
        v_aes = stream[2]  # (batch, heads, T_e, dim): the aesthetic prompt's values at this layer
        text = call.tokens.text
        aligned = align_tokens(v_aes.flatten(0, -3), text).reshape(*v_aes.shape[:-2], text, v_aes.shape[-1])
        weights = row_weights(layout, self.strength).to(v).view(-1, *([1] * (v.ndim - 1)))
        return q, k, mix_text_values(v, aligned, text, weights)


def mix_text_values(v, aesthetic_values, text: int, weights):
    """v with its first ``text`` tokens (dim -2) plus weights * aesthetic_values (row weights)."""
    mixed = torch.addcmul(v[..., :text, :], weights, aesthetic_values)
    return torch.cat([mixed, v[..., text:, :]], dim=-2)
