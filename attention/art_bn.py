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

from .core.controls import AttentionControl
from .core.layers import LayerSelection
from .core.rows import ChunkLayout
from .core.schedule import Window
from .group_norm import install_group_norm_sharing

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


def align_generated_rows(x: torch.Tensor, layout: ChunkLayout, strength: float, dims: tuple,
                         reference=None) -> torch.Tensor:
    """ArtBN on rows 1..B-1 of every chunk against that chunk's row 0; row 0 is returned unchanged.

    Same maths as :func:`art_bn`, in few kernels: one statistics pass over every row (float32 for
    half inputs), then one fused multiply-add per element, x + s (ArtBN(x) - x) = x g + (m - mu g)
    with g = 1 + s (sigma_a / sigma - 1) and m = mu + s (mu_a - mu) per channel (offsets in float32).
    ``reference``: (mu_a, sigma_a) of a row 0 left out of x (every row of x is then a generated row)."""
    if (reference is None and layout.rows < 2) or strength == 0.0:
        return x
    xs = layout.split(x)
    stats_of = xs if xs.dtype in (torch.float32, torch.float64) else xs.float()  # fp16 statistics overflow
    var, mean = torch.var_mean(stats_of, dim=dims, keepdim=True)  # every row at once
    std = var.add_(EPS).sqrt_()
    # whole batch: row 0 gets gain exactly 1 and offset exactly 0, so it comes back bit for bit
    if reference is None:
        gain, target = std.narrow(1, 0, 1) / std, mean.narrow(1, 0, 1)
    else:
        target, ref_std = (t.to(std) for t in reference)
        gain = ref_std / std
    if strength != 1.0:
        gain = gain.sub_(1.0).mul_(strength).add_(1.0)
        target = torch.lerp(mean, target, strength)
    offset = torch.addcmul(target, mean, gain, value=-1.0)
    if stats_of is xs or xs.requires_grad:  # same dtype (or autograd on, which takes no out=)
        return torch.addcmul(offset, xs, gain).to(x.dtype).flatten(0, 1)
    out = torch.empty_like(x)  # half input: float32 arithmetic, written back in half
    torch.addcmul(offset, xs, gain, out=layout.split(out))
    return out


@dataclass(frozen=True)
class ArtBNAttentionControl(AttentionControl):
    """ArtBN on the queries and keys of self-attention (values untouched), then the rest of the chain."""

    strength: float = 1.0
    layers: LayerSelection = LayerSelection()
    window: Window = Window()
    slot: str = "attn1"
    separate_attention = True
    feature = "ArtBN"
    named_in_errors = "ArtBN statistics alignment"
    reference_node = "AtelierArtBN"

    def prepare(self, q, k, v, call):
        # the prepare phase always sees the whole batch, so ArtBN composes with StyleAligned in any order
        layout = call.layout(q.shape[0])
        return (align_generated_rows(q, layout, self.strength, TOKENS),
                align_generated_rows(k, layout, self.strength, TOKENS), v)


@dataclass(frozen=True)
class ArtBNNormControl(AttentionControl):
    """ArtBN on the input of every GroupNorm of the UNet (run by attention.group_norm's hook; the norm
    itself runs unchanged)."""

    strength: float = 1.0
    window: Window = Window()
    slot: str = "norm"
    feature = "ArtBN"
    named_in_errors = "ArtBN statistics alignment"
    reference_node = "AtelierArtBN"

    def install(self, model):
        install_group_norm_sharing(model)

    def prepare_norm(self, x, layout: ChunkLayout, reference=None):
        # the whole batch, before any control (GroupNorm sharing) splits it: order-independent
        spatial = tuple(range(2 - x.ndim, 0))  # (batch, channels, height, width): over height x width
        return align_generated_rows(x, layout, self.strength, spatial,
                                    reference=None if reference is None else reference.channel)
