"""Attention with its log-sum-exp, and the merge of attention over disjoint key sets.

Every kernel is held to the formula computed straight in float64 on the same (rounded) inputs:
    S = scale * Q K^T,  lse = logsumexp_j S,  out = softmax(S) V,
within rounding-error bounds derived from the dtypes and the data's magnitudes (error_bounds below), and
the merge to attention over the concatenated keys: A(Q, [K_1 ; ... ; K_n]) = merge(A(Q, K_1), ..., A(Q, K_n)).
"""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel

from tests.pack import pack_module
from tests.tolerance import assert_exact

lse_attention = pack_module("attention.core.lse_attention")
attention_with_lse = lse_attention.attention_with_lse
merge_attention = lse_attention.merge_attention

CPU_KERNELS = ["cpu_flash", "blocked"]
CUDA_KERNELS = {"cuda_flash": SDPBackend.FLASH_ATTENTION, "cuda_efficient": SDPBackend.EFFICIENT_ATTENTION,
                "cuda_cudnn": SDPBackend.CUDNN_ATTENTION}
HEAD_DIMS = [32, 64, 80, 128]
PROPERTY = settings(max_examples=12, deadline=None, derandomize=True, database=None)


def reference(q, k, v, scale):
    """softmax(scale Q K^T) V and logsumexp_j(scale Q K^T), in float64 from the inputs as given."""
    scores = scale * (q.double() @ k.double().transpose(-1, -2))
    return torch.softmax(scores, dim=-1) @ v.double(), torch.logsumexp(scores, dim=-1)


def error_bounds(q, k, v, scale, lse):
    """Rounding-error bounds, per query, of attention accumulated in float32 (float64 for float64 inputs)
    against the exact result on the same inputs. u = eps of the accumulation dtype, u_io = eps of the
    inputs' dtype (eps is twice the unit roundoff: a factor 2 of headroom in every term):
      scores  |dS_j| <= (D + 2) u scale sum_d |q_d k_jd| =: s    (a length-D dot product, Higham's gamma_D; the scaling)
      lse     |dlse| <= s + (Tk + 4) u + 2 u |lse| + 2 u_io      (Tk exps and their sum, the log; m + log rounded)
      out     |dout| <= (2 s + (2 Tk + 8) u + 4 u |lse|) max|v| + 4 u_io max|v|
              (a probability exp(S_j - lse) is off by at most dS_j + dlse + u, relatively; then the P V sum)
    The u_io terms: for half inputs torch's CPU flash kernel takes exp with a fast polynomial (at::vec
    fexp_u20, documented as accurate to 1 ulp of fp16 / bf16, not of float32; seen moving the float32 lse by
    6e-5 under ATEN_CPU_CAPABILITY=avx2), and rounds P and out to the inputs' dtype. For float32 and float64
    inputs u_io = u: a few ulps more.
    Returns (lse bound (B, H, Tq), out bound (B, H, Tq, 1))."""
    u = torch.finfo(lse_attention.compute_dtype(q.dtype)).eps
    u_io = torch.finfo(q.dtype).eps
    head_dim, keys = q.shape[-1], k.shape[-2]
    s = (head_dim + 2) * u * scale * (q.double().abs() @ k.double().abs().transpose(-1, -2)).amax(dim=-1)
    v_max = v.double().abs().amax(dim=(-1, -2))[..., None]
    lse_bound = s + (keys + 4) * u + 2 * u * lse.abs() + 2 * u_io
    out_bound = (2 * s + (2 * keys + 8) * u + 4 * u * lse.abs()) * v_max + 4 * u_io * v_max
    return lse_bound, out_bound[..., None]


def assert_within(got, want, bound, what):
    err = (got.double() - want).abs()
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    ok = (err <= bound) | ((got.double() == want) & want.isinf())  # -inf lse of an empty set: equal
    assert ok.all(), f"{what}: error {(err / bound).nan_to_num(posinf=math.inf).max():.3g} x the bound " \
                     f"(max error {err.nan_to_num(nan=math.inf).max():.3g})"


def assert_matches_formula(q, k, v, scale, out, lse):
    want_out, want_lse = reference(q, k, v, scale)
    lse_bound, out_bound = error_bounds(q, k, v, scale, want_lse)
    assert_within(lse, want_lse, lse_bound, "lse")
    assert_within(out, want_out, out_bound, "out")


def qkv(seed, batch, heads, tq, tk, head_dim, dtype=torch.float32, value_dim=None):
    g = torch.Generator().manual_seed(seed)
    make = lambda t, d: torch.randn(batch, heads, t, d, generator=g).to(dtype)  # noqa: E731
    return make(tq, head_dim), make(tk, head_dim), make(tk, value_dim or head_dim)


batch_heads = st.sampled_from([(1, 1), (1, 2), (2, 2), (1, 8), (2, 4), (4, 2)])


@pytest.mark.parametrize("kernel", CPU_KERNELS)
@PROPERTY
@given(bh=batch_heads, head_dim=st.sampled_from(HEAD_DIMS), tq=st.integers(1, 70), tk=st.integers(1, 70),
       gain=st.sampled_from([1.0, 4.0]), seed=st.integers(0, 2**16))
def test_float32_matches_formula(kernel, bh, head_dim, tq, tk, gain, seed):
    q, k, v = qkv(seed, *bh, tq, tk, head_dim)
    scale = head_dim ** -0.5
    out, lse = attention_with_lse(q * gain, k, v, kernel=kernel)
    assert out.dtype == torch.float32 and lse.dtype == torch.float32
    assert_matches_formula(q * gain, k, v, scale, out, lse)


@pytest.mark.parametrize("kernel", CPU_KERNELS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@PROPERTY
@given(bh=batch_heads, head_dim=st.sampled_from(HEAD_DIMS), tq=st.integers(1, 70), tk=st.integers(1, 70),
       seed=st.integers(0, 2**16))
def test_half_inputs_match_formula_with_float32_lse(kernel, dtype, bh, head_dim, tq, tk, seed):
    q, k, v = qkv(seed, *bh, tq, tk, head_dim, dtype)
    out, lse = attention_with_lse(q, k, v, kernel=kernel)
    assert out.dtype == dtype and lse.dtype == torch.float32
    assert_matches_formula(q, k, v, head_dim ** -0.5, out, lse)


@pytest.mark.parametrize("kernel", CPU_KERNELS)
def test_float64_inputs_keep_float64(kernel):
    q, k, v = qkv(3, 2, 3, 29, 41, 64, torch.float64)
    out, lse = attention_with_lse(q, k, v, scale=0.3, kernel=kernel)
    assert out.dtype == lse.dtype == torch.float64
    assert_matches_formula(q, k, v, 0.3, out, lse)


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_blocked_splits_queries_into_blocks(rows):
    """Tq = 37 is a multiple of none of the block heights; the budget allows exactly `rows` query rows."""
    q, k, v = qkv(rows, 2, 2, 37, 50, 32)
    row_bytes = 2 * 2 * 50 * 4
    out, lse = lse_attention.blocked(q, k, v, 0.2, block_bytes=rows * row_bytes + row_bytes - 1)
    assert_matches_formula(q, k, v, 0.2, out, lse)


def test_blocked_takes_a_value_dim_unlike_the_key_dim():
    q, k, v = qkv(4, 1, 2, 9, 12, 64, value_dim=16)
    assert lse_attention.choose_kernel(q, k, v, 0.125) == "blocked"  # torch's fused kernels need D == Dv
    out, lse = attention_with_lse(q, k, v, scale=0.125)
    assert out.shape == (1, 2, 9, 16)
    assert_matches_formula(q, k, v, 0.125, out, lse)


@pytest.mark.parametrize("kernel", [None, *lse_attention.KERNELS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_empty_key_set_is_zero_out_and_minus_infinite_lse(kernel, dtype):
    """Tk = 0 never reaches a fused kernel, even a forced one (the CPU flash kernel dies with SIGFPE)."""
    q, k, v = qkv(5, 1, 2, 6, 0, 32, dtype)
    out, lse = attention_with_lse(q, k, v, kernel=kernel)
    assert out.dtype == dtype and torch.equal(out, torch.zeros(1, 2, 6, 32, dtype=dtype))
    assert torch.equal(lse, torch.full((1, 2, 6), -math.inf))
    out, lse = attention_with_lse(*qkv(5, 1, 2, 0, 4, 32, dtype), kernel=kernel)
    assert out.shape == (1, 2, 0, 32) and lse.shape == (1, 2, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_cpu_picks_torchs_flash_kernel_and_blocked_where_torch_would_not(dtype):
    q, k, v = qkv(6, 1, 2, 5, 7, 64, dtype)
    assert lse_attention.choose_kernel(q, k, v, 0.125) == "cpu_flash"
    with sdpa_kernel([SDPBackend.MATH]):  # the user's SDPA switches are obeyed
        assert lse_attention.choose_kernel(q, k, v, 0.125) == "blocked"
    assert lse_attention.choose_kernel(q, k[..., :0, :], v[..., :0, :], 0.125) == "blocked"
    meta = [t.to("meta") for t in (q, k, v)]  # a device with no kernel here: torch is not asked
    assert lse_attention.choose_kernel(*meta, 0.125) == "blocked"


@pytest.mark.parametrize("kernel", CUDA_KERNELS)
@pytest.mark.parametrize("head_dim", [20, 80])
def test_cuda_kernels_return_bhq_lse_on_meta_tensors(kernel, head_dim):
    """Layouts from torch's meta registrations: efficient pads lse to a multiple of 32 queries, cuDNN's is
    (B, H, Tq, 1); flash pads the head dim to a multiple of 8. Each kernel hands back out (B, H, Tq, D),
    lse (B, H, Tq) float32."""
    q, k, v = (torch.empty(2, 3, t, head_dim, dtype=torch.float16, device="meta") for t in (37, 9, 9))
    out, lse = lse_attention.KERNELS[kernel](q, k, v, 0.1)
    assert out.shape == (2, 3, 37, head_dim) and out.dtype == torch.float16
    assert lse.shape == (2, 3, 37) and lse.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kernel", CUDA_KERNELS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("head_dim", [20, 64, 80, 128])
def test_cuda_kernels_match_formula(kernel, dtype, head_dim):
    q, k, v = (t.cuda() for t in qkv(7, 2, 3, 77, 50, head_dim, dtype))
    with sdpa_kernel([CUDA_KERNELS[kernel]]):
        if lse_attention.choose_kernel(q, k, v, 0.1) != kernel:
            pytest.skip(f"torch runs no {kernel} for {dtype}, head dim {head_dim} on this GPU")
    out, lse = attention_with_lse(q, k, v, scale=0.1, kernel=kernel)
    assert out.dtype == dtype and lse.dtype == torch.float32
    assert_matches_formula(q.cpu(), k.cpu(), v.cpu(), 0.1, out.cpu(), lse.cpu())


def test_rejects_inputs_that_are_not_attention():
    q, k, v = qkv(8, 1, 2, 5, 7, 32)
    for bad in [(q[0], k[0], v[0]), (q, k[:, :1], v[:, :1]), (q, k[..., :16], v), (q, k, v[..., :3, :]),
                (q, k.half(), v)]:
        with pytest.raises(ValueError):
            attention_with_lse(*bad)


# --- merge ------------------------------------------------------------------------------------------

def key_sets(seed, batch, heads, tq, sizes, head_dim, offsets, dtype):
    """Q and n key/value sets; set i's scores are shifted by offsets[i] (q's first feature is 1, so a key's
    first feature adds offset / scale to every score of it)."""
    g = torch.Generator().manual_seed(seed)
    scale = head_dim ** -0.5
    q = torch.randn(batch, heads, tq, head_dim, generator=g, dtype=torch.float64)
    q[..., 0] = 1.0
    sets = []
    for size, offset in zip(sizes, offsets):
        k, v = (torch.randn(batch, heads, size, head_dim, generator=g, dtype=torch.float64) for _ in range(2))
        k[..., 0] = offset / scale
        sets.append((k.to(dtype), v.to(dtype)))
    return q.to(dtype), sets, scale


def merge_bounds(q, k, v, scale, lse, parts):
    """The bounds of attention over all keys (each part's are smaller), widened by the merge: a part's lse
    error dlse moves its share by at most 2 dlse (relatively); the merge's own rounding over n parts:
      lse  + (n + 4) u + 2 u |lse|,   out  + (2 dlse + (2 n + 6) u) max|v|."""
    lse_bound, out_bound = error_bounds(q, k, v, scale, lse)
    u = torch.finfo(lse_attention.compute_dtype(q.dtype)).eps
    n, v_max = len(parts), v.double().abs().amax(dim=(-1, -2))[..., None, None]
    return (lse_bound + (n + 4) * u + 2 * u * lse.abs(),
            out_bound + (2 * lse_bound[..., None] + (2 * n + 6) * u) * v_max)


def concatenated(sets):
    return torch.cat([k for k, _ in sets], dim=-2), torch.cat([v for _, v in sets], dim=-2)


@PROPERTY
@given(bh=batch_heads, head_dim=st.sampled_from(HEAD_DIMS), tq=st.integers(1, 50),
       sizes=st.lists(st.integers(1, 12), min_size=2, max_size=8).map(lambda s: [1, *s[1:]]),
       big=st.sampled_from([80.0, -80.0, 120.0, -120.0, 0.0]), dtype=st.sampled_from([torch.float64, torch.float32]),
       seed=st.integers(0, 2**16))
def test_merge_equals_attention_over_the_concatenated_keys(bh, head_dim, tq, sizes, big, dtype, seed):
    """2..8 key sets, one with a single key, one whose scores are offset by +-80 or +-120 (exp(120) overflows
    float32 and exp(-120) is 0 there: only max-subtracted weights survive them)."""
    offsets = [0.0] * len(sizes)
    offsets[seed % len(sizes)] = big
    q, sets, scale = key_sets(seed, *bh, tq, sizes, head_dim, offsets, dtype)
    parts = [attention_with_lse(q, k, v) for k, v in sets]
    out, lse = merge_attention(parts)
    assert out.dtype == dtype and lse.dtype == lse_attention.compute_dtype(dtype)
    k, v = concatenated(sets)
    want_out, want_lse = reference(q, k, v, scale)
    lse_bound, out_bound = merge_bounds(q, k, v, scale, want_lse, parts)
    assert_within(lse, want_lse, lse_bound, "merged lse")
    assert_within(out, want_out, out_bound, "merged out")


@pytest.mark.parametrize("head_dim", [32, 64])
def test_regions_share_one_image_part(head_dim):
    """A(Q, [C ; I]) for the prompt D and each region's prompt L_i from one O_I, lse_I and a small text part each."""
    q, sets, scale = key_sets(9, 2, 3, 64, [300, 8, 8, 8, 8], head_dim, [0.0] * 5, torch.float32)
    image = attention_with_lse(q, *sets[0])
    for text in sets[1:]:
        out, lse = merge_attention([attention_with_lse(q, *text), image])
        k, v = concatenated([text, sets[0]])
        want_out, want_lse = reference(q, k, v, scale)
        lse_bound, out_bound = merge_bounds(q, k, v, scale, want_lse, [text, image])
        assert_within(lse, want_lse, lse_bound, "lse of [C ; I]")
        assert_within(out, want_out, out_bound, "A(Q, [C ; I])")


@pytest.mark.parametrize("offset", [0.0, 80.0, 120.0])
def test_dropping_the_lse_weighting_fails(offset):
    """The bounds above are tight enough to catch a merge that ignores lse (equal weights, weights by key
    count) or takes exp(lse) without subtracting the max (inf / inf past exp(88.7) in float32)."""
    q, sets, scale = key_sets(10, 1, 2, 16, [8, 40], 64, [offset, 0.0], torch.float32)
    parts = [attention_with_lse(q, k, v) for k, v in sets]
    k, v = concatenated(sets)
    want_out, want_lse = reference(q, k, v, scale)
    _, out_bound = merge_bounds(q, k, v, scale, want_lse, parts)
    (out_c, lse_c), (out_i, lse_i) = parts
    wrong = {"equal weights": (out_c + out_i) / 2, "weights by key count": (8 * out_c + 40 * out_i) / 48}
    if offset > 88.7:
        weights = lse_c.exp()[..., None], lse_i.exp()[..., None]
        wrong["exp(lse) unshifted"] = (weights[0] * out_c + weights[1] * out_i) / (weights[0] + weights[1])
    for name, out in wrong.items():
        with pytest.raises(AssertionError):
            assert_within(out, want_out, out_bound, name)
    assert_within(merge_attention(parts)[0], want_out, out_bound, "merge")


def test_an_empty_part_changes_nothing_and_all_empty_is_the_empty_set():
    q, sets, scale = key_sets(11, 1, 2, 5, [6, 7], 32, [0.0, 0.0], torch.float32)
    parts = [attention_with_lse(q, k, v) for k, v in sets]
    empty = attention_with_lse(q, sets[0][0][..., :0, :], sets[0][1][..., :0, :])
    with_empty = merge_attention([empty, *parts, empty])
    without = merge_attention(parts)
    assert_exact(with_empty[0], without[0], "an empty part: out")  # weight exactly 0, max unchanged
    assert_exact(with_empty[1], without[1], "an empty part: lse")
    out, lse = merge_attention([empty, empty])
    assert torch.equal(out, torch.zeros_like(out)) and torch.equal(lse, torch.full_like(lse, -math.inf))


def test_minus_infinite_lse_drops_a_part_for_those_queries():
    """Regional use: queries outside a region do not see its text part."""
    q, sets, scale = key_sets(12, 1, 2, 10, [6, 30], 32, [0.0, 0.0], torch.float32)
    text, image = (attention_with_lse(q, k, v) for k, v in sets)
    outside = torch.arange(10) % 3 == 0
    masked_text = (text[0], text[1].masked_fill(outside, -math.inf))
    out, lse = merge_attention([masked_text, image])
    assert_exact(out[..., outside, :], image[0][..., outside, :], "out where the set is dropped")
    assert_exact(lse[..., outside], image[1][..., outside], "lse where the set is dropped")
    inside = merge_attention([text, image])
    assert_exact(out[..., ~outside, :], inside[0][..., ~outside, :], "out where it is kept")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_merge_of_half_parts_accumulates_in_float32(dtype):
    q, sets, scale = key_sets(13, 2, 2, 24, [5, 60, 1], 64, [0.0, 0.0, 0.0], dtype)
    parts = [attention_with_lse(q, k, v) for k, v in sets]
    out, lse = merge_attention(parts)
    assert out.dtype == dtype and lse.dtype == torch.float32
    k, v = concatenated(sets)
    want_out, want_lse = reference(q, k, v, scale)
    lse_bound, out_bound = merge_bounds(q, k, v, scale, want_lse, parts)
    eps = torch.finfo(dtype).eps  # each part's out and the merged out are rounded to the half dtype
    out_bound = out_bound + 2 * eps * v.double().abs().amax(dim=(-1, -2))[..., None, None]
    assert_within(lse, want_lse, lse_bound, "merged lse")
    assert_within(out, want_out, out_bound, "merged out")


def test_merge_of_one_part_is_that_part():
    q, k, v = qkv(14, 1, 2, 5, 7, 32)
    out, lse = attention_with_lse(q, k, v)
    merged = merge_attention([(out, lse)])
    assert_exact(merged[0], out, "one part's out")
    assert_exact(merged[1], lse, "one part's lse")


def test_merge_rejects_mismatched_parts():
    q, k, v = qkv(15, 1, 2, 5, 7, 32)
    part = attention_with_lse(q, k, v)
    with pytest.raises(ValueError):
        merge_attention([])
    with pytest.raises(ValueError):
        merge_attention([part, (part[0][..., :3, :], part[1][..., :3])])
