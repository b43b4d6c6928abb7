"""StyleAligned in the joint attention of a diffusion transformer (any joint family).

A row's tokens are ``[text | image | extra]`` (see :mod:`attention.core.tokens`). Per chunk of B
rows, row 0 is the reference r and rows 1..B-1 are generated rows i. Only image tokens take part
in the sharing, with the UNet formula (``attention.style_aligned``) applied to them:

    Q^_i = [Q_i^txt ; AdaIN(Q_i^img, Q_r^img) ; Q_i^extra]            (K^_i, V^_i alike)
    out_i = softmax([Q^_i K^_i^T ; s Q^_i (K_r^img)^T] / sqrt(d) + [0 | delta]) [V^_i ; V_r^img]

AdaIN's statistics are taken over the image tokens of a row, per channel (each head's channels);
text tokens keep their own queries, keys and values (no AdaIN), and every query of a generated row,
text ones included, sees the reference's image tokens as extra keys, as in the model's own joint
attention. The reference row attends to itself only: its output is exactly the vanilla one.
"""
from __future__ import annotations

import dataclasses

import torch

from .core.joint_dispatcher import register
from .style_aligned import SharedAttentionControl, SharingSettings, adain, fold_pad, folded_constants


def _with_image(x: torch.Tensor, image: slice, new_image: torch.Tensor) -> torch.Tensor:
    """x with its image tokens (dim -2) replaced."""
    return torch.cat([x[..., :image.start, :], new_image, x[..., image.stop:, :]], dim=-2)


def _fold_shift(q, k, v, own_tokens: int, shift: float, heads: int):
    """Queries/keys/values of the generated rows with the score shift folded into extra channels per
    head (:func:`attention.style_aligned.folded_constants`), so no mask reaches the kernel. Flux hands
    (batch, heads, tokens, dim), SD3 (batch, tokens, heads * dim); keys are [own ; reference]."""
    split = (lambda t: t) if q.ndim == 4 else (lambda t: t.unflatten(-1, (heads, -1)))
    merge = (lambda t: t) if q.ndim == 4 else (lambda t: t.flatten(-2))
    qh, kh, vh = split(q), split(k), split(v)
    head_dim = qh.shape[-1]
    pad = fold_pad(head_dim, q.device)
    gain, key_channel = folded_constants(shift, head_dim, pad)
    token_dim = -2 if q.ndim == 4 else -3

    def padded(x, first=0.0):
        extra = x.new_zeros(*x.shape[:-1], pad)
        if first:
            extra[..., 0] = first
        return extra
    q_extra = padded(qh, 1.0)
    k_extra = padded(kh)
    k_extra.narrow(token_dim, own_tokens, kh.shape[token_dim] - own_tokens)[..., 0] = key_channel
    return (merge(torch.cat([qh * gain, q_extra], dim=-1)), merge(torch.cat([kh, k_extra], dim=-1)),
            merge(torch.cat([vh, padded(vh)], dim=-1)), pad)


def _unfold(out: torch.Tensor, heads: int, pad: int) -> torch.Tensor:
    """(batch, tokens, heads * (dim + pad)) -> (batch, tokens, heads * dim)."""
    per_head = out.unflatten(-1, (heads, -1))
    return per_head[..., :per_head.shape[-1] - pad].flatten(-2)


def dit_shared_attention(q, k, v, layout, settings: SharingSettings, image: slice, attention, heads=None):
    """Shared attention on joint tokens; ``attention(q, k, v, mask)`` does the softmax (mask is an
    additive score bias or None). q, k, v: (batch, ..., tokens, dim) with the batch in chunks.
    With ``heads`` a score shift is folded into extra channels per head (no mask, fused kernels run);
    the output then comes from an ``attention`` call whose q/k/v have ``dim + pad`` channels per head.
    Either way the maths is the module docstring's formula."""
    if layout.rows < 2 or settings.neutral:
        return attention(q, k, v, None)
    qs, ks, vs = layout.split(q), layout.split(k), layout.split(v)  # (chunks, B, ..., T, D)
    q_ref, k_ref, v_ref = qs[:, :1], ks[:, :1], vs[:, :1]
    q_gen, k_gen, v_gen = qs[:, 1:], ks[:, 1:], vs[:, 1:]
    k_ref_img, v_ref_img = k_ref[..., image, :], v_ref[..., image, :]
    if settings.adain_queries:
        q_gen = _with_image(q_gen, image, adain(q_gen[..., image, :], q_ref[..., image, :]))
    if settings.adain_keys:
        k_gen = _with_image(k_gen, image, adain(k_gen[..., image, :], k_ref_img))
    if settings.adain_values:
        v_gen = _with_image(v_gen, image, adain(v_gen[..., image, :], v_ref_img))
    mask, pad = None, 0
    tokens = k_gen.shape[-2]
    if settings.share_attention:
        shared_k = (settings.score_scale * k_ref_img).expand(*k_gen.shape[:-2], *k_ref_img.shape[-2:])
        shared_v = v_ref_img.expand(*v_gen.shape[:-2], *v_ref_img.shape[-2:])
        k_gen = torch.cat([k_gen, shared_k], dim=-2)
        v_gen = torch.cat([v_gen, shared_v], dim=-2)
        if settings.score_shift != 0.0 and heads is None:
            mask = torch.zeros(q.shape[-2], k_gen.shape[-2], dtype=q.dtype, device=q.device)
            mask[:, tokens:] = settings.score_shift
    chunks, rows = layout.chunks, layout.rows
    out_ref = attention(q_ref.flatten(0, 1), k_ref.flatten(0, 1), v_ref.flatten(0, 1), None)
    q_gen, k_gen, v_gen = q_gen.flatten(0, 1), k_gen.flatten(0, 1), v_gen.flatten(0, 1)
    if settings.share_attention and settings.score_shift != 0.0 and heads is not None:
        q_gen, k_gen, v_gen, pad = _fold_shift(q_gen, k_gen, v_gen, tokens, settings.score_shift, heads)
    # extra keys enlarge a materialised score matrix (CPU attention): slice the generated rows so no
    # call holds more scores than the unshared call of the whole batch would
    per_call = max(1, q.shape[0] * k.shape[-2] // k_gen.shape[-2])
    out_gen = torch.cat([attention(q_gen[i:i + per_call], k_gen[i:i + per_call], v_gen[i:i + per_call], mask)
                         for i in range(0, q_gen.shape[0], per_call)])
    if pad:
        out_gen = _unfold(out_gen, heads, pad)
    out = torch.cat([out_ref.reshape(chunks, 1, *out_ref.shape[1:]),
                     out_gen.reshape(chunks, rows - 1, *out_gen.shape[1:])], dim=1)
    return out.flatten(0, 1)


def attend(control: SharedAttentionControl, next_attention, q, k, v, call, mask=None):
    if mask is not None or call.head_pad:  # the model masks this call (padding) or an outer control
        return next_attention(q, k, v, call, mask)  # changed the scores (a mask or folded channels)
    layout = call.layout(q.shape[0])
    heads = call.heads

    def attention(q_, k_, v_, m):
        pad = (q_.shape[-1] - q.shape[-1]) // (1 if q.ndim == 4 else heads)  # > 0 where the shift is folded
        return next_attention(q_, k_, v_, dataclasses.replace(call, head_pad=pad) if pad else call, m)
    return dit_shared_attention(q, k, v, layout, control.settings, call.tokens.image_slice, attention, heads=heads)


register(SharedAttentionControl, attend=attend)
