"""StyleAligned: shared self-attention with a reference row (Hertz et al., arXiv 2312.02133).

Per chunk of B rows, row 0 is the reference r and rows 1..B-1 are generated rows i:

    Q^_i = AdaIN(Q_i, Q_r)      K^_i = AdaIN(K_i, K_r)      (V^_i = AdaIN(V_i, V_r) if adain_values)
    out_i = softmax([Q^_i K^_i^T ; s Q^_i K_r^T] / sqrt(d) + [0 | delta]) [V^_i ; V_r]

with AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y), mean and standard deviation taken over
tokens per channel, s = shared_score_scale and delta = shared_score_shift. The reference row attends
to itself only (to two copies of its own keys and values, as in the official code), so its output is
what it would be without sharing, up to rounding.

In the joint attention of a diffusion transformer (any joint family) a row's tokens are
``[text | image | extra]`` (see :mod:`attention.core.tokens`) and only image tokens take part in the
sharing, with the same formula applied to them:

    Q^_i = [Q_i^txt ; AdaIN(Q_i^img, Q_r^img) ; Q_i^extra]            (K^_i, V^_i alike)
    out_i = softmax([Q^_i K^_i^T ; s Q^_i (K_r^img)^T] / sqrt(d) + [0 | delta]) [V^_i ; V_r^img]

AdaIN's statistics are taken over the image tokens of a row, per channel (each head's channels);
text tokens keep their own queries, keys and values (no AdaIN), and every query of a generated row,
text ones included, sees the reference's image tokens as extra keys, as in the model's own joint
attention. The reference row attends to itself only: its output is exactly the vanilla one.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .core.controls import AttentionControl
from .core.keys import REPLAYED_ROW_KEY
from .core.layers import LayerSelection
from .core.rows import ChunkLayout
from .core.schedule import Window

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


def _aligned(xs: torch.Tensor, align: bool, first: int = 0) -> torch.Tensor:
    """(chunks, B, T, C) -> rows ``first``.. of every chunk, (chunks, B - first, T, C), each given its
    chunk's row-0 per-channel token statistics (AdaIN) when ``align`` (a view of xs when not).
    Written as x * ratio + (mu_r - mu * ratio): row 0, AdaIN'd to itself, has ratio 1 and offset 0
    exactly, so it comes back bit for bit. Statistics of every row in one pass; the result is written
    for the rows asked for only (no copy of row 0 to drop later)."""
    rows = xs.shape[1] - first
    if not align:
        return xs.narrow(1, first, rows)
    var, mean = torch.var_mean(xs, dim=-2, keepdim=True)
    std = var.add_(EPS).sqrt_()
    ratio = _ref(std) / std
    offset = _ref(mean) - mean * ratio
    if first:
        offset, xs, ratio = (t.narrow(1, first, rows) for t in (offset, xs, ratio))
    return torch.addcmul(offset, xs, ratio)


def _ref(x: torch.Tensor) -> torch.Tensor:
    """Row 0 of every chunk of a (chunks, B, ...) tensor, kept as a length-1 dim (one view op)."""
    return x.narrow(1, 0, 1)


def materialises_scores(device: torch.device) -> bool:
    """Whether ComfyUI's attention on this device holds the whole score matrix (its CPU attention
    does; the fused GPU kernels do not)."""
    return device.type == "cpu"


# Row 0 in the generated rows' call costs its duplicated keys, 8 * chunks * T^2 * C FLOPs per layer;
# a call of its own costs about 20 more kernel launches (~0.1 ms on a GPU). They break even near
# chunks * T^2 * C = 2.5e9 at ~2e14 FLOP/s: SD1.5's 64x64 layers at 512 px (4096 tokens, 320 channels,
# cond + uncond: 1.1e10) keep row 0 apart, its 32x32 and smaller ones (<= 1.3e9) share the call.
SHARED_CALL_BELOW = 2.5e9


def reference_in_shared_call(device: torch.device, chunks: int, tokens: int, width: int) -> bool:
    """Whether row 0 rides in the generated rows' attention call (fewer launches) rather than a call
    of its own (fewer FLOPs): where attention is fused and the layer is small. On the CPU compute
    dominates: always apart."""
    return not materialises_scores(device) and chunks * tokens * tokens * width < SHARED_CALL_BELOW


# ComfyUI's CPU attention materialises each call's whole score matrix and its softmax (its
# sub-quadratic attention takes all queries at once whenever memory allows). The generated rows' shared
# call therefore runs in blocks of at most this many bytes of scores: a block stays in the CPU's caches
# from the score product through the softmax to the value product, and the allocator reuses its memory
# instead of mapping (and faulting in) fresh pages for every call, as it does for vanilla's whole-batch
# matrix (glibc maps anything over 32 MiB afresh). Every query still attends to all its keys in one
# call, so the maths is unchanged (in practice bit for bit: the kernels compute each score row alike).
SCORE_BLOCK_BYTES = 8 << 20


def score_blocks(rows: int, tokens: int, key_tokens: int, heads: int, block_bytes: int = SCORE_BLOCK_BYTES):
    """Calls (row start, row end, query start, query end) covering ``rows`` x ``tokens`` queries
    whose fp32 score matrices (rows x heads x queries x keys) hold at most ``block_bytes`` each
    (one query row at least): whole rows, evenly split, where a row fits; else each row's queries in
    even slices."""
    per_query = 4 * heads * key_tokens
    per_row = per_query * tokens
    if per_row <= block_bytes:
        calls = -(-rows // (block_bytes // per_row))
        step = -(-rows // calls)
        return [(r, min(rows, r + step), 0, tokens) for r in range(0, rows, step)]
    calls = -(-tokens // max(1, block_bytes // per_query))
    step = -(-tokens // calls)
    return [(r, r + 1, t, min(tokens, t + step)) for r in range(rows) for t in range(0, tokens, step)]


def _blocked(attention, queries, keys, values, mask, heads: int, split_queries: bool, whole_batch_rows: int):
    """``attention`` over (N, T, C) queries and (N, T', C) keys/values where the score matrix is
    materialised: in :func:`score_blocks` where the attention below is ComfyUI's own
    (``split_queries``), else (another pack's replace, which may expect whole rows) in row slices that
    hold no more scores than the unshared call of the whole batch (``whole_batch_rows`` rows at T' = 2T).
    The mask is None, (T, T') for every row, or per row (N, 1, 1, T')."""
    n, tokens = queries.shape[:2]
    if split_queries:
        blocks = score_blocks(n, tokens, keys.shape[1], heads, SCORE_BLOCK_BYTES)
    else:
        step = max(1, whole_batch_rows)
        blocks = [(r, min(n, r + step), 0, tokens) for r in range(0, n, step)]
    if len(blocks) == 1:
        return attention(queries, keys, values, mask)
    out = None
    for r0, r1, t0, t1 in blocks:
        block_mask = mask if mask is None else mask[t0:t1] if mask.ndim == 2 else mask[r0:r1]
        got = attention(queries[r0:r1, t0:t1], keys[r0:r1], values[r0:r1], block_mask)
        if out is None:
            out = got.new_empty(n, tokens, got.shape[-1])
        out[r0:r1, t0:t1] = got
    return out


def shared_attention(q, k, v, layout: ChunkLayout, settings: SharingSettings, attention, heads=None,
                     reference_output: bool = True, reference_apart: bool = False, plain_attention: bool = True):
    """Shared attention over a batch laid out in chunks; ``attention(q, k, v, mask)`` does the softmax.

    Every generated row attends to its own (AdaIN'd) keys and values joined with its chunk's row-0
    keys and values. Row 0 gets its unshared attention, in one of two ways with the same maths
    (:func:`reference_in_shared_call` picks the cheaper): a call of its own, or in the generated rows'
    call as in the official implementation, attending to two copies of its own keys and values (no
    scale or shift for it), which equals its unshared attention up to rounding.
    With ``heads`` (the call's head count) a score shift is folded into extra channels per head (see
    :func:`folded_constants`) and no mask is passed, so fused kernels run; without it the shift is an
    additive mask per row. Either way the maths is the module docstring's formula.
    ``reference_output=False``: row 0's output is not needed (reference-image mode replays row 0 and
    drops it); ``reference_apart``: row 0 must get a call of its own at the model's head size (another
    pack's replace below must see its attention and never the widened heads of a folded shift);
    ``plain_attention``: ``attention`` is ComfyUI's own, so where it materialises the score matrix (the
    CPU) the generated rows' call may be split by query tokens too (:func:`score_blocks`); another
    pack's replace gets whole rows.
    """
    if layout.rows < 2 or settings.neutral:
        return attention(q, k, v, None)
    qs, ks, vs = layout.split(q), layout.split(k), layout.split(v)  # (chunks, B, T, C)
    if not settings.share_attention:  # AdaIN only
        return attention(_aligned(qs, settings.adain_queries).flatten(0, 1),
                         _aligned(ks, settings.adain_keys).flatten(0, 1),
                         _aligned(vs, settings.adain_values).flatten(0, 1), None)
    chunks, rows = layout.chunks, layout.rows
    tokens, width = k.shape[-2], k.shape[-1]
    apart = reference_apart or not reference_in_shared_call(q.device, chunks, tokens, width)
    first = 1 if apart else 0  # the first row of the shared call
    shared = rows - first
    out_ref = None
    if apart and reference_output:  # row 0's unshared call, before anything of the shared call is held
        out_ref = attention(qs.select(1, 0), ks.select(1, 0), vs.select(1, 0), None)
    queries = _aligned(qs, settings.adain_queries, first)  # (chunks, rows in the call, T, C)
    own_keys, own_values = _aligned(ks, settings.adain_keys, first), _aligned(vs, settings.adain_values, first)
    ref_keys = _ref(ks).expand(chunks, shared, tokens, width)
    if settings.score_scale != 1.0:  # generated rows see s * K_r; row 0 (in the call) its own keys
        scale = q.new_full((1, shared, 1, 1), settings.score_scale)
        if not apart:
            scale[:, 0] = 1.0
        ref_keys = ref_keys * scale
    keys = torch.cat([own_keys, ref_keys], dim=2)  # (chunks, rows in the call, 2T, C)
    values = torch.cat([own_values, _ref(vs).expand(chunks, shared, tokens, width)], dim=2)
    del own_keys, own_values, ref_keys
    shift, mask, pad = settings.score_shift, None, 0
    if shift != 0.0 and heads is not None:
        pad = fold_pad(width // heads, q.device)
        queries, keys, values = _fold_shift(queries, keys, values, tokens, shift, heads, pad, first)
    elif shift != 0.0 and apart:  # an additive bias on the reference's keys, the same for every row
        mask = q.new_zeros(q.shape[-2], 2 * tokens)
        mask[:, tokens:] = shift
    elif shift != 0.0:  # per row: none for row 0
        mask = q.new_zeros(chunks, shared, 1, 1, 2 * tokens)
        mask[:, 1:, ..., tokens:] = shift
        mask = mask.flatten(0, 1)  # (N, 1, 1, 2T): broadcasts over heads and queries
    queries, keys, values = queries.flatten(0, 1), keys.flatten(0, 1), values.flatten(0, 1)
    if materialises_scores(q.device):  # doubled keys double the score matrix: blocks (see SCORE_BLOCK_BYTES)
        out = _blocked(attention, queries, keys, values, mask, heads or 1, split_queries=plain_attention,
                       whole_batch_rows=chunks * rows // 2)
    else:
        out = attention(queries, keys, values, mask)
    del queries, keys, values
    if pad:
        out = out.unflatten(-1, (heads, -1))[..., :width // heads].flatten(-2)
    if not apart:
        return out
    if out_ref is None:  # row 0's output is not needed
        out_ref = q.new_zeros(chunks, q.shape[-2], width)
    return torch.cat([out_ref.view(chunks, 1, *out_ref.shape[1:]), out.view(chunks, shared, *out.shape[1:])],
                     dim=1).flatten(0, 1)


def _fold_shift(queries, keys, values, tokens: int, shift: float, heads: int, pad: int, first: int = 0):
    """Per head, queries [g q, 1, 0...], keys [k, 0...] (own) and [k_r, x, 0...] (the reference's, for
    generated rows only: the call's rows from ``1 - first`` on, row 0 being in the call when ``first``
    is 0), values [v, 0...]: see :func:`folded_constants`. In and out (chunks, rows, T or 2T, C)."""
    head_dim = queries.shape[-1] // heads
    gain, key_channel = folded_constants(shift, head_dim, pad)
    padded = lambda t: F.pad(t.unflatten(-1, (heads, head_dim)), (0, pad))  # noqa: E731  zeros appended
    q_pad = padded(queries * gain)
    q_pad[..., head_dim] = 1.0
    k_pad = padded(keys)
    k_pad[:, 1 - first:, tokens:, :, head_dim] = key_channel
    return q_pad.flatten(-2), k_pad.flatten(-2), padded(values).flatten(-2)


# ---- joint attention (diffusion transformers) ------------------------------------------------------
def _with_image(x: torch.Tensor, image: slice, new_image: torch.Tensor) -> torch.Tensor:
    """x with its image tokens (dim -2) replaced."""
    return torch.cat([x[..., :image.start, :], new_image, x[..., image.stop:, :]], dim=-2)


def _fold_shift_joint(q, k, v, own_tokens: int, shift: float, heads: int):
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
        q_gen, k_gen, v_gen, pad = _fold_shift_joint(q_gen, k_gen, v_gen, tokens, settings.score_shift, heads)
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



@dataclass(frozen=True)
class SharedAttentionControl(AttentionControl):
    settings: SharingSettings = SharingSettings()
    layers: LayerSelection = LayerSelection()
    window: Window = Window()
    slot: str = "attn1"
    feature = "StyleAligned"
    joint_attention = True
    separate_attention = True
    reference_node = "AtelierStyleAligned"

    def attend(self, next_attention, q, k, v, call, mask=None):
        if mask is not None or call.head_pad:  # an outer control already reshaped the keys
            return next_attention(q, k, v, call, mask)
        layout = call.layout(q.shape[0])

        def attention(q_, k_, v_, m):
            pad = (q_.shape[-1] - q.shape[-1]) // call.heads  # > 0 where the score shift was folded in
            return next_attention(q_, k_, v_, dataclasses.replace(call, head_pad=pad) if pad else call, m)
        plain = call.is_plain(next_attention)
        return shared_attention(q, k, v, layout, self.settings, attention, heads=call.heads,
                                reference_output=not call.extra_options.get(REPLAYED_ROW_KEY),
                                reference_apart=not plain, plain_attention=plain)

    def dit_attend(self, next_attention, q, k, v, call, mask=None):
        if mask is not None or call.head_pad:  # the model masks this call (padding) or an outer control
            return next_attention(q, k, v, call, mask)  # changed the scores (a mask or folded channels)
        layout = call.layout(q.shape[0])
        heads = call.heads

        def attention(q_, k_, v_, m):
            pad = (q_.shape[-1] - q.shape[-1]) // (1 if q.ndim == 4 else heads)  # > 0 where the shift is folded
            return next_attention(q_, k_, v_, dataclasses.replace(call, head_pad=pad) if pad else call, m)
        return dit_shared_attention(q, k, v, layout, self.settings, call.tokens.image_slice, attention, heads=heads)
