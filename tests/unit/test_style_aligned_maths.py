"""StyleAligned's shared attention equals a straightforward per-row formula (peers.md)."""
import math

import pytest
import torch

from tests.pack import pack_module
from tests.tolerance import ONE_CALL, OPS, assert_changed, assert_close, assert_exact

sa = pack_module("attention.style_aligned")
rows = pack_module("attention.core.rows")

HEADS, DIM = 2, 8


def reference_formula(q, k, v, layout, share, adain_q, adain_k, adain_v, scale, shift):
    """Loop over chunks and rows, per head, exactly as the paper writes it."""
    out = torch.empty_like(q)
    def stats(x):  # (T, C): mean and unbiased std over tokens per channel
        return x.mean(0), torch.sqrt(x.var(0, unbiased=True) + 1e-5)
    def ada(x, r):
        mx, sx = stats(x)
        mr, sr = stats(r)
        return (x - mx) / sx * sr + mr
    for c in range(layout.chunks):
        r0 = c * layout.rows
        for i in range(layout.rows):
            row = r0 + i
            qi, ki, vi = q[row], k[row], v[row]
            keys, vals, bias = ki, vi, torch.zeros(ki.shape[0], dtype=q.dtype)
            if i > 0:
                if adain_q: qi = ada(qi, q[r0])
                if adain_k: ki = ada(ki, k[r0])
                if adain_v: vi = ada(vi, v[r0])
                keys, vals = ki, vi
                if share:
                    keys = torch.cat([ki, scale * k[r0]])
                    vals = torch.cat([vi, v[r0]])
                    bias = torch.cat([torch.zeros(ki.shape[0], dtype=q.dtype),
                                      torch.full((ki.shape[0],), shift, dtype=q.dtype)])
                else:
                    bias = torch.zeros(ki.shape[0], dtype=q.dtype)
            heads_out = []
            for h in range(HEADS):
                sl = slice(h * DIM, (h + 1) * DIM)
                scores = qi[:, sl] @ keys[:, sl].T / math.sqrt(DIM) + bias
                heads_out.append(scores.softmax(-1) @ vals[:, sl])
            out[row] = torch.cat(heads_out, dim=-1)
    return out


def sdpa(q, k, v, mask):
    b, n, _ = q.shape
    split = lambda t: t.view(t.shape[0], t.shape[1], HEADS, DIM).transpose(1, 2)
    o = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
    return o.transpose(1, 2).reshape(b, n, HEADS * DIM)


def fused_sdpa(calls):
    """A fused kernel's contract: no mask, softmax scale 1/sqrt(head size of the tensors it gets).
    Records the head size of every call."""
    def attention(q, k, v, mask):
        assert mask is None, "a fused kernel takes no mask"
        b, n, width = q.shape
        calls.append(width // HEADS)
        split = lambda t: t.view(t.shape[0], t.shape[1], HEADS, width // HEADS).transpose(1, 2)
        o = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
        return o.transpose(1, 2).reshape(b, n, width)
    return attention


CASES = [
    (True, True, True, False, 1.0, 0.0),
    (True, True, True, True, 1.0, 0.0),
    (True, False, False, False, 1.5, 0.0),
    (True, True, True, False, 0.8, math.log(2)),
    (False, True, True, False, 1.0, 0.0),
    (True, False, True, False, 1.0, -1.0),
]


@pytest.fixture(params=[False, True], ids=["row 0 apart", "row 0 in the shared call"])
def row0_plan(request, monkeypatch):
    """Both ways of computing row 0 (a call of its own, or in the generated rows' call)."""
    monkeypatch.setattr(sa, "reference_in_shared_call", lambda *args: request.param)
    return request.param


@pytest.mark.parametrize("share,adain_q,adain_k,adain_v,scale,shift", CASES)
@pytest.mark.parametrize("cond_or_uncond", [[1, 0], [0], [1], [1, 0, 0]])
def test_shared_attention_matches_formula(share, adain_q, adain_k, adain_v, scale, shift, cond_or_uncond, row0_plan):
    torch.manual_seed(0)
    B, T = 3, 5
    n = B * len(cond_or_uncond)
    q, k, v = (torch.randn(n, T, HEADS * DIM, dtype=torch.float64) for _ in range(3))
    layout = rows.chunk_layout(n, cond_or_uncond)
    settings = sa.SharingSettings(share, adain_q, adain_k, adain_v, scale, shift)
    got = sa.shared_attention(q, k, v, layout, settings, sdpa)
    want = reference_formula(q, k, v, layout, share, adain_q, adain_k, adain_v, scale, shift)
    assert_close(got, want, ulps=ONE_CALL, what="shared attention vs the formula")


def test_reference_rows_are_their_unshared_attention(row0_plan):
    """Row 0 in a call of its own: bit for bit; in the generated rows' call, attending to two copies of
    its own keys (official StyleAligned): to float32 rounding, whatever the scale and shift."""
    torch.manual_seed(1)
    q, k, v = (torch.randn(8, 6, HEADS * DIM) for _ in range(3))
    layout = rows.chunk_layout(8, [1, 0])
    settings = sa.SharingSettings(True, True, True, True, 2.0, 1.0)
    got = sa.shared_attention(q, k, v, layout, settings, sdpa)
    plain = sdpa(q, k, v, None)
    for r in layout.reference_rows():
        if row0_plan:  # two copies of its keys in a call with the generated rows: rounding
            assert_close(got[r], plain[r], ulps=ONE_CALL, what=f"reference row {r} in the shared call")
        else:
            assert_exact(got[r], plain[r], f"reference row {r} in a call of its own")
    assert_changed(got[1], plain[1], what="generated row 1")


def test_neutral_settings_are_plain_attention():
    torch.manual_seed(2)
    q, k, v = (torch.randn(4, 6, HEADS * DIM) for _ in range(3))
    layout = rows.chunk_layout(4, [0])
    neutral = sa.SharingSettings(False, False, False, False)
    assert_exact(sa.shared_attention(q, k, v, layout, neutral, sdpa), sdpa(q, k, v, None), "neutral settings")


def test_single_row_batches_are_plain_attention():
    q, k, v = (torch.randn(2, 6, HEADS * DIM) for _ in range(3))
    layout = rows.chunk_layout(2, [1, 0])  # one row per chunk: nothing to share with
    assert_exact(sa.shared_attention(q, k, v, layout, sa.SharingSettings(), sdpa), sdpa(q, k, v, None),
                 "one row per chunk")


def test_adain_gives_reference_statistics():
    torch.manual_seed(3)
    x = torch.randn(2, 50, 4, dtype=torch.float64) * 3 + 1
    ref = torch.randn(1, 50, 4, dtype=torch.float64) * 0.5 - 2
    y = sa.adain(x, ref)
    assert_close(y.mean(-2), ref.mean(-2).expand(2, 4), ulps=OPS, magnitude_of=y, what="means")
    # sigma = sqrt(var + EPS) on both sides: the std is the reference's times sqrt((1 + EPS/var_ref) / (1 + EPS/var_x))
    carried = ((1 + sa.EPS / ref.var(-2)) / (1 + sa.EPS / x.var(-2))).sqrt()
    assert_close(y.std(-2), ref.std(-2) * carried, ulps=OPS, what="stds")


@pytest.mark.parametrize("share,adain_q,adain_k,adain_v,scale,shift", CASES + [
    (True, True, True, True, 2.0, 10.0), (True, False, False, False, 1.0, -10.0)])
@pytest.mark.parametrize("cond_or_uncond", [[1, 0], [0], [1, 0, 0]])
@pytest.mark.parametrize("pad", [1, 3, 8])
def test_folded_score_shift_matches_masked_formula(share, adain_q, adain_k, adain_v, scale, shift, cond_or_uncond,
                                                   pad, monkeypatch, row0_plan):
    """With the call's head count, a shift is carried by extra head channels: no mask reaches the
    kernel, and the result is the masked formula's (pad 1 = CPU, up to a multiple of 8 on GPUs)."""
    monkeypatch.setattr(sa, "fold_pad", lambda head_dim, device: pad)
    torch.manual_seed(4)
    B, T = 3, 5
    n = B * len(cond_or_uncond)
    q, k, v = (torch.randn(n, T, HEADS * DIM, dtype=torch.float64) for _ in range(3))
    layout = rows.chunk_layout(n, cond_or_uncond)
    calls = []
    got = sa.shared_attention(q, k, v, layout, sa.SharingSettings(share, adain_q, adain_k, adain_v, scale, shift),
                              fused_sdpa(calls), heads=HEADS)
    want = reference_formula(q, k, v, layout, share, adain_q, adain_k, adain_v, scale, shift)
    assert_close(got, want, ulps=ONE_CALL, what="folded shift vs the masked formula")
    folded = share and shift != 0.0
    if not folded:
        assert set(calls) == {DIM}
    else:  # no mask anywhere; row 0's own call (if apart) at the model's head size
        assert set(calls) == ({DIM + pad} if row0_plan else {DIM, DIM + pad})


def test_folded_constants_keep_the_softmax_scale():
    """q' = [g q, 1], k' = [k, x]: q'.k'/sqrt(d + pad) = q.k/sqrt(d) + shift."""
    torch.manual_seed(5)
    d, pad, shift = 40, 8, 0.693
    g, x = sa.folded_constants(shift, d, pad)
    qv, kv = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    q1 = torch.cat([g * qv, torch.tensor([1.0], dtype=torch.float64), torch.zeros(pad - 1, dtype=torch.float64)])
    k1 = torch.cat([kv, torch.tensor([x], dtype=torch.float64), torch.zeros(pad - 1, dtype=torch.float64)])
    k0 = torch.cat([kv, torch.zeros(pad, dtype=torch.float64)])
    assert_close(float(q1 @ k1) / math.sqrt(d + pad), float(qv @ kv) / math.sqrt(d) + shift, ulps=ONE_CALL,
                 magnitude_of=qv.abs() @ kv.abs(), what="shifted score")
    assert_close(float(q1 @ k0) / math.sqrt(d + pad), float(qv @ kv) / math.sqrt(d), ulps=ONE_CALL,
                 magnitude_of=qv.abs() @ kv.abs(), what="unshifted score")


def test_fold_pad_aligns_gpu_head_sizes():
    for d in (40, 64, 80, 128, 41):
        assert sa.fold_pad(d, torch.device("cpu")) == 1
        pad = sa.fold_pad(d, torch.device("meta"))  # any non-CPU device: fused kernels
        assert pad >= 1 and (d + pad) % 8 == 0


def test_folded_reference_rows_are_their_unshared_attention(row0_plan):
    torch.manual_seed(6)
    q, k, v = (torch.randn(8, 6, HEADS * DIM) for _ in range(3))
    layout = rows.chunk_layout(8, [1, 0])
    got = sa.shared_attention(q, k, v, layout, sa.SharingSettings(True, True, True, True, 2.0, 1.0),
                              fused_sdpa([]), heads=HEADS)
    plain = sdpa(q, k, v, None)
    for r in layout.reference_rows():
        if row0_plan:  # two copies of its keys in a call with the generated rows: rounding
            assert_close(got[r], plain[r], ulps=ONE_CALL, what=f"reference row {r} in the shared call")
        else:
            assert_exact(got[r], plain[r], f"reference row {r} in a call of its own")


def test_one_attention_call_per_small_layer_on_fused_kernels(monkeypatch):
    """Where attention is fused (a GPU) and the layer is small, all rows share one call (fewer
    launches); a large layer or the CPU gives row 0 a call of its own (fewer FLOPs)."""
    q, k, v = (torch.randn(8, 6, HEADS * DIM) for _ in range(3))
    for fused, calls_wanted in ((True, 1), (False, 2)):
        monkeypatch.setattr(sa, "materialises_scores", lambda device: not fused)
        for shift in (0.0, 0.7):
            calls = []
            sa.shared_attention(q, k, v, rows.chunk_layout(8, [1, 0]), sa.SharingSettings(score_shift=shift),
                                fused_sdpa(calls), heads=HEADS)
            assert len(calls) == calls_wanted, (fused, shift, calls)  # CPU: scores this small fit one block
    monkeypatch.setattr(sa, "materialises_scores", lambda device: False)
    assert sa.reference_in_shared_call(torch.device("cuda"), 2, 1024, 320)  # SD1.5 32x32 layers at 512 px
    assert not sa.reference_in_shared_call(torch.device("cuda"), 2, 4096, 320)  # its 64x64 layers


@pytest.mark.parametrize("shift", [0.0, 0.5])
@pytest.mark.parametrize("plain", [True, False])
def test_cpu_blocks_bound_the_score_matrix_and_keep_the_maths(monkeypatch, shift, plain):
    """Where scores are materialised (the CPU) the generated rows' call runs in blocks of at most
    SCORE_BLOCK_BYTES of scores (rows, then query tokens, where the attention is ComfyUI's own; whole
    rows of at most the unshared batch's scores below another pack's replace); same maths, row 0 bit
    for bit."""
    torch.manual_seed(8)
    T = 12
    q, k, v = (torch.randn(8, T, HEADS * DIM, dtype=torch.float64) for _ in range(3))
    layout = rows.chunk_layout(8, [1, 0])
    settings = sa.SharingSettings(True, True, True, False, 1.2, shift)
    shapes = []

    def recording(q_, k_, v_, m):
        shapes.append((q_.shape[0], q_.shape[1], k_.shape[1]))
        return sdpa(q_, k_, v_, m)
    budget = 4 * 2 * T * 5  # five query rows of one generated row's scores (heads not given: counted as one)
    monkeypatch.setattr(sa, "SCORE_BLOCK_BYTES", budget)
    got = sa.shared_attention(q, k, v, layout, settings, recording, reference_apart=not plain,
                              plain_attention=plain)
    want = reference_formula(q, k, v, layout, True, True, True, False, 1.2, shift)
    assert_close(got, want, ulps=ONE_CALL, what="blocked shared attention vs the formula")
    plain_rows = sdpa(q, k, v, None)
    for r in layout.reference_rows():
        assert_exact(got[r], plain_rows[r], f"reference row {r}")
    generated = [s for s in shapes if s[2] == 2 * T]
    assert sum(n * t for n, t, _ in generated) == 6 * T  # every generated query exactly once
    if plain:
        assert all(4 * n * t * keys <= budget for n, t, keys in generated)
        assert len(generated) == 6 * 3  # 12 queries per row in 3 even slices of 4
    else:
        assert [(n, t) for n, t, _ in generated] == [(4, T), (2, T)]  # whole rows, as the unshared call


def test_cpu_blocks_with_the_folded_shift(monkeypatch):
    """The folded score shift (extra head channels) in query blocks: the masked formula's values."""
    torch.manual_seed(9)
    T = 12
    q, k, v = (torch.randn(8, T, HEADS * DIM, dtype=torch.float64) for _ in range(3))
    layout = rows.chunk_layout(8, [1, 0])
    settings = sa.SharingSettings(True, True, True, False, 0.8, 0.5)
    calls = []
    monkeypatch.setattr(sa, "SCORE_BLOCK_BYTES", 4 * HEADS * 2 * T * 5)
    got = sa.shared_attention(q, k, v, layout, settings, fused_sdpa(calls), heads=HEADS)
    want = reference_formula(q, k, v, layout, True, True, True, False, 0.8, 0.5)
    assert_close(got, want, ulps=ONE_CALL, what="blocked folded shift vs the formula")
    assert len(calls) == 1 + 6 * 3  # row 0's call, then 6 generated rows x 3 query blocks


def test_score_blocks_split_rows_first_then_queries():
    assert sa.score_blocks(6, 1024, 2048, 8, 8 << 20) == [(r, r + 1, t, t + 128) for r in range(6)
                                                           for t in range(0, 1024, 128)]
    assert sa.score_blocks(6, 256, 512, 8, 8 << 20) == [(0, 2, 0, 256), (2, 4, 0, 256), (4, 6, 0, 256)]
    assert sa.score_blocks(3, 10, 20, 1, 1 << 30) == [(0, 3, 0, 10)]
    assert sa.score_blocks(1, 10, 20, 1, 1) == [(0, 1, t, t + 1) for t in range(10)]  # one query at least


def test_fp16_folded_shift_stays_close_to_masked():
    """Half precision (GPU dtype): the fold's rounding is that of ordinary attention."""
    torch.manual_seed(7)
    q, k, v = (torch.randn(6, 16, HEADS * DIM) for _ in range(3))
    layout = rows.chunk_layout(6, [1, 0])
    settings = sa.SharingSettings(True, True, True, False, 1.0, 0.693)
    want = sa.shared_attention(q, k, v, layout, settings, sdpa)
    got = sa.shared_attention(q.half(), k.half(), v.half(), layout, settings, fused_sdpa([]), heads=HEADS)
    assert_close(got, want, ulps=ONE_CALL, dtype=torch.float16, what="half precision vs float32")
