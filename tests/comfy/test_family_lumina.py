"""Z-Image (tiny, seeded, ComfyUI's own NextDiT as Z-Image builds it) inside a real ComfyUI: two
context refiner blocks (caption tokens only), two noise refiner blocks (image tokens only), then the
main layers ``layer.0`` / ``layer.1`` over the joint [caption | caption padding | image | image padding]
sequence, caption and image each padded to a multiple of 32.

The adapter's layer of a call (0.33.0 writes block_type "double" / block_index, 0.3.75 nothing: the
ordinal of the calls holding the whole layout), refiner calls never taken for a layer (stale block
values included), StyleAligned (neutral = vanilla; row 0 unchanged and rows 1.. styled at cfg 1 as
Z-Image Turbo runs and at cfg 4; the formula against an independent computation on captured q/k/v;
padding tokens untouched), regional attention (weight 0 = vanilla, streams kept apart from the prompt
in the caption refiner and the layers, outside every region bit for bit, the per-step curve), aesthetic
value mixing, flow inversion and the reference-image mode, another pack's override kept running,
refusals naming the family.
"""
import math

import pytest
import torch

from tests.comfy import dit_helpers
from tests.comfy.dit_helpers import MIX, QKVRecorder, aesthetic_mix, pack, plain_attention, region, regional, sample, with_override
from tests.comfy.style_aligned_node import NEUTRAL, style_aligned
from tests.tolerance import ONE_CALL, SAMPLING, assert_changed, assert_close, assert_exact, rel_rms

CFG = 4.0  # Z-Image (base) runs real cfg; Turbo cfg 1
TEXT = 8  # prompt tokens of the stand-in conditioning
CAPTION = 32  # the prompt padded to a multiple of 32
IMAGE = 16  # a 64 px image: 4 x 4 tokens, padded with 16 pad tokens to 32
FULL = CAPTION + 32
LUMINA_ROUND_TRIP = 0.1  # refined round trip (relative RMS) on shift 3 at 12 steps: measured 0.06
LUMINA_REFINE_GAIN = 0.25  # refinement cuts the plain round trip at least fourfold: measured ninefold


@pytest.fixture(scope="module")
def zimage(comfy):
    """(model, positive, negative): the tiny Z-Image, built into the test base on first use."""
    from tiny_models.lumina import Z_IMAGE, build_z_image, load_tiny_z_image, random_conditioning, verify_z_image
    path = comfy.base_dir / "models" / "diffusion_models" / Z_IMAGE
    try:
        verify_z_image(path)
    except Exception:  # missing or stale: rebuild (a second)
        build_z_image(path)
    return load_tiny_z_image(path), random_conditioning(TEXT, seed=1), random_conditioning(TEXT, seed=2)


@pytest.fixture(scope="module")
def vanilla(comfy, zimage):
    model, pos, neg = zimage
    return {cfg: sample(comfy, model, pos, neg, cfg=cfg) for cfg in (1.0, CFG)}


def local_prompt(seed=7, tokens=5):
    from tiny_models.lumina import random_conditioning
    return random_conditioning(tokens, seed=seed)


def spy_calls(run):
    """Run ``run()`` recording every pack override call: (override, q/k/v as the model gave them,
    the layer key the adapter gave the call, output)."""
    dit_override, lumina = pack("attention.dispatch.dit_override"), pack("attention.models.lumina")
    calls, original, original_key = [], dit_override.DiTOverride.__call__, lumina.LuminaFamily.call_key
    keys = []

    def call_key(self, *args, **kwargs):
        keys.append(original_key(self, *args, **kwargs))
        return keys[-1]

    def spy(self, func, *args, **kwargs):
        keys.append(None)  # a text refiner call asks no key
        out = original(self, func, *args, **kwargs)
        calls.append((self, args, keys[-1], out))
        return out
    dit_override.DiTOverride.__call__ = spy
    lumina.LuminaFamily.call_key = call_key
    try:
        run()
    finally:
        dit_override.DiTOverride.__call__ = original
        lumina.LuminaFamily.call_key = original_key
    return calls


# ---- the family ------------------------------------------------------------------------------------

def test_the_model_is_z_image_with_named_main_layers(comfy, zimage):
    dispatcher, layers, models = pack("attention.dispatch.dispatcher"), pack("attention.core.layers"), pack("attention.models")
    diffusion_model = zimage[0].get_model_object("diffusion_model")
    assert type(diffusion_model).__name__ == "NextDiT" and diffusion_model.pad_tokens_multiple == 32
    family = models.family_of(diffusion_model)
    assert family.name == "Z-Image / Lumina 2" and family.joint and family.context_width(diffusion_model) == 32
    keys = dispatcher.layer_keys(diffusion_model)
    assert keys == (("layer", 0), ("layer", 1))
    selection = layers.parse_layer_spec("layer.1", "AtelierStyleAligned", family.block_kinds)
    assert layers.LayerSelection(selection).resolve(list(keys)) \
        == {("layer", 1)}


def test_the_attention_calls_refiners_first_then_the_joint_layers(comfy, zimage):
    """What the adapter relies on, per evaluation: 2 caption-only calls (8 tokens padded to 32), 2
    image-only calls (16 tokens padded to 32), then one call per main layer over all 64 tokens;
    q/k/v (batch, heads, tokens, dim), no mask."""
    model, pos, neg = zimage
    recorder = QKVRecorder(keep=True)
    sample(comfy, with_override(model, recorder), pos, neg, batch=2, steps=2)
    assert [c["q"].shape[-2] for c in recorder.calls] == [CAPTION, CAPTION, 32, 32, FULL, FULL] * 2
    assert all(c["q"].shape == (2, 4, c["q"].shape[-2], 64) and c["mask"] is None for c in recorder.calls)


def test_each_call_gets_its_layer_and_refiner_calls_none(comfy, zimage):
    """Per evaluation: the 4 refiner calls no layer, then layer.0 and layer.1 (0.33.0: the index the
    model writes; 0.3.75: the ordinal of the calls holding the whole layout)."""
    model, pos, neg = zimage
    calls = spy_calls(lambda: sample(comfy, style_aligned(comfy, model), pos, neg, batch=2, steps=2))
    assert [key for *_, key, _ in calls] == ([None] * 4 + [("layer", 0), ("layer", 1)]) * 2


def test_stale_block_values_never_make_a_refiner_call_a_layer(comfy, zimage):
    """0.33.0 writes block_type / block_index into the options in place, before each main layer only:
    values left there (planted here in the model's options) reach the refiner calls, which must stay
    no layer, while each main layer gets the index written for it."""
    model, pos, neg = zimage
    recorder = QKVRecorder()
    sample(comfy, with_override(model, recorder), pos, neg, batch=1, steps=1)
    if recorder.calls[-1]["key"] != ("double", 1):
        pytest.skip("this ComfyUI version writes no block index for Lumina (0.3.75): nothing to go stale")
    stale = model.clone()
    stale.model_options.setdefault("transformer_options", {}).update(block_type="double", block_index=1)
    calls = spy_calls(lambda: sample(comfy, style_aligned(comfy, stale), pos, neg, batch=2, steps=2))
    assert [key for *_, key, _ in calls] == ([None] * 4 + [("layer", 0), ("layer", 1)]) * 2


def test_the_token_layout_places_caption_padding_and_image(comfy, zimage):
    model, pos, neg = zimage
    calls = spy_calls(lambda: sample(comfy, style_aligned(comfy, model), pos, neg, batch=2, steps=1))
    layout = calls[-1][0].tokens
    assert (layout.text, layout.image, layout.grid, layout.extra) == (CAPTION, IMAGE, (4, 4), 16)
    assert layout.image_slice == slice(CAPTION, CAPTION + IMAGE) and layout.matches(FULL)
    assert not layout.matches(CAPTION) and not layout.matches(32)


# ---- StyleAligned ----------------------------------------------------------------------------------

def test_neutral_settings_reproduce_vanilla_exactly(comfy, zimage, vanilla):
    model, pos, neg = zimage
    for cfg in (1.0, CFG):
        out = sample(comfy, style_aligned(comfy, model, **NEUTRAL), pos, neg, cfg=cfg)
        assert_exact(out, vanilla[cfg], f"neutral StyleAligned at cfg {cfg}")


@pytest.mark.parametrize("cfg", [1.0, CFG])
@pytest.mark.parametrize("settings", [{}, {"shared_score_shift": 0.69, "adain_values": True}, {"layers": "layer.1"}])
def test_style_aligned_keeps_row_0_and_styles_the_other_rows(comfy, zimage, vanilla, cfg, settings):
    model, pos, neg = zimage
    out = sample(comfy, style_aligned(comfy, model, **settings), pos, neg, cfg=cfg)
    assert_close(out[0], vanilla[cfg][0], ulps=SAMPLING, what="reference row 0")
    for row in (1, 2):
        assert_changed(out[row], vanilla[cfg][row], what=f"generated row {row}")


def independent_shared_attention(q, k, v, text, image, scale=1.0, shift=0.0, eps=1e-5):
    """StyleAligned for generated row 1 against reference row 0 with plain softmax: q, k, v (2, heads, T, d),
    image tokens text..text + image; the image padding after them: plain attention on the model's q/k/v."""
    def adain(x, ref):
        mu, var = x.mean(-2, keepdim=True), x.var(-2, keepdim=True)
        return (x - mu) / (var + eps).sqrt() * (ref.var(-2, keepdim=True) + eps).sqrt() + ref.mean(-2, keepdim=True)
    img = slice(text, text + image)
    q1, k1, v1 = q[1].clone(), k[1].clone(), v[1].clone()
    q1[:, img] = adain(q1[:, img], q[0, :, img])
    k1[:, img] = adain(k1[:, img], k[0, :, img])
    keys = torch.cat([k1, scale * k[0, :, img]], dim=-2)
    values = torch.cat([v1, v[0, :, img]], dim=-2)
    scores = q1 @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores[..., k1.shape[-2]:] += shift
    out = scores.softmax(-1) @ values
    own = ((q[1] @ k[1].transpose(-1, -2)) / math.sqrt(q.shape[-1])).softmax(-1) @ v[1]
    out[:, text + image:] = own[:, text + image:]
    return out.transpose(0, 1).reshape(out.shape[1], -1)


@pytest.mark.parametrize("fold", [False, True], ids=["shift as a mask", "shift folded into head channels"])
def test_style_aligned_formula_against_an_independent_computation(comfy, zimage, fold):
    """The method at layer.1 on q/k/v captured from the model: row 0 is plain attention, row 1 the
    formula written out with plain softmax (caption and its padding keep their own q/k/v)."""
    dit_style, style, rows = (pack("attention.style_aligned"), pack("attention.style_aligned"),
                              pack("attention.core.rows"))
    model, pos, neg = zimage
    recorder = QKVRecorder(keep=True)
    sample(comfy, with_override(model, recorder), pos, neg, batch=2, steps=1)
    captured = [c for c in recorder.calls if c["q"].shape[-2] == FULL][1]
    q, k, v = captured["q"], captured["k"], captured["v"]
    settings = style.SharingSettings(score_scale=1.3, score_shift=0.4)

    def attention(q_, k_, v_, mask):
        scores = q_ @ k_.transpose(-1, -2) / math.sqrt(q_.shape[-1])
        out = (scores if mask is None else scores + mask).softmax(-1) @ v_
        return out.transpose(1, 2).flatten(2)
    out = dit_style.dit_shared_attention(q, k, v, rows.chunk_layout(2, [0]), settings,
                                         slice(CAPTION, CAPTION + IMAGE), attention,
                                         heads=q.shape[1] if fold else None)
    assert_exact(out[0], attention(q[:1], k[:1], v[:1], None)[0], "reference row (its own call)")
    expected = independent_shared_attention(q.double(), k.double(), v.double(), CAPTION, IMAGE, 1.3, 0.4)
    assert_close(out[1, :CAPTION + IMAGE], expected[:CAPTION + IMAGE], ulps=ONE_CALL, dtype=torch.float32,
                 what="generated row vs the formula")


def test_in_the_model_image_padding_and_caption_keep_their_attention(comfy, zimage):
    """At a styled layer the image padding tokens' outputs are the model's attention on its own q/k/v,
    bit for bit; the reference row's whole output too, to rounding (its own call, not the batch's); the
    generated row's image tokens change."""
    model, pos, neg = zimage
    calls = spy_calls(lambda: sample(comfy, style_aligned(comfy, model, layers="layer.0"), pos, neg, batch=2,
                                     steps=1))
    _, args, key, out = next(c for c in calls if c[2] == ("layer", 0))
    q, k, v = args[:3]
    plain = plain_attention(q, k, v)
    assert_exact(out[:, CAPTION + IMAGE:], plain[:, CAPTION + IMAGE:], "image padding tokens")
    assert_close(out[0], plain[0], ulps=ONE_CALL, what="reference row (a call of its own, not the batch's)")
    assert_changed(out[1, CAPTION:CAPTION + IMAGE], plain[1, CAPTION:CAPTION + IMAGE], what="generated image tokens")


class ShiftingRecorder(QKVRecorder):
    """Another pack's override that adds 0.1 to every attention output: Z-Image RMS-normalises the
    attention output, so a scale (QKVRecorder's) would leave no trace."""

    def __call__(self, func, *args, **kwargs):
        return super().__call__(func, *args, **kwargs) + 0.1


def test_another_packs_override_keeps_running(comfy, zimage):
    model, pos, neg = zimage
    foreign = ShiftingRecorder()
    foreign_only = with_override(model, foreign)
    base = sample(comfy, foreign_only, pos, neg)
    foreign.calls.clear()
    out = sample(comfy, style_aligned(comfy, foreign_only), pos, neg)
    # every call of 3 steps reaches it: 4 refiner calls, and per styled layer the reference row's, the
    # generated rows' and the image padding's queries
    assert len(foreign.calls) == 3 * (4 + 2 * 3)
    assert_close(out[0], base[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(out[1], base[1], what="generated row 1")
    assert_changed(base, sample(comfy, model, pos, neg), what="the foreign override alone")  # and it does act


def test_the_unpatched_model_is_vanilla_after_a_patched_run(comfy, zimage, vanilla):
    model, pos, neg = zimage
    sample(comfy, style_aligned(comfy, model), pos, neg)
    assert_exact(sample(comfy, model, pos, neg), vanilla[1.0], "the unpatched model after a patched run")
    assert "optimized_attention_override" not in model.model_options.get("transformer_options", {})


def test_what_z_image_cannot_run_is_refused_by_name(comfy, zimage):
    errors = pack("attention.core.errors")
    with pytest.raises(errors.AtelierError, match=r"AtelierStyleAligned: input 'model'.*Z-Image.*share_group_norm"):
        style_aligned(comfy, zimage[0], share_group_norm=True)


# ---- regional attention and aesthetic mixing --------------------------------------------------------

def test_region_weight_zero_reproduces_vanilla_exactly(comfy, zimage, vanilla):
    model, pos, neg = zimage
    out = sample(comfy, regional(comfy, model, region(comfy, local_prompt(), weight=0.0)), pos, neg)
    assert_exact(out, vanilla[1.0], "region weight 0")


def test_carried_streams_go_before_the_prompt_padded_to_32(comfy, zimage):
    """A 5-token local prompt is carried as [stream 5 | filler 27 | caption 32 | image 32]: the
    prompt's padding and RoPE distances to the image stay as without it."""
    model, pos, neg = zimage
    calls = spy_calls(lambda: sample(comfy, regional(comfy, model, region(comfy, local_prompt())), pos, neg,
                                     batch=1, steps=1))
    layout = calls[-1][0].tokens
    assert layout.streams == (5, 27) and layout.stream_keys[1] is None and layout.streams_first
    assert [c[1][0].shape[-2] for c in calls] == [64, 64, 32, 32, 96, 96]


def test_appended_prompt_streams_leave_the_prompt_and_image_untouched(comfy, zimage):
    """A region selecting no layer still carries its prompt's stream through the caption refiner and
    every layer: what the prompt and image compute must not change (the stream is kept apart in every
    call; RoPE at shifted positions rounds differently: SAMPLING ulps)."""
    model, pos, neg = zimage
    regions = region(comfy, local_prompt())
    plain = sample(comfy, model, pos, neg, batch=2, steps=2)
    kept_apart = sample(comfy, dit_helpers.regional_at_no_layer(model, regions, ("layer", 99)), pos, neg, batch=2, steps=2)
    assert_close(kept_apart, plain, ulps=SAMPLING, what="a stream carried through no layer")


@pytest.mark.parametrize("cfg", [1.0, CFG])
def test_a_region_changes_the_image(comfy, zimage, vanilla, cfg):
    model, pos, neg = zimage
    out = sample(comfy, regional(comfy, model, region(comfy, local_prompt())), pos, neg, cfg=cfg)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla[cfg], what="a region")


def test_outside_every_region_the_tokens_get_the_models_attention(comfy, zimage):
    model, pos, neg = zimage
    regions = region(comfy, local_prompt(), x=0.0, width=0.5)
    calls = spy_calls(lambda: sample(comfy, regional(comfy, model, regions, layers="layer.1"), pos, neg,
                                     batch=1, steps=1))
    override, args, _, out = next(c for c in calls if c[2] == ("layer", 1))
    layout = override.tokens
    assert layout.text == CAPTION and layout.grid == (4, 4)
    # the image padding's q/k with the streams' RoPE shift put back (what the layers attend with)
    q, k = override.family.stream_positions(*args[:2], layout, model.get_model_object("diffusion_model"))
    (q, _), (k, _), (v, _) = (layout.split(t) for t in (q, k, args[2]))
    chain = plain_attention(q, k, v)
    main_out, _ = layout.split(out)
    outside = torch.zeros(4, 4, dtype=torch.bool)
    outside[:, 2:] = True  # the region covers the left half
    outside = torch.cat([torch.ones(CAPTION, dtype=torch.bool), outside.flatten(), torch.ones(16, dtype=torch.bool)])
    dit_helpers.assert_outside_the_region_is_the_models_attention(main_out, chain, outside)


def test_the_weight_curve_sets_the_regions_weight_per_step(comfy, zimage, vanilla):
    """A step curve 1 -> 0 at 5 % progress over 3 steps (progress = ComfyUI's percent: 0, 0.08, 0.25 with
    the model's shift 6): the local prompt's stream is in the model call of step 0 only (cfg 1)."""
    model, pos, neg = zimage
    stepped = regional(comfy, model, region(comfy, local_prompt(), curve="step", weight=1.0, end_weight=0.0,
                                            switch_at=0.05))
    calls = spy_calls(lambda: sample(comfy, stepped, pos, neg))
    per_call = [c[0].tokens.streams for c in calls if c[2] == ("layer", 0)]
    assert per_call == [(5, 27), (), ()]
    out = sample(comfy, stepped, pos, neg)
    always = sample(comfy, regional(comfy, model, region(comfy, local_prompt())), pos, neg)
    assert_changed(out, vanilla[1.0], what="an early region vs vanilla")
    assert_changed(out, always, what="an early region vs a constant curve")


def test_aesthetic_mix_strength_zero_is_vanilla_and_a_strength_acts(comfy, zimage, vanilla):
    model, pos, neg = zimage
    aesthetic = local_prompt(seed=9, tokens=3)[0][0]
    node_out = comfy.node_class(MIX).execute(model, None, "", 0.0, True, "all", 0.0, 1.0).args[0]
    assert_exact(sample(comfy, node_out, pos, neg), vanilla[1.0], "the node at strength 0")
    # a control at strength 0 still carries its stream: RoPE at shifted positions rounds differently
    assert_close(sample(comfy, aesthetic_mix(model, aesthetic, 0.0), pos, neg), vanilla[1.0], ulps=SAMPLING,
                 what="strength 0 (its stream carried)")
    out = sample(comfy, aesthetic_mix(model, aesthetic, 0.8), pos, neg)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla[1.0], what="aesthetic mix at 0.8")


def test_a_local_prompt_of_another_text_width_is_refused(comfy, zimage):
    errors = pack("attention.core.errors")
    model, pos, neg = zimage
    wide = [[torch.randn(1, 5, 2560), {}]]
    with pytest.raises(errors.AtelierError, match=r"AtelierRegion.*2560.*32"):
        sample(comfy, regional(comfy, model, region(comfy, wide)), pos, neg, batch=1, steps=1)


# ---- inversion and the reference-image mode -----------------------------------------------------------

@pytest.fixture(scope="module")
def x0():
    """An encoded still image as the Flux VAE gives it: [1, 16, 8, 8]."""
    return torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))


def invert(comfy, model, latent, pos, refine, steps=12):
    return comfy.node_class("AtelierInvert").execute(model, {"samples": latent}, steps, 1.0, "simple", refine,
                                                     positive=pos, negative=pos).args


def test_flow_inversion_round_trip_with_refinement(comfy, zimage, x0):
    """AtelierInvert then Euler back over its sigmas, on ModelSamplingAuraFlow shift 3 as Z-Image Turbo
    runs: 4 refinement iterations cut the round-trip error of the random-weight model about ninefold
    (measured 0.54 -> 0.06 relative RMS at 12 steps): LUMINA_ROUND_TRIP and LUMINA_REFINE_GAIN."""
    from comfy import sample as comfy_sample, samplers
    model, pos, _ = zimage
    model = comfy.node_class("ModelSamplingAuraFlow")().patch_aura(model, 3.0)[0]
    errors = []
    for refine in (0, 4):
        x_T, trajectory, sigmas = invert(comfy, model, x0, pos, refine)
        out = comfy_sample.sample_custom(model, model.model.process_latent_in(x_T["samples"]), 1.0,
                                         samplers.ksampler("euler"), sigmas, pos, pos, torch.zeros_like(x0),
                                         disable_pbar=True, seed=0)
        errors.append(rel_rms(out, x0))
    assert trajectory.model_family == "Lumina2"
    assert errors[1] < LUMINA_ROUND_TRIP and errors[1] < LUMINA_REFINE_GAIN * errors[0], errors


def test_reference_image_mode_runs(comfy, zimage, x0):
    model, pos, neg = zimage
    _, trajectory, _ = invert(comfy, model, x0, pos, 2, steps=4)
    plain = sample(comfy, model, pos, neg, batch=2)
    styled = sample(comfy, style_aligned(comfy, model, reference=trajectory), pos, neg, batch=2)
    assert styled.shape == plain.shape and torch.isfinite(styled).all()
    assert_changed(styled, plain, what="reference-image mode")
    neutral = style_aligned(comfy, model, **NEUTRAL, reference=trajectory)
    assert_close(sample(comfy, neutral, pos, neg, batch=2), plain, ulps=SAMPLING, what="neutral reference-image mode")
