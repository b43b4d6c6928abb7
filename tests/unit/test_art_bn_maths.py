"""ArtBN: generated rows get the reference row's per-channel mean and variance, by ``strength``, in
self-attention queries/keys (over tokens) and GroupNorm inputs (over height x width)."""
import pytest
import torch

from tests.pack import pack_module
from tests.tolerance import ONE_CALL, OPS, assert_close, assert_exact, rounding_tolerance

art_bn = pack_module("attention.art_bn")
rows = pack_module("attention.core.rows")
calls = pack_module("attention.core.calls")
keys = pack_module("attention.core.keys")
group_norm = pack_module("attention.group_norm")


def formula(x, ref, strength):
    """sigma(X_a) (X - mu(X)) / sigma(X) + mu(X_a), per channel over tokens (dim 0 of a (T, C) row)."""
    mu, sd = x.mean(0), torch.sqrt(x.var(0) + 1e-5)
    mu_a, sd_a = ref.mean(0), torch.sqrt(ref.var(0) + 1e-5)
    return x + strength * (sd_a * (x - mu) / sd + mu_a - x)


@pytest.mark.parametrize("cond_or_uncond", [[1, 0], [0], [1, 0, 0]])
@pytest.mark.parametrize("strength", [1.0, 0.4])
def test_generated_rows_follow_the_formula_and_reference_rows_stay(cond_or_uncond, strength):
    torch.manual_seed(0)
    B, T, C = 3, 40, 6
    x = torch.randn(B * len(cond_or_uncond), T, C, dtype=torch.float64) * 2 + 0.5
    layout = rows.chunk_layout(x.shape[0], cond_or_uncond)
    got = art_bn.align_generated_rows(x, layout, strength, art_bn.TOKENS)
    for c in range(layout.chunks):
        ref = c * B
        assert_exact(got[ref], x[ref], f"reference row {ref}")
        for i in range(ref + 1, ref + B):
            assert_close(got[i], formula(x[i], x[ref], strength), ulps=OPS, what=f"row {i} vs the formula")


def test_strength_one_gives_the_reference_statistics():
    torch.manual_seed(1)
    x = torch.randn(4, 64, 5, dtype=torch.float64) * 3 + 2
    layout = rows.chunk_layout(4, [0])
    got = art_bn.align_generated_rows(x, layout, 1.0, art_bn.TOKENS)
    for i in range(1, 4):
        assert_close(got[i].mean(0), x[0].mean(0), ulps=OPS, magnitude_of=got[i], what=f"row {i}'s means")
        # sigma = sqrt(var + EPS) on both sides: the std is row 0's times sqrt((1 + EPS/var_0) / (1 + EPS/var_i))
        carried = ((1 + art_bn.EPS / x[0].var(0)) / (1 + art_bn.EPS / x[i].var(0))).sqrt()
        assert_close(got[i].std(0), x[0].std(0) * carried, ulps=OPS, what=f"row {i}'s stds")


def test_strength_zero_and_single_rows_are_exact_identity():
    x = torch.randn(4, 10, 3)
    assert art_bn.align_generated_rows(x, rows.chunk_layout(4, [1, 0]), 0.0, art_bn.TOKENS) is x
    assert_exact(art_bn.align_generated_rows(x, rows.chunk_layout(4, [1, 0, 0, 0]), 1.0, art_bn.TOKENS), x,
                 "one row per chunk")


def test_fp16_features_keep_their_dtype():
    x = (torch.randn(2, 16, 4) * 30).half()
    got = art_bn.align_generated_rows(x, rows.chunk_layout(2, [0]), 1.0, art_bn.TOKENS)
    assert got.dtype == torch.float16 and torch.isfinite(got).all()


def test_attention_control_aligns_queries_and_keys_only():
    torch.manual_seed(2)
    q, k, v = (torch.randn(6, 20, 8, dtype=torch.float64) for _ in range(3))
    call = calls.AttentionCall(extra_options={"n_heads": 2, "cond_or_uncond": [1, 0],
                                                 "activations_shape": [6, 8, 4, 5]}, key=("input", 1, 0), run=None)
    q2, k2, v2 = art_bn.ArtBNAttentionControl(strength=1.0).prepare(q, k, v, call)
    layout = rows.chunk_layout(6, [1, 0])
    assert_exact(q2, art_bn.align_generated_rows(q, layout, 1.0, art_bn.TOKENS), "queries")
    assert_exact(k2, art_bn.align_generated_rows(k, layout, 1.0, art_bn.TOKENS), "keys")
    assert v2 is v


def test_attention_control_runs_in_the_prepare_phase_so_order_does_not_matter():
    """The dispatcher runs every control's prepare on the whole batch before any attend; ArtBN's
    attend is a pass-through, so an outer StyleAligned (which splits the batch) cannot hide it."""
    seen = {}

    def rest(q_, k_, v_, call_, mask_=None):
        seen.update(q=q_)
        return q_
    q = torch.randn(4, 5, 8)
    art_bn.ArtBNAttentionControl(strength=1.0).attend(rest, q, q, q, None)
    assert seen["q"] is q


def run_shared_norm(norm, x, stack, cond_or_uncond):
    run = calls.RunInfo(model_sampling=None, sigma=1.0, layer_keys=())
    options = {keys.RUN_KEY: run, keys.PACK_KEY: stack, "cond_or_uncond": cond_or_uncond}
    token = keys.CURRENT_OPTIONS.set(options)
    try:
        return group_norm.sharing_copy(norm)(x)
    finally:
        keys.CURRENT_OPTIONS.reset(token)


def test_group_norm_output_of_generated_rows_has_the_reference_channel_statistics():
    torch.manual_seed(3)
    norm = torch.nn.GroupNorm(2, 8, eps=1e-6).double()
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(6, 8, 7, 9, dtype=torch.float64) * torch.linspace(0.5, 3, 8)[:, None, None]
    got = run_shared_norm(norm, x, (art_bn.ArtBNNormControl(strength=1.0),), [1, 0])
    plain = norm(x)
    for c in range(2):
        ref = c * 3
        assert_exact(got[ref], plain[ref], f"reference row {ref}")
        for i in (ref + 1, ref + 2):
            # ArtBN gives the row the reference's channel means exactly, but its sigma = sqrt(var + EPS) moves
            # each channel's variance off the reference's by a factor within 1 +- EPS / var (var: the two rows'
            # input channel variances), so the group variance the GroupNorm divides by too: its output's
            # w (mean - group mean) / sigma and std move by a relative EPS / var at most (the square roots
            # halve it, two factors add), plus rounding
            carried = art_bn.EPS / float(torch.stack([x[ref], x[i]]).var((2, 3)).min())
            rounding = rounding_tolerance(plain[ref], ulps=ONE_CALL)
            want, seen = plain[ref].mean((1, 2)), got[i].mean((1, 2))
            bound = carried * (want - norm.bias).abs() + rounding
            assert ((seen - want).abs() <= bound).all(), (f"row {i}'s channel means", seen - want, bound)
            want, seen = plain[ref].std((1, 2)), got[i].std((1, 2))
            bound = carried * want + rounding
            assert ((seen - want).abs() <= bound).all(), (f"row {i}'s channel stds", seen - want, bound)
    assert_exact(run_shared_norm(norm, x, (art_bn.ArtBNNormControl(strength=0.0),), [1, 0]), plain, "strength 0")


def test_norm_controls_chain_in_stack_order_with_group_norm_sharing():
    torch.manual_seed(4)
    norm = torch.nn.GroupNorm(2, 4).double()
    x = torch.randn(4, 4, 3, 5, dtype=torch.float64)
    layout = rows.chunk_layout(4, [1, 0])
    stack = (art_bn.ArtBNNormControl(strength=1.0), group_norm.GroupNormShareControl())
    got = run_shared_norm(norm, x, stack, [1, 0])
    aligned = art_bn.align_generated_rows(x, layout, 1.0, (-2, -1))
    assert_close(got, group_norm.shared_group_norm(norm, aligned, layout), ulps=OPS, what="ArtBN then shared GroupNorm")
