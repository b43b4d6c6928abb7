"""Attention that also returns its log-sum-exp, and the exact merge of attention over disjoint key sets.

For queries Q (B, H, Tq, D), keys K (B, H, Tk, D), values V (B, H, Tk, Dv) and scores S = scale * Q K^T:

    lse = log sum_j exp(S_j)          per query, (B, H, Tq)
    out = sum_j exp(S_j - lse) V_j    = softmax(S) V, (B, H, Tq, Dv)

An empty key set (Tk = 0) has lse = -inf and out = 0. Attention over a union of disjoint key sets
K_1 u ... u K_n is exactly a merge of each set's (out_i, lse_i):

    lse = log sum_i exp(lse_i)
    out = sum_i exp(lse_i - lse) out_i

so with shared image keys I and small text sets C (the prompt, each region's prompt),
A(Q, [C ; I]) = merge(A(Q, C), A(Q, I)): O_I, lse_I are computed once and each region adds only its
text part. A key set that some queries must not see is dropped for them by setting its lse to -inf there.

Kernels (``KERNELS``) are picked by :func:`choose_kernel` from torch's own SDPA backend choice for the
inputs; shapes and dtypes no fused kernel takes run the blocked plain-torch path. Ground floor of the
attention package: imports only torch.
"""
from __future__ import annotations

import math

import torch
from torch.nn.attention import SDPBackend

BLOCK_BYTES = 4 * 2**20  # blocked path: the scores of one query block stay within this


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types and float32, float64 for float64: the accumulation and lse dtype."""
    return torch.promote_types(dtype, torch.float32)


def blocked(q, k, v, scale: float, block_bytes: int = BLOCK_BYTES):
    """Plain torch, query blocks whose scores take at most ``block_bytes``; per block, in compute_dtype:
        S = scale * Q_b K^T,  lse = logsumexp_j S,  out = exp(S - lse) V.
    Tk = 0 gives lse = -inf and out = 0 (logsumexp and a matmul over an empty dimension)."""
    acc = compute_dtype(q.dtype)
    *batch, tq, _ = q.shape
    k, v = k.to(acc), v.to(acc)
    out = q.new_empty((*batch, tq, v.shape[-1]))
    lse = torch.empty((*batch, tq), dtype=acc, device=q.device)
    row_bytes = math.prod(batch) * k.shape[-2] * torch.finfo(acc).bits // 8
    rows = max(1, block_bytes // max(1, row_bytes))
    for start in range(0, tq, rows):
        block = slice(start, start + rows)
        scores = scale * torch.matmul(q[..., block, :].to(acc), k.transpose(-1, -2))
        block_lse = torch.logsumexp(scores, dim=-1)
        out[..., block, :] = torch.matmul(torch.exp(scores - block_lse[..., None]), v)
        lse[..., block] = block_lse
    return out, lse


def cpu_flash(q, k, v, scale: float):
    """aten::_scaled_dot_product_flash_attention_for_cpu -> (out, logsumexp). out is like q (q's dtype and
    strides); logsumexp is (B, H, Tq), a transposed view of a (B, Tq, H) buffer, in float32 for
    float32/bfloat16/float16 inputs and float64 for float64. Requires D == Dv and Tq, Tk > 0 (an empty
    sequence ends the process with SIGFPE in torch 2.14.1: attention_with_lse never sends one here)."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, dropout_p=0.0, is_causal=False, attn_mask=None, scale=scale)
    return out, lse


def cuda_flash(q, k, v, scale: float):
    """aten::_scaled_dot_product_flash_attention (fp16/bf16): logsumexp (B, H, Tq) float32. As torch's
    SDPA does before this op, the head dim is zero-padded to a multiple of 8 (zeros add 0 to every score)
    and the output sliced back."""
    head_dim = q.shape[-1]
    pad = -head_dim % 8
    if pad:
        q, k, v = (torch.nn.functional.pad(t, (0, pad)) for t in (q, k, v))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention(
        q, k, v, dropout_p=0.0, is_causal=False, return_debug_mask=False, scale=scale)[:2]
    return out[..., :head_dim], lse


def cuda_efficient(q, k, v, scale: float):
    """aten::_scaled_dot_product_efficient_attention(compute_log_sumexp=True): logsumexp float32
    (B, H, ceil(Tq / 32) * 32) on CUDA, (B, H, Tq) on ROCm; the first Tq entries are the queries'."""
    out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, attn_bias=None, compute_log_sumexp=True, dropout_p=0.0, is_causal=False, scale=scale)[:2]
    return out, lse[..., :q.shape[-2]]


def cuda_cudnn(q, k, v, scale: float):
    """aten::_scaled_dot_product_cudnn_attention(compute_log_sumexp=True): logsumexp float32 (B, H, Tq, 1)."""
    out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(
        q, k, v, attn_bias=None, compute_log_sumexp=True, dropout_p=0.0, is_causal=False,
        return_debug_mask=False, scale=scale)[:2]
    return out, lse[..., 0]


KERNELS = {"cpu_flash": cpu_flash, "cuda_flash": cuda_flash, "cuda_efficient": cuda_efficient,
           "cuda_cudnn": cuda_cudnn, "blocked": blocked}

# (device type, torch's SDPA backend choice) -> the kernel here that runs that backend with its lse.
FUSED = {("cpu", SDPBackend.FLASH_ATTENTION): "cpu_flash",
         ("cuda", SDPBackend.FLASH_ATTENTION): "cuda_flash",
         ("cuda", SDPBackend.EFFICIENT_ATTENTION): "cuda_efficient",
         ("cuda", SDPBackend.CUDNN_ATTENTION): "cuda_cudnn"}


def choose_kernel(q, k, v, scale: float) -> str:
    """The fused kernel torch's own SDPA would run on these inputs (torch._fused_sdp_choice checks the
    device, dtypes, head dims, strides, GPU architecture and the torch.backends SDPA switches), where a
    kernel here returns its lse; otherwise, and for empty sequences and other devices (MPS, XPU,
    DirectML: torch is not asked there), "blocked"."""
    if q.shape[-2] == 0 or k.shape[-2] == 0 or q.device.type not in ("cpu", "cuda"):
        return "blocked"
    choice = SDPBackend(torch._fused_sdp_choice(q, k, v, None, 0.0, False, scale=scale))
    return FUSED.get((q.device.type, choice), "blocked")


def check_shapes(q, k, v):
    if not q.dim() == k.dim() == v.dim() == 4:
        raise ValueError(f"q, k, v must be (B, H, T, D); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.shape[:2] == k.shape[:2] == v.shape[:2] and k.shape[2] == v.shape[2] and q.shape[3] == k.shape[3]):
        raise ValueError(f"q, k, v shapes do not match: {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype and q.device == k.device == v.device):
        raise ValueError(f"q, k, v differ in dtype or device: {q.dtype}/{k.dtype}/{v.dtype}, "
                         f"{q.device}/{k.device}/{v.device}")


def attention_with_lse(q, k, v, scale: float | None = None, kernel: str | None = None):
    """(out, lse) of softmax(scale * Q K^T) V, lse = logsumexp_j(scale * Q K^T) (see the module docstring).

    q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv), same dtype and device; scale defaults to D**-0.5.
    Returns out (B, H, Tq, Dv) in q's dtype (possibly a strided view) and lse (B, H, Tq) in
    compute_dtype(q.dtype). Tk = 0 is allowed: lse = -inf, out = 0 (the empty set's part of a merge).
    ``kernel`` (a KERNELS name) forces a kernel, for tests; by default choose_kernel picks one.
    Empty sequences always run "blocked": no fused kernel takes them. No mask: split the keys into sets.
    """
    check_shapes(q, k, v)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if q.shape[-2] == 0 or k.shape[-2] == 0:
        kernel = "blocked"
    out, lse = KERNELS[kernel or choose_kernel(q, k, v, scale)](q, k, v, scale)
    return out, lse.to(compute_dtype(q.dtype))


def merge_attention(parts):
    """(out, lse) of attention over the union of disjoint key sets of the same queries, from each
    set's (out_i, lse_i), out_i (B, H, Tq, Dv), lse_i (B, H, Tq):

        m = max_i lse_i,  w_i = exp(lse_i - m)   (<= 1; the largest part's is 1, so sum_i w_i >= 1)
        lse = m + log sum_i w_i
        out = sum_i (w_i / sum_j w_j) out_i

    in compute_dtype; out is returned in the outs' (promoted) dtype, lse in compute_dtype. A part
    with lse = -inf (an empty key set, or a set masked out for some queries) has weight 0; its out must be
    finite (attention_with_lse gives 0). Where every part is -inf the union is empty: out = 0,
    lse = -inf, no NaN.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("merge_attention needs at least one (out, lse) part")
    outs = [out for out, _ in parts]
    out_dtype = outs[0].dtype
    for out, lse in parts:
        if out.shape != outs[0].shape or lse.shape != out.shape[:-1]:
            raise ValueError(f"parts must share out (B, H, Tq, Dv) and lse (B, H, Tq) shapes; "
                             f"got {tuple(out.shape)} and {tuple(lse.shape)} beside {tuple(outs[0].shape)}")
        out_dtype = torch.promote_types(out_dtype, out.dtype)
    acc = compute_dtype(out_dtype)
    lses = torch.stack([lse.to(acc) for _, lse in parts])
    peak = lses.amax(dim=0)
    peak = peak.masked_fill(peak == -math.inf, 0.0)  # every part empty: exp(-inf - 0) = 0, not NaN
    weights = torch.exp(lses - peak)
    total = weights.sum(dim=0)
    shares = weights / total.masked_fill(total == 0, 1.0)
    out = torch.zeros(outs[0].shape, dtype=acc, device=outs[0].device)
    for share, part in zip(shares, outs):
        out.addcmul_(part, share[..., None])  # out += share_i * out_i, in acc
    return out.to(out_dtype), peak + torch.log(total)
