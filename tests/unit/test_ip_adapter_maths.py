"""Decoupled image cross-attention equals Z = A(Q, K_t, V_t) + w * A(Q, c W'_k^T, c W'_v^T) per row and
head, with c the image tokens for cond rows and the negative tokens for uncond rows (peers.md)."""
import math

import pytest
import torch

from tests.pack import pack_module
from tests.tolerance import ONE_CALL, assert_changed, assert_close, assert_exact

ipa = pack_module("attention.ip_adapter")
calls = pack_module("attention.core.calls")
rows = pack_module("attention.core.rows")
keys = pack_module("attention.core.keys")

HEADS, DIM, CONTEXT, TOKENS = 2, 8, 12, 3


def sdpa(q, k, v, call=None, mask=None):
    b, n, _ = q.shape
    split = lambda t: t.reshape(t.shape[0], t.shape[1], HEADS, DIM).transpose(1, 2)
    o = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
    return o.transpose(1, 2).reshape(b, n, HEADS * DIM)


def attention_per_head(q, keys, values):
    """softmax(q K^T / sqrt(d)) V for one row, head by head."""
    out = []
    for h in range(HEADS):
        s = slice(h * DIM, (h + 1) * DIM)
        out.append((q[:, s] @ keys[:, s].T / math.sqrt(DIM)).softmax(-1) @ values[:, s])
    return torch.cat(out, -1)


class FakeAdapter:
    def __init__(self, layers=2, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.to_k = tuple(torch.randn(HEADS * DIM, CONTEXT, generator=g, dtype=torch.float64) for _ in range(layers))
        self.to_v = tuple(torch.randn(HEADS * DIM, CONTEXT, generator=g, dtype=torch.float64) for _ in range(layers))


def make_call(cond_or_uncond, key=("input", 1, 0), **extra):
    options = {"n_heads": HEADS, "cond_or_uncond": cond_or_uncond, **extra}
    return calls.AttentionCall(extra_options=options, key=key, run=None)


@pytest.fixture(autouse=True)
def plain_image_attention(monkeypatch):
    monkeypatch.setattr(ipa, "image_attention", lambda q, k, v, call: sdpa(q, k, v))


def run_control(control, q, k, v, call):
    return control.attend(lambda q_, k_, v_, c_, m_=None: sdpa(q_, k_, v_, mask=m_), q, k, v, call)


def image_tokens_of_row(cond, uncond, kind, row, rows):
    """Which image tokens a row sees: the doc's rule, written independently."""
    if kind == 1:
        return uncond[0]
    if cond.shape[0] == rows:
        return cond[row]
    return cond.reshape(-1, cond.shape[-1])


@pytest.mark.parametrize("cond_or_uncond", [[1, 0], [0], [1], [1, 0, 0]])
@pytest.mark.parametrize("images", [1, 3, 2])  # one image, one per row (B = 3), joined
@pytest.mark.parametrize("weight", [1.0, 0.35, -0.5])
def test_image_branch_matches_formula(cond_or_uncond, images, weight):
    torch.manual_seed(0)
    B, T, T_text = 3, 5, 4
    n = B * len(cond_or_uncond)
    q = torch.randn(n, T, HEADS * DIM, dtype=torch.float64)
    k, v = (torch.randn(n, T_text, HEADS * DIM, dtype=torch.float64) for _ in range(2))
    cond = torch.randn(images, TOKENS, CONTEXT, dtype=torch.float64)
    uncond = torch.randn(1, TOKENS, CONTEXT, dtype=torch.float64)
    adapter = FakeAdapter()
    control = ipa.ImagePromptControl(adapter=adapter, cond_tokens=cond, uncond_tokens=uncond,
                                     layer_index={("output", 3, 0): 1}, weight=weight)
    got = run_control(control, q, k, v, make_call(cond_or_uncond, key=("output", 3, 0)))
    for c, kind in enumerate(cond_or_uncond):
        for r in range(B):
            i = c * B + r
            tokens = image_tokens_of_row(cond, uncond, kind, r, B)
            text = attention_per_head(q[i], k[i], v[i])
            image = attention_per_head(q[i], tokens @ adapter.to_k[1].T, tokens @ adapter.to_v[1].T)
            assert_close(got[i], text + weight * image, ulps=ONE_CALL, what=f"row {i}")


def test_weight_zero_and_unmapped_layers_are_the_text_attention_bit_for_bit():
    q, k, v = (torch.randn(4, 6, HEADS * DIM) for _ in range(3))
    cond, uncond = torch.randn(1, TOKENS, CONTEXT), torch.randn(1, TOKENS, CONTEXT)
    adapter = FakeAdapter()
    adapter.to_k = tuple(w.float() for w in adapter.to_k)
    adapter.to_v = tuple(w.float() for w in adapter.to_v)
    text = sdpa(q, k, v)
    zero = ipa.ImagePromptControl(adapter=adapter, cond_tokens=cond, uncond_tokens=uncond,
                                  layer_index={("input", 1, 0): 0}, weight=0.0)
    assert_exact(run_control(zero, q, k, v, make_call([1, 0])), text, "weight 0")
    elsewhere = ipa.ImagePromptControl(adapter=adapter, cond_tokens=cond, uncond_tokens=uncond,
                                       layer_index={("input", 2, 0): 0}, weight=1.0)
    assert_exact(run_control(elsewhere, q, k, v, make_call([1, 0])), text, "an unmapped layer")
    active = ipa.ImagePromptControl(adapter=adapter, cond_tokens=cond, uncond_tokens=uncond,
                                    layer_index={("input", 1, 0): 0}, weight=1.0)
    assert_changed(run_control(active, q, k, v, make_call([1, 0])), text, what="a mapped layer at weight 1")


def test_reference_rows_inserted_by_reference_mode_get_no_image_branch():
    torch.manual_seed(1)
    B = 3  # 2 user rows + the inserted artwork row per chunk
    q = torch.randn(2 * B, 5, HEADS * DIM, dtype=torch.float64)
    k, v = (torch.randn(2 * B, 4, HEADS * DIM, dtype=torch.float64) for _ in range(2))
    cond = torch.randn(2, TOKENS, CONTEXT, dtype=torch.float64)  # one image per user row
    uncond = torch.randn(1, TOKENS, CONTEXT, dtype=torch.float64)
    adapter = FakeAdapter()
    control = ipa.ImagePromptControl(adapter=adapter, cond_tokens=cond, uncond_tokens=uncond,
                                     layer_index={("input", 1, 0): 0}, weight=1.0)
    call = make_call([1, 0], **{keys.REFERENCE_INSERTED_KEY: True})
    got = run_control(control, q, k, v, call)
    for c, kind in enumerate([1, 0]):
        ref = c * B
        assert_close(got[ref], attention_per_head(q[ref], k[ref], v[ref]), ulps=ONE_CALL, what=f"reference row {ref}")
        for user_row in range(2):
            i = ref + 1 + user_row
            tokens = uncond[0] if kind == 1 else cond[user_row]
            image = attention_per_head(q[i], tokens @ adapter.to_k[0].T, tokens @ adapter.to_v[0].T)
            assert_close(got[i], attention_per_head(q[i], k[i], v[i]) + image, ulps=ONE_CALL, what=f"row {i}")
    # a call the reference wrapper left alone (an area cond's crop) is not marked
    assert not ipa.inserted_reference(make_call([1, 0])) and ipa.inserted_reference(call)


SD15_KEYS = [("input", 1, 0), ("input", 2, 0), ("input", 4, 0), ("input", 5, 0), ("input", 7, 0),
             ("input", 8, 0), ("middle", 0, 0)] + [("output", i, 0) for i in range(3, 12)]


def test_adapter_layer_order_is_input_output_middle():
    order = ipa.adapter_layer_order(tuple(SD15_KEYS))
    assert order[:6] == tuple(SD15_KEYS[:6])
    assert order[6:15] == tuple(("output", i, 0) for i in range(3, 12))
    assert order[15] == ("middle", 0, 0) and len(order) == 16
