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


def concatenated_formula(q, k, v, text, image, k_l, v_l, m):
    """The README's formula written out with plain softmax over concatenated keys (the pack's path until
    2026-12-06): O = A(Q, [D ; I]) + M c (A(Z, [L ; I]) - A(Z, [D ; I])) on the image queries Z."""
    full = flat(attention(q, k, v))
    keys_i, values_i = k[..., text:, :], v[..., text:, :]
    own = flat(attention(q[..., image, :], torch.cat([k_l, keys_i], -2), torch.cat([v_l, values_i], -2)))
    expected = full.clone()
    expected[:, image] = full[:, image] + m[None, :, None] * (own - full[:, image])
    return expected


def captured_layer(comfy, flux):
    """q/k/v (float64) of one layer of the tiny Flux with a local prompt's stream appended, and its layout."""
    model, pos, neg = flux
    local = conditioning(model, tokens=5, seed=7)
    calls = spy_calls(lambda: sample(comfy, dit_helpers.regional_at_no_layer(model, region(comfy, local), ("double", 99)),
                                     pos, neg, batch=1, steps=1))
    override, args, _, _ = at_layer(calls, "double", 1)
    layout = override.tokens
    (q, _), (k, (k_l,)), (v, (v_l,)) = (layout.split(t.double()) for t in args[:3])
    return local, layout, q, k, v, k_l, v_l


def test_regional_formula_against_the_concatenated_computation(comfy, flux):
    """On captured q/k/v: one image-key attention with its log-sum-exp, merged with the prompt's and the
    local prompt's few keys, equals the formula over concatenated keys (float64: to double rounding);
    the image tokens outside the region get A(Q, [D ; I]) exactly as the split computation gives it."""
    from tests.pack import pack_module
    regional_mod, curves = pack_module("attention.regional"), pack_module("attention.weight_curves")
    local, layout, q, k, v, k_l, v_l = captured_layer(comfy, flux)
    assert layout.text == 8 and layout.streams == (5,)
    text, image = layout.text, layout.main.image_slice
    box = regional_mod.Region(cond=local[0][0], curve=curves.WeightCurve("constant", 0.7), box=(0.25, 0.0, 0.5, 0.5))
    m = pack_module("attention.region_masks").box_coverage((0.25, 0.0, 0.5, 0.5), *layout.grid).flatten().to(q) * 0.7
    out = regional_mod.dit_regional_attention(q, k, v, text, image, [(box, 0.7)], layout.grid, lambda r: (k_l, v_l))
    expected = concatenated_formula(q, k, v, text, image, k_l, v_l, m)
    assert_close(out, expected, ulps=ONE_CALL, what="the merged path vs the concatenated formula")
    delta = regional_mod.dit_regional_delta(q, k, v, text, image, [(box, 0.7)], layout.grid, lambda r: (k_l, v_l))
    assert_close(delta, (expected - flat(attention(q, k, v)))[:, image], ulps=ONE_CALL,
                 magnitude_of=expected, what="the blend's difference vs the formula's")
    outside = torch.cat([torch.ones(text, dtype=torch.bool), m == 0])
    full = regional_mod.dit_regional_attention(q, k, v, text, image, [], layout.grid, lambda r: (k_l, v_l))
    assert outside.any()
    assert_exact(out[:, outside], full[:, outside], "outside the region: the first term + 0")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_stay_within_their_rounding_of_a_float32_reference(comfy, flux, dtype):
    from tests.pack import pack_module
    regional_mod, curves = pack_module("attention.regional"), pack_module("attention.weight_curves")
    local, layout, q, k, v, k_l, v_l = captured_layer(comfy, flux)
    text, image = layout.text, layout.main.image_slice
    box = regional_mod.Region(cond=local[0][0], curve=curves.WeightCurve("constant", 0.7), box=(0.25, 0.0, 0.5, 0.5))
    m = pack_module("attention.region_masks").box_coverage((0.25, 0.0, 0.5, 0.5), *layout.grid).flatten().to(q) * 0.7
    half = [t.to(dtype) for t in (q, k, v, k_l, v_l)]
    out = regional_mod.dit_regional_attention(*half[:3], text, image, [(box, 0.7)], layout.grid, lambda r: half[3:])
    reference = concatenated_formula(*(t.to(dtype).double() for t in (q, k, v)), text, image,
                                     *(t.to(dtype).double() for t in (k_l, v_l)), m)
    # the inputs already rounded to the half dtype: what remains is the half output's rounding and the
    # half parts merged in float32, one call's rounding in the half dtype
    assert_close(out, reference, ulps=ONE_CALL, dtype=dtype, what=f"{dtype} inputs vs a float64 reference")


def test_in_the_model_outside_every_region_gets_the_models_attention(comfy, flux):
    """At a selected layer (cfg 3: cond and uncond rows in one call) the uncond rows get the model's own
    attention call bit for bit; the cond rows' prompt tokens and image tokens outside the region get the
    model's attention, computed split at the prompt's keys, within float rounding of the model's call;
    inside the region the blend acts; the stream gets its own attention over [L | image]."""
    from comfy.ldm.modules.attention import optimized_attention
    model, pos, neg = flux
    regions = region(comfy, conditioning(model, tokens=5, seed=7), x=0.0, width=0.5)
    calls = spy_calls(lambda: sample(comfy, regional(comfy, model, regions, layers="double.1"), pos, neg,
                                     batch=1, steps=1, cfg=3.0))
    override, args, _, out = at_layer(calls, "double", 1)
    layout = override.tokens
    (q, (q_l,)), (k, (k_l,)), (v, (v_l,)) = (layout.split(t) for t in args[:3])
    heads = args[3]
    model_call = optimized_attention(q, k, v, heads, skip_reshape=True)
    main_out, (stream_out,) = layout.split(out)
    cond, uncond = 1, 0  # cond_or_uncond [1, 0]: the uncond chunk first
    assert_exact(main_out[uncond], model_call[uncond], "the uncond row: the model's own call")
    h, w = layout.grid
    outside = torch.zeros(h, w, dtype=torch.bool)
    outside[:, w // 2:] = True  # the region covers the left half
    outside = torch.cat([torch.ones(layout.text, dtype=torch.bool), outside.flatten()])
    assert_close(main_out[cond, outside], model_call[cond, outside], ulps=ONE_CALL, dtype=model_call.dtype,
                 what="cond tokens outside the region vs the model's own call")
    assert_changed(main_out[cond, ~outside], model_call[cond, ~outside], what="cond tokens inside the region")
    image = slice(layout.text, None)
    own = optimized_attention(q_l, torch.cat([k_l, k[..., image, :]], -2), torch.cat([v_l, v[..., image, :]], -2),
                              heads, skip_reshape=True)
    assert_exact(stream_out, own, "the stream's own attention")


def test_one_image_key_attention_per_layer_whatever_the_number_of_regions(comfy, flux):
    """FLOPs counted exactly (torch's counter, the CPU fused attention added as bench_counts does). What
    regional attention adds at its layers beyond carrying the local prompts' streams (their tokens' own
    work through the model) grows by only the few local-prompt keys per image query from 1 to 4 regions,
    not by one attention of the image queries over the image keys per region (the concatenated path)."""
    from scripts.bench_counts import Costs
    model, pos, neg = flux
    boxes = [dict(x=0.0, width=0.5), dict(x=0.5, width=0.5), dict(y=0.0, height=0.5), dict(y=0.5, height=0.5)]
    chained = None
    for seed, box in zip((7, 8, 9, 10), boxes):
        chained = region(comfy, conditioning(model, tokens=5, seed=seed), regions=chained, **box)

    def flops(patched):
        with Costs() as costs:
            sample(comfy, patched, pos, neg, batch=1, steps=1, size=256)
        return costs.flops
    at_layers = {count: flops(regional(comfy, model, chained[:count]))
                 - flops(dit_helpers.regional_at_no_layer(model, chained[:count], ("double", 99))) for count in (1, 4)}
    image_tokens, width, layers = (256 // 16) ** 2, 64, 4  # tiny Flux: 2 x 2 patches of a /8 latent; 2 + 2 blocks
    image_key_attention = 4 * image_tokens * image_tokens * width * layers  # Q K^T and P V of one row
    local_keys = 4 * image_tokens * 5 * width * layers  # one region's 5 keys for every image query
    assert at_layers[4] - at_layers[1] <= 3 * local_keys < 0.1 * image_key_attention, at_layers


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
    aesthetic_joint = pack_module("attention.aesthetic_mix")
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
