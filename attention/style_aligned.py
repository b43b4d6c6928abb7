"""StyleAligned: shared self-attention with a reference row (Hertz et al., arXiv 2312.02133).

Per chunk of B rows, row 0 is the reference r and rows 1..B-1 are generated rows i:

    Q^_i = AdaIN(Q_i, Q_r)      K^_i = AdaIN(K_i, K_r)      (V^_i = AdaIN(V_i, V_r) if adain_values)
    out_i = softmax([Q^_i K^_i^T ; s Q^_i K_r^T] / sqrt(d) + [0 | delta]) [V^_i ; V_r]

with AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y), mean and standard deviation taken over
tokens per channel, s = shared_score_scale and delta = shared_score_shift. The reference row attends
to itself only, so its output is exactly what it would be without sharing.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .controls import AttentionControl
from .layers import LayerSelection
from .rows import ChunkLayout
from .schedule import Window
from .reference_keys import REPLAYED_ROW_KEY

EPS = 1e-5


def mean_std(x: torch.Tensor, eps: float = EPS):
    """Mean and standard deviation over tokens (dim -2), per channel."""
    var, mean = torch.var_mean(x, dim=-2, keepdim=True)
    return mean, (var + eps).sqrt()


def adain(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Give x (..., T, C) the per-channel token statistics of ref (broadcastable to x)."""
    mean, std = mean_std(x)
    ref_mean, ref_std = mean_std(ref)
    return (x - mean) / std * ref_std + ref_mean


@dataclass(frozen=True)
class SharingSettings:
    share_attention: bool = True
    adain_queries: bool = True
    adain_keys: bool = True
    adain_values: bool = False
    score_scale: float = 1.0
    score_shift: float = 0.0

    @property
    def neutral(self) -> bool:
        return not (self.share_attention or self.adain_queries or self.adain_keys or self.adain_values)


def fold_pad(head_dim: int, device: torch.device) -> int:
    """Channels added per head to carry the score shift: one on CPU; on a GPU up to the next multiple
    of 8 (fused kernels want aligned head sizes and pad to them anyway), at least one."""
    return 1 if device.type == "cpu" else 8 - head_dim % 8


def folded_constants(shift: float, head_dim: int, pad: int) -> tuple:
    """(query gain g, key channel value x) such that a kernel scoring q'.k'/sqrt(d + pad) with
    q' = [g q, 1, 0...] and k' = [k, 0, 0...] (own keys) or [k_r, x, 0...] (reference keys) gives
    q.k/sqrt(d) on own keys and q.k_r/sqrt(d) + shift on the reference's."""
    width = head_dim + pad
    return math.sqrt(width / head_dim), shift * math.sqrt(width)


def _generated_rows(xs, align: bool, out, gain: float = 1.0, channels=None):
    """Rows 1..B-1 of xs (chunks, B, T, C) written into ``out`` (a view of a larger buffer): AdaIN'd
    to row 0 when ``align``, times ``gain``. ``channels`` views a (..., C) tensor the way ``out`` is
    laid out (per head, when the buffer carries score-shift channels)."""
    channels = channels or (lambda t: t)
    if not align:
        return out.copy_(channels(_gen(xs))) if gain == 1.0 else torch.mul(channels(_gen(xs)), gain, out=out)
    var, mean = torch.var_mean(xs, dim=-2, keepdim=True)  # every row's statistics in one pass
    std = var.add_(EPS).sqrt_()
    ratio = _ref(std) / _gen(std)
    ref_mean = _ref(mean)
    if gain != 1.0:
        ratio, ref_mean = ratio * gain, ref_mean * gain
    centred = _gen(xs) - _gen(mean)
    return torch.addcmul(channels(ref_mean), channels(centred), channels(ratio), out=out)


def _ref(x: torch.Tensor) -> torch.Tensor:
    """Row 0 of every chunk of a (chunks, B, ...) tensor, kept as a length-1 dim (one view op)."""
    return x.narrow(1, 0, 1)


def _gen(x: torch.Tensor) -> torch.Tensor:
    """Rows 1..B-1 of every chunk of a (chunks, B, ...) tensor (one view op)."""
    return x.narrow(1, 1, x.shape[1] - 1)


def _aligned_batch(xs, align: bool):
    """(chunks, B, T, C) -> (chunks * B, T, C) with rows 1..B-1 AdaIN'd to row 0 (row 0 as it is)."""
    if not align:
        return xs.flatten(0, 1)
    out = torch.empty_like(xs)
    _ref(out).copy_(_ref(xs))
    _generated_rows(xs, True, _gen(out))
    return out.flatten(0, 1)


def materialises_scores(device: torch.device) -> bool:
    """Whether ComfyUI's attention on this device holds the whole score matrix (its CPU attention
    does; the fused GPU kernels do not)."""
    return device.type == "cpu"


def shared_attention(q, k, v, layout: ChunkLayout, settings: SharingSettings, attention, heads=None,
                     reference_output: bool = True):
    """Shared attention over a batch laid out in chunks; ``attention(q, k, v, mask)`` does the softmax.

    With ``heads`` (the call's head count) a score shift is folded into one extra channel per head
    (see :func:`folded_constants`) and no mask is passed, so fused kernels run; without it a shift
    is passed as an additive mask. Either way the maths is the module docstring's formula.
    ``reference_output=False``: row 0's own attention is not computed (zeros in its place), for a row 0
    whose output is dropped (reference-image mode replaying it from its cache).
    """
    if layout.rows < 2 or settings.neutral:
        return attention(q, k, v, None)
    qs, ks, vs = layout.split(q), layout.split(k), layout.split(v)  # (chunks, B, T, D)
    if not settings.share_attention:  # AdaIN only: one call for the whole batch
        return attention(_aligned_batch(qs, settings.adain_queries), _aligned_batch(ks, settings.adain_keys),
                         _aligned_batch(vs, settings.adain_values), None)
    chunks, rows = layout.chunks, layout.rows
    q_tokens, tokens, width = q.shape[-2], k.shape[-2], k.shape[-1]
    shift = settings.score_shift
    fold = shift != 0.0 and heads is not None
    mask = None
    if fold:  # buffers (chunks, B-1, tokens, heads, head_dim + pad); the model's channels are [..., :head_dim]
        head_dim = width // heads
        pad = fold_pad(head_dim, q.device)
        gain, key_channel = folded_constants(shift, head_dim, pad)
        shape, new = (heads, head_dim + pad), q.new_zeros
        channels = lambda t: t.unflatten(-1, (heads, head_dim))  # noqa: E731
        own = lambda t: t[..., :head_dim]  # noqa: E731
    else:  # buffers (chunks, B-1, tokens, width)
        gain, shape, new = 1.0, (width,), q.new_empty
        channels = own = lambda t: t  # noqa: E731
        if shift != 0.0:
            mask = torch.zeros(q_tokens, 2 * tokens, dtype=q.dtype, device=q.device)
            mask[:, tokens:] = shift
    gen = (chunks, rows - 1)
    # generated rows: queries, keys [own ; s * reference], values [own ; reference]
    if fold or not settings.adain_queries:
        q_gen = new(*gen, q_tokens, *shape)
        _generated_rows(qs, settings.adain_queries, own(q_gen), gain, channels)
        if fold:
            q_gen.select(-1, head_dim).fill_(1.0)
    else:
        q_gen = _generated_rows(qs, True, q.new_empty(*gen, q_tokens, width))
    k_gen = new(*gen, 2 * tokens, *shape)
    own_keys, ref_keys = k_gen.narrow(2, 0, tokens), k_gen.narrow(2, tokens, tokens)
    _generated_rows(ks, settings.adain_keys, own(own_keys), 1.0, channels)
    k_ref = _ref(ks) if settings.score_scale == 1.0 else settings.score_scale * _ref(ks)
    own(ref_keys).copy_(channels(k_ref))
    if fold:
        ref_keys.select(-1, head_dim).fill_(key_channel)
    v_gen = new(*gen, 2 * tokens, *shape)
    _generated_rows(vs, settings.adain_values, own(v_gen.narrow(2, 0, tokens)), 1.0, channels)
    own(v_gen.narrow(2, tokens, tokens)).copy_(channels(_ref(vs)))

    if reference_output:
        out_ref = attention(qs.select(1, 0), ks.select(1, 0), vs.select(1, 0), None)  # the unshared call's rows
    else:
        out_ref = q.new_zeros(chunks, q_tokens, width)
    q_gen, k_gen, v_gen = (t.view(chunks * (rows - 1), t.shape[2], -1) for t in (q_gen, k_gen, v_gen))
    per_call = q_gen.shape[0]
    if materialises_scores(q.device):
        # doubled keys double a materialised score matrix: slice the generated rows so no call holds
        # more scores than the unshared call of the whole batch would
        per_call = max(1, q.shape[0] // 2)
    if per_call >= q_gen.shape[0]:
        out_gen = attention(q_gen, k_gen, v_gen, mask)
    else:
        out_gen = torch.cat([attention(q_gen[i:i + per_call], k_gen[i:i + per_call], v_gen[i:i + per_call], mask)
                             for i in range(0, q_gen.shape[0], per_call)])
    out_gen = own(out_gen.view(*gen, q_tokens, *shape))
    out_ref = channels(out_ref.view(chunks, 1, q_tokens, width))
    return torch.cat([out_ref, out_gen], dim=1).view(q.shape)


@dataclass(frozen=True)
class SharedAttentionControl(AttentionControl):
    settings: SharingSettings = SharingSettings()
    layers: LayerSelection = LayerSelection()
    window: Window = Window()
    slot: str = "attn1"

    def attend(self, q, k, v, call, next_attention, mask=None):
        if mask is not None or call.head_pad:  # an outer control already reshaped the keys
            return next_attention(q, k, v, call, mask)
        layout = call.layout(q.shape[0])

        def attention(q_, k_, v_, m):
            pad = (q_.shape[-1] - q.shape[-1]) // call.heads  # > 0 where the score shift was folded in
            return next_attention(q_, k_, v_, dataclasses.replace(call, head_pad=pad) if pad else call, m)
        return shared_attention(q, k, v, layout, self.settings, attention, heads=call.heads,
                                reference_output=not call.extra_options.get(REPLAYED_ROW_KEY))
