"""ArtBN (CreativeSynth, arXiv 2401.14066): generated rows take the artwork's feature statistics.

Per chunk, row 0 is the reference (the artwork, e.g. replayed from its inversion trajectory) and rows
1..B-1 are generated. For the features X_s of a generated row and X_a of its chunk's reference row::

    ArtBN(X_s) = sigma(X_a) * (X_s - mu(X_s)) / sigma(X_s) + mu(X_a)
    X_s  <-  X_s + s * (ArtBN(X_s) - X_s)                  (s = strength; s = 1 is ArtBN itself)

with mu and sigma the per-channel mean and standard deviation (sigma = sqrt(var + 1e-5), unbiased)
taken over tokens for self-attention queries and keys (the paper's place), and over height x width
for the input of a GroupNorm (so the GroupNorm's output has the reference's channel statistics too).
The reference rows are never changed; s = 0 changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .controls import AttentionControl
from .layers import LayerSelection
from .rows import ChunkLayout
from .schedule import Window

EPS = 1e-5
TOKENS = (-2,)  # (batch, tokens, channels): over tokens


def channel_stats(x: torch.Tensor, dims: tuple, eps: float = EPS):
    var, mean = torch.var_mean(x, dim=dims, keepdim=True)
    return mean, (var + eps).sqrt()


def art_bn(x: torch.Tensor, ref: torch.Tensor, strength: float, dims: tuple) -> torch.Tensor:
    """x moved by ``strength`` towards the per-channel statistics of ``ref`` (broadcastable to x)."""
    compute = torch.promote_types(x.dtype, torch.float32)  # fp16 statistics would overflow
    x32, ref32 = x.to(compute), ref.to(compute)
    mean, std = channel_stats(x32, dims)
    ref_mean, ref_std = channel_stats(ref32, dims)
    aligned = (x32 - mean) / std * ref_std + ref_mean
    return (x32 + strength * (aligned - x32)).to(x.dtype)


def align_generated_rows(x: torch.Tensor, layout: ChunkLayout, strength: float, dims: tuple) -> torch.Tensor:
    """ArtBN on rows 1..B-1 of every chunk against that chunk's row 0; row 0 is returned unchanged."""
    if layout.rows < 2 or strength == 0.0:
        return x
    xs = layout.split(x)
    generated = art_bn(xs[:, 1:], xs[:, :1], strength, dims)
    return torch.cat([xs[:, :1], generated], dim=1).flatten(0, 1)


def _whole_batch(x: torch.Tensor, layout: ChunkLayout) -> bool:
    return x.shape[0] == layout.chunks * layout.rows


@dataclass(frozen=True)
class ArtBNAttentionControl(AttentionControl):
    """ArtBN on the queries and keys of self-attention (values untouched), then the rest of the chain."""

    strength: float = 1.0
    layers: LayerSelection = LayerSelection()
    window: Window = Window()
    slot: str = "attn1"

    def attend(self, q, k, v, call, next_attention, mask=None):
        shape = call.activations_shape
        if shape is not None and shape[0] != q.shape[0]:
            return next_attention(q, k, v, call, mask)  # a sub-batch split by an outer control
        layout = call.layout(q.shape[0])
        q = align_generated_rows(q, layout, self.strength, TOKENS)
        k = align_generated_rows(k, layout, self.strength, TOKENS)
        return next_attention(q, k, v, call, mask)


@dataclass(frozen=True)
class ArtBNNormControl(AttentionControl):
    """ArtBN on the input of every GroupNorm of the UNet (run by attention.group_norm's hook)."""

    strength: float = 1.0
    window: Window = Window()
    slot: str = "norm"

    def group_norm(self, norm_forward, x, layout: ChunkLayout):
        if x.ndim < 3 or not _whole_batch(x, layout):
            return norm_forward(x)  # e.g. inside StyleAligned's joined GroupNorm
        spatial = tuple(range(2 - x.ndim, 0))  # (batch, channels, height, width): over height x width
        return norm_forward(align_generated_rows(x, layout, self.strength, spatial))
