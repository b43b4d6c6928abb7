"""StyleAligned: shared self-attention with a reference row (Hertz et al., arXiv 2312.02133).

Per chunk of B rows, row 0 is the reference r and rows 1..B-1 are generated rows i:

    Q^_i = AdaIN(Q_i, Q_r)      K^_i = AdaIN(K_i, K_r)      (V^_i = AdaIN(V_i, V_r) if adain_values)
    out_i = softmax([Q^_i K^_i^T ; s Q^_i K_r^T] / sqrt(d) + [0 | delta]) [V^_i ; V_r]

with AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y), mean and standard deviation taken over
tokens per channel, s = shared_score_scale and delta = shared_score_shift. The reference row attends
to itself only, so its output is exactly what it would be without sharing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .controls import AttentionControl
from .layers import LayerSelection
from .rows import ChunkLayout
from .schedule import Window

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


def shared_attention(q, k, v, layout: ChunkLayout, settings: SharingSettings, attention):
    """Shared attention over a batch laid out in chunks; ``attention(q, k, v, mask)`` does the softmax."""
    if layout.rows < 2 or settings.neutral:
        return attention(q, k, v, None)
    qs, ks, vs = layout.split(q), layout.split(k), layout.split(v)  # (chunks, B, T, D)
    q_ref, k_ref, v_ref = qs[:, :1], ks[:, :1], vs[:, :1]
    q_gen, k_gen, v_gen = qs[:, 1:], ks[:, 1:], vs[:, 1:]
    if settings.adain_queries:
        q_gen = adain(q_gen, q_ref)
    if settings.adain_keys:
        k_gen = adain(k_gen, k_ref)
    if settings.adain_values:
        v_gen = adain(v_gen, v_ref)
    mask = None
    if settings.share_attention:
        tokens = k_gen.shape[-2]
        k_gen = torch.cat([k_gen, (settings.score_scale * k_ref).expand_as(k_gen)], dim=-2)
        v_gen = torch.cat([v_gen, v_ref.expand_as(v_gen)], dim=-2)
        if settings.score_shift != 0.0:
            mask = torch.zeros(q.shape[-2], 2 * tokens, dtype=q.dtype, device=q.device)
            mask[:, tokens:] = settings.score_shift
    chunks, rows = layout.chunks, layout.rows
    out_ref = attention(q_ref.flatten(0, 1), k_ref.flatten(0, 1), v_ref.flatten(0, 1), None)
    q_gen, k_gen, v_gen = q_gen.flatten(0, 1), k_gen.flatten(0, 1), v_gen.flatten(0, 1)
    # Doubled keys double a materialised score matrix (ComfyUI's CPU attention): run the generated
    # rows in slices so no call holds more scores than the unshared call of the whole batch would.
    per_call = max(1, q.shape[0] * k.shape[-2] // k_gen.shape[-2])
    out_gen = torch.cat([attention(q_gen[i:i + per_call], k_gen[i:i + per_call], v_gen[i:i + per_call], mask)
                         for i in range(0, q_gen.shape[0], per_call)])
    out = torch.cat([out_ref.reshape(chunks, 1, *out_ref.shape[1:]),
                     out_gen.reshape(chunks, rows - 1, *out_gen.shape[1:])], dim=1)
    return out.flatten(0, 1)


@dataclass(frozen=True)
class SharedAttentionControl(AttentionControl):
    settings: SharingSettings = SharingSettings()
    layers: LayerSelection = LayerSelection()
    window: Window = Window()
    slot: str = "attn1"

    def attend(self, q, k, v, call, next_attention, mask=None):
        if mask is not None:  # an outer control already reshaped the keys; nothing to share with
            return next_attention(q, k, v, call, mask)
        layout = call.layout(q.shape[0])
        return shared_attention(q, k, v, layout, self.settings,
                                lambda q_, k_, v_, m: next_attention(q_, k_, v_, call, m))
