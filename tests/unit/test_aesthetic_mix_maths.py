"""Aesthetic value mixing equals out = softmax(Q K_c^T / sqrt(d)) (V_c + s to_v(e)) on cond rows."""
import math
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st
import torch

from tests.pack import pack_module
from tests.tolerance import ONE_CALL, OPS, assert_changed, assert_close, assert_exact

am = pack_module("attention.aesthetic_mix")
calls = pack_module("attention.core.calls")
unet_family = pack_module("attention.models.unet").FAMILY
rows = pack_module("attention.core.rows")

HEADS, DIM, CTX = 2, 4, 6
KEY = ("input", 1, 0)


def per_head_attention(q, keys, values):
    """softmax(q k^T / sqrt(d)) v for one row, head by head."""
    out = []
    for h in range(HEADS):
        sl = slice(h * DIM, (h + 1) * DIM)
        out.append((q[:, sl] @ keys[:, sl].T / math.sqrt(DIM)).softmax(-1) @ values[:, sl])
    return torch.cat(out, dim=-1)


def sdpa(q, k, v, call, mask=None):
    split = lambda t: t.view(t.shape[0], t.shape[1], HEADS, DIM).transpose(1, 2)
    o = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
    return o.transpose(1, 2).reshape(q.shape[0], q.shape[1], HEADS * DIM)


def run_control(control, q, k, v, call, attention):
    """What the dispatcher does with one control: prepare on the whole batch, then attend."""
    q, k, v = control.prepare(q, k, v, call)
    return control.attend(attention, q, k, v, call)


def tiny_unet():
    """Just enough of a UNet for attention_module(("input", 1, 0)): a bias-free to_k/to_v."""
    torch.manual_seed(7)
    attn2 = SimpleNamespace(to_k=torch.nn.Linear(CTX, HEADS * DIM, bias=False).double(),
                            to_v=torch.nn.Linear(CTX, HEADS * DIM, bias=False).double())
    transformer = SimpleNamespace(transformer_blocks=[SimpleNamespace(attn2=attn2)])
    resblock = SimpleNamespace()
    return SimpleNamespace(input_blocks=[[resblock], [resblock, transformer]]), attn2


def make_call(unet, cond_or_uncond):
    run = calls.RunInfo(model_sampling=None, sigma=1.0, layer_keys=(KEY,), diffusion_model=unet, family=unet_family)
    return calls.AttentionCall({"n_heads": HEADS, "cond_or_uncond": cond_or_uncond}, KEY, run)


@pytest.mark.parametrize("cond_or_uncond", [[1, 0], [0], [1], [1, 0, 0], [0, 1]])
@pytest.mark.parametrize("content_tokens,aesthetic_tokens", [(5, 5), (10, 5), (15, 10)])
def test_mixed_attention_matches_formula(cond_or_uncond, content_tokens, aesthetic_tokens):
    unet, attn2 = tiny_unet()
    torch.manual_seed(0)
    B, N = 2, 3
    batch = B * len(cond_or_uncond)
    q = torch.randn(batch, N, HEADS * DIM, dtype=torch.float64)
    context = torch.randn(batch, content_tokens, CTX, dtype=torch.float64)
    e = torch.randn(1, aesthetic_tokens, CTX, dtype=torch.float64)
    s = 0.7
    control = am.AestheticMixControl(aesthetic=e, strength=s)
    with torch.no_grad():
        k, v = attn2.to_k(context), attn2.to_v(context)
        got = run_control(control, q, k, v, make_call(unet, cond_or_uncond), sdpa)
        for row in range(batch):
            kind = cond_or_uncond[row // B]
            k_c, v_c = attn2.to_k(context[row]), attn2.to_v(context[row])
            if kind == 0:
                # ComfyUI's rule for unequal lengths: repeat both sequences to the lcm
                common = math.lcm(content_tokens, aesthetic_tokens)
                reps_c, reps_e = common // content_tokens, common // aesthetic_tokens
                keys = k_c.repeat(reps_c, 1)
                values = attn2.to_v(context[row].repeat(reps_c, 1) + s * e[0].repeat(reps_e, 1))
            else:
                keys, values = k_c, v_c
            assert_close(got[row], per_head_attention(q[row], keys, values), ulps=ONE_CALL, what=f"row {row}")


def test_attention_map_is_the_content_map():
    """Keys (hence the softmax map) reach the rest of the chain untouched; only values change."""
    unet, attn2 = tiny_unet()
    seen = {}

    def capture(q, k, v, call, mask=None):
        seen.update(q=q, k=k, v=v, mask=mask)
        return sdpa(q, k, v, call, mask)

    q = torch.randn(4, 3, HEADS * DIM, dtype=torch.float64)
    k, v = torch.randn(4, 5, HEADS * DIM, dtype=torch.float64), torch.randn(4, 5, HEADS * DIM, dtype=torch.float64)
    control = am.AestheticMixControl(aesthetic=torch.randn(1, 5, CTX, dtype=torch.float64), strength=1.0)
    run_control(control, q, k, v, make_call(unet, [1, 0]), capture)
    assert seen["q"] is q and seen["k"] is k and seen["mask"] is None
    assert_exact(seen["v"][:2], v[:2], "uncond chunk's values")
    assert_changed(seen["v"][2:], v[2:], what="cond chunk's values")


def test_strength_zero_is_identity_bit_for_bit():
    torch.manual_seed(3)
    v = torch.randn(6, 5, 8)
    aesthetic_values = torch.randn(1, 5, 8)
    for layout in (rows.chunk_layout(6, [1, 0]), rows.chunk_layout(6, [0]), rows.chunk_layout(6, [1, 0, 0])):
        assert_exact(am.mix_values(v, aesthetic_values, 0.0, layout), v, "strength 0")


def test_uncond_rows_are_untouched_bit_for_bit():
    torch.manual_seed(4)
    v = torch.randn(6, 5, 8)
    layout = rows.chunk_layout(6, [1, 0, 1])
    mixed = am.mix_values(v, torch.randn(1, 5, 8), 2.0, layout)
    assert_exact(mixed[:2], v[:2], "first uncond chunk")
    assert_exact(mixed[4:], v[4:], "second uncond chunk")
    assert_changed(mixed[2:4], v[2:4], what="cond chunk")


def test_per_row_aesthetic_goes_to_its_row_in_every_cond_chunk():
    v = torch.zeros(6, 2, 3)
    per_row = torch.arange(3, dtype=torch.float32).view(3, 1, 1).expand(3, 2, 3)
    mixed = am.mix_values(v, per_row, 1.0, rows.chunk_layout(6, [0, 0]))
    assert mixed[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]


@pytest.mark.parametrize("tokens,length", [(5, 5), (5, 15), (15, 5), (10, 15), (77, 154), (154, 77)])
def test_align_tokens_is_the_lcm_repetition_folded(tokens, length):
    torch.manual_seed(5)
    x = torch.randn(2, tokens, 3, dtype=torch.float64)
    common = math.lcm(tokens, length)
    repeated = x.repeat(1, common // tokens, 1)
    want = torch.stack([repeated[:, j::length].mean(dim=1) for j in range(length)], dim=1)
    assert_close(am.align_tokens(x, length), want, ulps=OPS, what="folded lcm repetition")


def test_layer_values_is_the_layers_own_projection_and_linear():
    _, attn2 = tiny_unet()
    c, e = torch.randn(1, 5, CTX, dtype=torch.float64), torch.randn(1, 5, CTX, dtype=torch.float64)
    with torch.no_grad():
        assert_close(attn2.to_v(c) + 0.3 * am.layer_values(attn2.to_v, e), attn2.to_v(c + 0.3 * e), ulps=ONE_CALL,
                     what="linearity of the projection")


def test_a_trained_value_branch_plugs_into_the_same_slot():
    unet, attn2 = tiny_unet()
    zero_linear = lambda to_v, e: torch.zeros_like(to_v(e))  # a zero-initialised adapter, as VMix trains
    q = torch.randn(2, 3, HEADS * DIM, dtype=torch.float64)
    k, v = torch.randn(2, 5, HEADS * DIM, dtype=torch.float64), torch.randn(2, 5, HEADS * DIM, dtype=torch.float64)
    control = am.AestheticMixControl(aesthetic=torch.randn(1, 5, CTX, dtype=torch.float64), strength=1.0,
                                     value_branch=zero_linear)
    call = make_call(unet, [0])
    with torch.no_grad():
        assert_exact(run_control(control, q, k, v, call, sdpa), sdpa(q, k, v, call), "a zero value branch")


def test_the_unet_family_finds_a_layers_attention_module():
    unet, attn2 = tiny_unet()
    assert unet_family.attention_module(unet, KEY, "attn2") is attn2
    with pytest.raises(LookupError):
        unet_family.attention_module(unet, ("input", 0, 0), "attn2")


# ---- relative_to_empty_prompt: e = E(aesthetic) - E("") for any two token counts ---------------------
def lcm_difference(aesthetic, empty):
    """The definition written out: both repeated to lcm(T_a, T_0) tokens as ComfyUI joins conditionings,
    subtracted, then the lcm / T_a repeats of each aesthetic position folded back by their mean."""
    ta, t0 = aesthetic.shape[1], empty.shape[1]
    common = math.lcm(ta, t0)
    diff = aesthetic.repeat(1, common // ta, 1) - empty.repeat(1, common // t0, 1)
    return diff.reshape(aesthetic.shape[0], common // ta, ta, aesthetic.shape[2]).mean(dim=1)


@given(st.integers(1, 420), st.integers(1, 300), st.integers(0, 2 ** 16))
@settings(max_examples=60, deadline=None)
def test_relative_to_empty_prompt_is_the_lcm_difference_folded_back(aesthetic_tokens, empty_tokens, seed):
    gen = torch.Generator().manual_seed(seed)
    aesthetic = torch.randn(1, aesthetic_tokens, 3, generator=gen, dtype=torch.float64)
    empty = torch.randn(1, empty_tokens, 3, generator=gen, dtype=torch.float64)
    e = am.relative_to_empty_prompt(aesthetic, empty)
    assert e.shape == aesthetic.shape
    assert_close(e, lcm_difference(aesthetic, empty), ulps=OPS, what="E(aesthetic) - aligned E(\"\")")


@pytest.mark.parametrize("aesthetic_tokens, empty_tokens", [(77, 77), (154, 77), (231, 77), (512, 256)])
def test_where_the_empty_prompt_divides_the_aesthetic_it_is_subtracted_token_by_token(aesthetic_tokens, empty_tokens):
    """CLIP's 77-token chunks and T5's padded 256: exactly the tile of E("") (the pack's behaviour before
    unpadded encoders), bit for bit."""
    gen = torch.Generator().manual_seed(aesthetic_tokens)
    aesthetic, empty = torch.randn(1, aesthetic_tokens, 4, generator=gen), torch.randn(1, empty_tokens, 4, generator=gen)
    tiled = empty.repeat(1, aesthetic_tokens // empty_tokens, 1)
    assert_exact(am.relative_to_empty_prompt(aesthetic, empty), aesthetic - tiled, "the tile of E(\"\")")


def test_unpadded_lengths_that_crashed_before_are_defined():
    """Tiny Qwen-Image: E("") has 5 tokens, "golden hour" 7; Z-Image: 8 and 10 (issue 26's crash)."""
    for aesthetic_tokens, empty_tokens in ((7, 5), (10, 8), (3, 5), (300, 256)):
        aesthetic, empty = torch.randn(1, aesthetic_tokens, 4), torch.randn(1, empty_tokens, 4)
        e = am.relative_to_empty_prompt(aesthetic, empty)
        assert e.shape == aesthetic.shape and torch.isfinite(e).all()
    # gcd 1: every aesthetic token loses the empty prompt's mean token
    aesthetic, empty = torch.randn(1, 7, 4, dtype=torch.float64), torch.randn(1, 5, 4, dtype=torch.float64)
    assert_close(am.relative_to_empty_prompt(aesthetic, empty), aesthetic - empty.mean(1, keepdim=True), ulps=OPS,
                 what="gcd 1: E(\"\")'s mean token")
    assert_exact(am.relative_to_empty_prompt(aesthetic, empty[:, :0]), aesthetic, "an empty E(\"\")")
