"""AtelierRegionalAttention and AtelierAestheticMix on a (tiny, seeded) Flux.1 inside a real ComfyUI:
weight 0 = vanilla exactly, the prompt/image streams are untouched by the appended local prompts,
the regional formula against an independent computation on captured q/k/v (A(Q, [D ; I]) taken
from the chain where the model's attention is below), outside every region bit-exact, aesthetic
value mixing on the prompt's text values, composition with StyleAligned."""
import functools
import math

import pytest
import torch

from tests.comfy import dit_helpers
from tests.comfy.dit_helpers import MIX, aesthetic_mix, conditioning, regional, sample, spy_calls, tiny_flux
from tests.tolerance import ONE_CALL, OPS, SAMPLING, assert_changed, assert_close, assert_exact

region = functools.partial(dit_helpers.region, weights="1, 1, 0.5, 0")  # a weight per step


@pytest.fixture(scope="module")
def flux(comfy):
    model = tiny_flux(comfy)
    return model, conditioning(model, seed=1), conditioning(model, seed=2)


@pytest.fixture(scope="module")
def vanilla(comfy, flux):
    model, pos, neg = flux
    return {cfg: sample(comfy, model, pos, neg, batch=2, cfg=cfg) for cfg in (1.0, 3.0)}


def test_weight_zero_reproduces_vanilla_exactly(comfy, flux, vanilla):
    model, pos, neg = flux
    regions = region(comfy, conditioning(model, tokens=5, seed=7), weight=0.0)
    assert_exact(sample(comfy, regional(comfy, model, regions), pos, neg, batch=2), vanilla[1.0], "region weight 0")


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_a_region_changes_the_image(comfy, flux, vanilla, cfg):
    model, pos, neg = flux
    regions = region(comfy, conditioning(model, tokens=5, seed=7))
    out = sample(comfy, regional(comfy, model, regions), pos, neg, batch=2, cfg=cfg)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla[cfg], what="a region")


def test_appended_prompt_streams_leave_the_prompt_and_image_untouched(comfy, flux):
    """A region selecting no layer still appends its prompt's stream: what the model's prompt and
    image tokens compute must not change (the stream is kept apart in every call; matmuls over a
    longer text sequence may round differently: SAMPLING ulps)."""
    model, pos, neg = flux
    regions = region(comfy, conditioning(model, tokens=5, seed=7))
    plain = sample(comfy, model, pos, neg, batch=2, steps=2)
    kept_apart = sample(comfy, dit_helpers.regional_at_no_layer(model, regions, ("double", 99)), pos, neg, batch=2, steps=2)
    assert_close(kept_apart, plain, ulps=SAMPLING, what="a stream carried through no layer")


def attention(q, k, v):
    return ((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])).softmax(-1) @ v


def at_layer(calls, kind, index):
    return [c for c in calls if c[2] == (kind, index)][0]


def flat(o):
    return o.transpose(1, 2).flatten(2)  # (batch, heads, T, d) -> (batch, T, C)


def test_regional_formula_against_an_independent_computation(comfy, flux):
    """Capture q/k/v of one layer with the local prompt's stream appended, run the DiT blend and
    compare it with the formula written out with plain softmax, token by token."""
    from tests.pack import pack_module
    dit_regional = pack_module("attention.regional_joint")
    regional_mod = pack_module("attention.regional")
    curves = pack_module("attention.weight_curves")
    model, pos, neg = flux
    local = conditioning(model, tokens=5, seed=7)
    calls = spy_calls(lambda: sample(comfy, dit_helpers.regional_at_no_layer(model, region(comfy, local), ("double", 99)),
                                            pos, neg, batch=1, steps=1))
    override, args, _, _ = at_layer(calls, "double", 1)
    layout = override.tokens
    assert layout.text == pos[0][0].shape[1] and layout.streams == (5,)
    (q, _), (k, (k_l,)), (v, (v_l,)) = (layout.split(t.double()) for t in args[:3])
    text, image = layout.text, layout.main.image_slice
    box = regional_mod.Region(cond=local[0][0], curve=curves.WeightCurve("constant", 0.7), box=(0.25, 0.0, 0.5, 0.5))
    chain_out = flat(attention(q, k, v))
    out = dit_regional.dit_regional_blend(chain_out, q, k, v, [0], [(box, 0.7)], image, layout.grid,
                                          lambda r: (k_l, v_l), lambda q_, k_, v_: flat(attention(q_, k_, v_)))
    m = regional_mod.box_coverage((0.25, 0.0, 0.5, 0.5), *layout.grid).flatten().to(q)
    q_img = q[..., image, :]
    full = flat(attention(q_img, k, v))
    own = flat(attention(q_img, torch.cat([k_l, k[..., image, :]], -2), torch.cat([v_l, v[..., image, :]], -2)))
    reused = dit_regional.dit_regional_blend(chain_out, q, k, v, [0], [(box, 0.7)], image, layout.grid,
                                             lambda r: (k_l, v_l), lambda q_, k_, v_: flat(attention(q_, k_, v_)),
                                             full=chain_out[:, image])
    assert_close(reused, out, ulps=ONE_CALL, what="the chain's A(Q, [D ; I]) given")  # vs its image rows recomputed
    expected = chain_out.clone()
    expected[:, image] = chain_out[:, image] + (m * 0.7)[None, :, None] * (own - full)
    assert_close(out, expected, ulps=ONE_CALL, what="the blend vs the formula")
    outside = torch.cat([torch.ones(text, dtype=torch.bool), m == 0])
    assert outside.any()
    assert_exact(out[:, outside], chain_out[:, outside], "tokens outside the region")


def test_in_the_model_outside_every_region_gets_the_chain_output_bit_for_bit(comfy, flux):
    """At a selected layer the prompt's tokens and the image tokens outside the region get exactly
    what the base attention returns; the stream gets its own attention over [L | image]."""
    from comfy.ldm.modules.attention import optimized_attention
    model, pos, neg = flux
    regions = region(comfy, conditioning(model, tokens=5, seed=7), x=0.0, width=0.5)
    calls = spy_calls(lambda: sample(comfy, regional(comfy, model, regions, layers="double.1"), pos, neg,
                                            batch=1, steps=1))
    override, args, _, out = at_layer(calls, "double", 1)
    layout = override.tokens
    (q, (q_l,)), (k, (k_l,)), (v, (v_l,)) = (layout.split(t) for t in args[:3])
    heads = args[3]
    chain = optimized_attention(q, k, v, heads, skip_reshape=True)
    main_out, (stream_out,) = layout.split(out)
    h, w = layout.grid
    outside = torch.zeros(h, w, dtype=torch.bool)
    outside[:, w // 2:] = True  # the region covers the left half
    outside = torch.cat([torch.ones(layout.text, dtype=torch.bool), outside.flatten()])
    assert_exact(main_out[:, outside], chain[:, outside], "tokens outside the region")
    assert_changed(main_out, chain, what="tokens inside the region")
    image = slice(layout.text, None)
    own = optimized_attention(q_l, torch.cat([k_l, k[..., image, :]], -2), torch.cat([v_l, v[..., image, :]], -2),
                              heads, skip_reshape=True)
    assert_exact(stream_out, own, "the stream's own attention")


def test_with_only_the_models_attention_below_the_chain_output_is_reused(comfy, flux, monkeypatch):
    """A(Q, [D ; I]) of the cond rows is what the model's own attention just returned: the blend takes it
    from the chain (one attention fewer per layer) and gives the image that recomputing it gives."""
    from tests.pack import pack_module
    dit_regional = pack_module("attention.regional_joint")
    model, pos, neg = flux
    regions = region(comfy, conditioning(model, tokens=5, seed=7))
    blend, given = dit_regional.dit_regional_blend, []

    def recorded(*args, full=None, **kwargs):
        given.append(full is not None)
        return blend(*args, full=full, **kwargs)

    monkeypatch.setattr(dit_regional, "dit_regional_blend", recorded)
    reused = sample(comfy, regional(comfy, model, regions), pos, neg, batch=2, cfg=3.0)
    assert given and all(given)
    monkeypatch.setattr(dit_regional, "dit_regional_blend", lambda *args, full=None, **kwargs: blend(*args, **kwargs))
    recomputed = sample(comfy, regional(comfy, model, regions), pos, neg, batch=2, cfg=3.0)
    assert_close(reused, recomputed, ulps=SAMPLING, what="reused vs recomputed A(Q, [D ; I])")


def test_regional_composes_with_style_aligned(comfy, flux):
    model, pos, neg = flux
    sa = comfy.node_class("AtelierStyleAligned").execute(
        model, share_attention=True, adain_queries=True, adain_keys=True, adain_values=False,
        share_group_norm=False, shared_score_scale=1.0, shared_score_shift=0.0, layers="all",
        unshared_fraction=0.0, start_percent=0.0, end_percent=1.0).args[0]
    regions = region(comfy, conditioning(model, tokens=5, seed=7))
    both = sample(comfy, regional(comfy, sa, regions), pos, neg, batch=2)
    sa_only = sample(comfy, sa, pos, neg, batch=2)
    assert torch.isfinite(both).all()
    assert_changed(both, sa_only, what="a region on StyleAligned")


def test_aesthetic_mix_acts_and_strength_zero_is_vanilla(comfy, flux, vanilla):
    model, pos, neg = flux
    aesthetic = conditioning(model, tokens=3, seed=9)[0][0]
    out = sample(comfy, aesthetic_mix(model, aesthetic, 0.8), pos, neg, batch=2)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla[1.0], what="aesthetic mix at 0.8")
    node_out = comfy.node_class(MIX).execute(model, None, "", 0.5, True, "all", 0.0, 1.0).args[0]
    assert_exact(sample(comfy, node_out, pos, neg, batch=2), vanilla[1.0], "an empty aesthetic")


def test_aesthetic_values_formula(comfy, flux):
    """V_text of cond rows + s * aligned stream values; uncond rows bit for bit."""
    from tests.pack import pack_module
    aesthetic_joint = pack_module("attention.aesthetic_mix_joint")
    v = torch.randn(2, 2, 8 + 16, 4)
    aes = torch.randn(2, 2, 8, 4)
    weights = torch.tensor([0.5, 0.0]).view(-1, 1, 1, 1)
    out = aesthetic_joint.mix_text_values(v, aes, 8, weights)
    assert_close(out[0, :, :8], v[0, :, :8] + 0.5 * aes[0], ulps=OPS, what="mixed text values")
    assert_exact(out[0, :, 8:], v[0, :, 8:], "image values")
    assert_exact(out[1], v[1], "uncond row")


class StandInTextEncoder:
    """What AtelierAestheticMix asks of a CLIP (tokenize, encode_from_tokens), with seeded tokens of a
    given width standing in for T5 (too large for these machines)."""

    def __init__(self, width: int):
        self.width = width

    def tokenize(self, text):
        return text

    def encode_from_tokens(self, tokens, return_pooled=False, return_dict=False):
        gen = torch.Generator().manual_seed(len(tokens))
        return {"cond": torch.randn(1, 4, self.width, generator=gen), "pooled_output": None}


def test_aesthetic_node_on_flux_checks_the_text_width(comfy, flux, vanilla):
    from tests.pack import pack_module
    errors = pack_module("attention.core.errors")
    model, pos, neg = flux
    node = comfy.node_class(MIX)
    patched = node.execute(model, StandInTextEncoder(32), "golden hour", 0.8, True, "all", 0.0, 1.0).args[0]
    out = sample(comfy, patched, pos, neg, batch=2)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla[1.0], what="aesthetic mix")
    with pytest.raises(errors.AtelierError, match=r"AtelierAestheticMix: input 'clip'.*768.*32"):
        node.execute(model, StandInTextEncoder(768), "golden hour", 0.8, True, "all", 0.0, 1.0)
