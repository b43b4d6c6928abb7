"""Qwen-Image and Qwen-Image-Edit (tiny, seeded, ComfyUI's own QwenImageTransformer2DModel) inside a
real ComfyUI: every block is a double-stream block with one joint [text | image | reference latents]
attention, named ``double.i`` from the block_type / block_index the model writes.

StyleAligned (neutral = vanilla; row 0 unchanged and rows 1.. styled at cfg 1 and Qwen's cfg 2.5; the
formula against an independent computation on captured q/k/v), regional attention (weight 0 = vanilla,
outside every region bit for bit, the per-step curve), aesthetic value mixing, flow inversion and the
reference-image mode, another pack's override kept running, refusals naming the family, and Edit's
reference latents: extra tokens after the image whose attention outputs no control touches, with the
image grid the generated latent's only.
"""
import math

import pytest
import torch

from tests.comfy import dit_helpers
from tests.comfy.dit_helpers import (QKVRecorder, aesthetic_mix, pack, plain_attention, region, regional, spy_calls,
                                    with_override)
from tests.comfy.style_aligned_node import NEUTRAL, style_aligned
from tests.tolerance import (EFFECT, ONE_CALL, OPS, REFINE_GAIN, ROUND_TRIP, SAMPLING, assert_changed, assert_close,
                             assert_exact, rel_rms, relative_change)

CFG = 2.5  # ComfyUI's Qwen-Image and Qwen-Image-Edit templates
TEXT = 8  # prompt tokens of the stand-in conditioning


def sample(comfy, model, positive, negative, batch=2, cfg=1.0, steps=2):
    """KSampler semantics (euler, simple) on a 64 px latent [batch, 16, 1, 8, 8]: 4 x 4 image tokens."""
    return dit_helpers.sample(comfy, model, positive, negative, batch=batch, cfg=cfg, steps=steps)


@pytest.fixture(scope="module")
def qwen(comfy):
    """(model, positive, negative): the tiny Qwen-Image, built into the test base on first use."""
    from tiny_models.qwen_image import QWEN_IMAGE, build_qwen_image, load_tiny_qwen_image, random_conditioning, \
        verify_qwen_image
    path = comfy.base_dir / "models" / "diffusion_models" / QWEN_IMAGE
    try:
        verify_qwen_image(path)
    except Exception:  # missing or stale: rebuild (a second)
        build_qwen_image(path)
    return load_tiny_qwen_image(path), random_conditioning(TEXT, seed=1), random_conditioning(TEXT, seed=2)


@pytest.fixture(scope="module")
def vanilla(comfy, qwen):
    model, pos, neg = qwen
    return {cfg: sample(comfy, model, pos, neg, cfg=cfg) for cfg in (1.0, CFG)}


@pytest.fixture(scope="module")
def vanilla3(comfy, qwen):
    model, pos, neg = qwen
    return {cfg: sample(comfy, model, pos, neg, batch=3, cfg=cfg) for cfg in (1.0, CFG)}


@pytest.fixture(scope="module")
def edit(qwen):
    """Qwen-Image-Edit conditioning: a 48 px reference latent (3 x 3 tokens) appended by ReferenceLatent."""
    from tiny_models.qwen_image import with_reference_latents
    model, pos, neg = qwen
    reference = torch.randn(1, 16, 1, 6, 6, generator=torch.Generator().manual_seed(11))
    return with_reference_latents(pos, [reference]), with_reference_latents(neg, [reference])


def local_prompt(seed=7, tokens=5):
    from tiny_models.qwen_image import random_conditioning
    return random_conditioning(tokens, seed=seed)


# ---- the family ------------------------------------------------------------------------------------

def test_the_model_is_qwen_image_with_double_blocks(comfy, qwen):
    dispatcher, layers, models = pack("attention.dispatch.dispatcher"), pack("attention.core.layers"), pack("attention.models")
    diffusion_model = qwen[0].get_model_object("diffusion_model")
    assert type(qwen[0].model.model_config).__name__ == "QwenImage"
    family = models.family_of(diffusion_model)
    assert family.name == "Qwen-Image" and family.joint and family.context_width(diffusion_model) == 32
    keys = dispatcher.layer_keys(diffusion_model)
    assert keys == (("double", 0), ("double", 1))
    selection = layers.parse_layer_spec("double.1", "AtelierStyleAligned", family.block_kinds)
    assert layers.LayerSelection(selection).resolve(list(keys)) \
        == {("double", 1)}


def test_every_attention_call_is_a_joint_text_image_call_of_a_named_layer(comfy, qwen):
    """What the adapter relies on: q/k/v (batch, heads, tokens, dim) of [text | 4 x 4 image tokens] at
    double.0 and double.1, no attention mask (one prompt, no padding)."""
    model, pos, neg = qwen
    recorder = QKVRecorder(keep=True)
    sample(comfy, with_override(model, recorder), pos, neg, batch=2, steps=1)
    assert [c["key"] for c in recorder.calls] == [("double", 0), ("double", 1)]
    for call in recorder.calls:
        assert call["q"].shape == (2, 2, TEXT + 16, 32) and call["mask"] is None


# ---- StyleAligned ----------------------------------------------------------------------------------

def test_neutral_settings_reproduce_vanilla_exactly(comfy, qwen, vanilla):
    model, pos, neg = qwen
    assert_exact(sample(comfy, style_aligned(comfy, model, **NEUTRAL), pos, neg), vanilla[1.0], "neutral StyleAligned")


@pytest.mark.parametrize("cfg", [1.0, CFG])
@pytest.mark.parametrize("settings", [{}, {"shared_score_shift": 0.69, "adain_values": True}, {"layers": "double.1"}])
def test_style_aligned_keeps_row_0_and_styles_the_other_rows(comfy, qwen, vanilla3, cfg, settings):
    model, pos, neg = qwen
    out = sample(comfy, style_aligned(comfy, model, **settings), pos, neg, batch=3, cfg=cfg)
    assert_close(out[0], vanilla3[cfg][0], ulps=SAMPLING, what="reference row 0")
    for row in (1, 2):
        assert_changed(out[row], vanilla3[cfg][row], what=f"generated row {row}")


def independent_shared_attention(q, k, v, text, image, scale=1.0, shift=0.0, eps=1e-5):
    """StyleAligned for generated row 1 against reference row 0 with plain softmax: q, k, v (2, heads, T, d),
    image tokens text..text + image, any tokens after them (reference latents) plain attention."""
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
    out[:, text + image:] = own[:, text + image:]  # reference latents: untouched
    return out.transpose(0, 1).reshape(out.shape[1], -1)


@pytest.mark.parametrize("fold", [False, True], ids=["shift as a mask", "shift folded into head channels"])
def test_style_aligned_formula_against_an_independent_computation(comfy, qwen, fold):
    """The chain at one layer on q/k/v captured from the model, through the pack's override: row 0 is
    plain attention, row 1 the formula written out with plain softmax."""
    dit_style, style, rows = (pack("attention.style_aligned"), pack("attention.style_aligned"),
                              pack("attention.core.rows"))
    model, pos, neg = qwen
    recorder = QKVRecorder(keep=True)
    sample(comfy, with_override(model, recorder), pos, neg, batch=2, steps=1)
    captured = next(c for c in recorder.calls if c["key"] == ("double", 1))
    q, k, v = captured["q"], captured["k"], captured["v"]
    settings = style.SharingSettings(score_scale=1.3, score_shift=0.4)

    def attention(q_, k_, v_, mask):
        scores = q_ @ k_.transpose(-1, -2) / math.sqrt(q_.shape[-1])
        out = (scores if mask is None else scores + mask).softmax(-1) @ v_
        return out.transpose(1, 2).flatten(2)
    out = dit_style.dit_shared_attention(q, k, v, rows.chunk_layout(2, [0]), settings, slice(TEXT, TEXT + 16),
                                         attention, heads=q.shape[1] if fold else None)
    assert_exact(out[0], attention(q[:1], k[:1], v[:1], None)[0], "reference row (its own call)")
    expected = independent_shared_attention(q.double(), k.double(), v.double(), TEXT, 16, 1.3, 0.4)
    assert_close(out[1], expected, ulps=ONE_CALL, dtype=torch.float32, what="generated row vs the formula")


def test_in_the_model_the_generated_row_gets_adain_and_the_reference_keys(comfy, qwen):
    """What the chain hands another pack's override under it at double.0 (same inputs as vanilla):
    the reference row's own q/k/v, then row 1's text queries as they were, its image queries and keys
    AdaIN'd to row 0's, and row 0's image keys appended."""
    model, pos, neg = qwen
    plain, under = QKVRecorder(keep=True), QKVRecorder(keep=True)
    sample(comfy, with_override(model, plain), pos, neg, batch=2, steps=1)
    sample(comfy, style_aligned(comfy, with_override(model, under), layers="double.0"), pos, neg, batch=2, steps=1)
    first = plain.calls[0]
    ours = [c for c in under.calls if c["key"] == ("double", 0)][:2]
    assert_exact(ours[0]["q"], first["q"][:1], "reference row's q")
    q_ref, k_ref = first["q"][0, :, TEXT:], first["k"][0, :, TEXT:]

    def adain(x, ref, eps=1e-5):
        return ((x - x.mean(-2, keepdim=True)) / (x.var(-2, keepdim=True) + eps).sqrt()
                * (ref.var(-2, keepdim=True) + eps).sqrt() + ref.mean(-2, keepdim=True))
    gen_q, gen_k = ours[1]["q"][0], ours[1]["k"][0]
    assert_exact(gen_q[:, :TEXT], first["q"][1, :, :TEXT], "generated row's text queries")
    assert_close(gen_q[:, TEXT:], adain(first["q"][1, :, TEXT:], q_ref), ulps=OPS, what="AdaIN'd image queries")
    assert_close(gen_k[:, TEXT:-16], adain(first["k"][1, :, TEXT:], k_ref), ulps=OPS, what="AdaIN'd image keys")
    assert_exact(gen_k[:, -16:], k_ref, "appended reference image keys")


def test_another_packs_override_keeps_running(comfy, qwen):
    model, pos, neg = qwen
    foreign = QKVRecorder(scale=0.9)
    foreign_only = with_override(model, foreign)
    base = sample(comfy, foreign_only, pos, neg)
    foreign.calls.clear()
    out = sample(comfy, style_aligned(comfy, foreign_only), pos, neg)
    assert {c["key"] for c in foreign.calls} == {("double", 0), ("double", 1)}
    assert_close(out[0], base[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(out[1], base[1], what="generated row 1")
    assert_changed(base, sample(comfy, model, pos, neg), what="the foreign override alone")  # and it does act


def test_the_unpatched_model_is_vanilla_after_a_patched_run(comfy, qwen, vanilla):
    model, pos, neg = qwen
    sample(comfy, style_aligned(comfy, model), pos, neg)
    assert_exact(sample(comfy, model, pos, neg), vanilla[1.0], "the unpatched model after a patched run")
    assert "optimized_attention_override" not in model.model_options.get("transformer_options", {})


def test_what_qwen_image_cannot_run_is_refused_by_name(comfy, qwen):
    errors = pack("attention.core.errors")
    with pytest.raises(errors.AtelierError, match=r"AtelierStyleAligned: input 'model'.*Qwen-Image.*share_group_norm"):
        style_aligned(comfy, qwen[0], share_group_norm=True)


# ---- regional attention and aesthetic mixing --------------------------------------------------------

def test_region_weight_zero_reproduces_vanilla_exactly(comfy, qwen, vanilla):
    model, pos, neg = qwen
    out = sample(comfy, regional(comfy, model, region(comfy, local_prompt(), weight=0.0)), pos, neg)
    assert_exact(out, vanilla[1.0], "region weight 0")


@pytest.mark.parametrize("cfg", [1.0, CFG])
def test_a_region_changes_the_image(comfy, qwen, vanilla, cfg):
    model, pos, neg = qwen
    out = sample(comfy, regional(comfy, model, region(comfy, local_prompt())), pos, neg, cfg=cfg)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla[cfg], what="a region")


def test_outside_every_region_the_tokens_get_the_models_attention(comfy, qwen):
    model, pos, neg = qwen
    regions = region(comfy, local_prompt(), x=0.0, width=0.5)
    calls = spy_calls(lambda: sample(comfy, regional(comfy, model, regions, layers="double.1"), pos, neg,
                                     batch=1, steps=1))
    override, args, _, out = next(c for c in calls if c[2] == ("double", 1))
    layout = override.tokens
    assert layout.text == TEXT and layout.streams == (5,) and layout.grid == (4, 4)
    (q, _), (k, _), (v, _) = (layout.split(t) for t in args[:3])
    chain = plain_attention(q, k, v)
    main_out, _ = layout.split(out)
    outside = torch.zeros(4, 4, dtype=torch.bool)
    outside[:, 2:] = True  # the region covers the left half
    outside = torch.cat([torch.ones(TEXT, dtype=torch.bool), outside.flatten()])
    dit_helpers.assert_outside_the_region_is_the_models_attention(main_out, chain, outside)


@pytest.mark.parametrize("weights, expected", [((1.0, 0.0), [(5,), (), ()]), ((0.0, 1.0), [(), (5,), (5,)])])
def test_the_weight_curve_sets_the_regions_weight_per_step(comfy, qwen, weights, expected):
    """A step curve switching after the first of 3 steps: the local prompt's stream is in the model
    calls of the steps whose weight is not 0 only (cfg 1: one call per step), and acts there."""
    model, pos, neg = qwen
    curve = dict(curve="step", weight=weights[0], end_weight=weights[1], switch_at=0.1)
    stepped = regional(comfy, model, region(comfy, local_prompt(), **curve))
    out = []
    calls = spy_calls(lambda: out.append(sample(comfy, stepped, pos, neg, steps=3)))
    assert [c[0].tokens.streams for c in calls if c[2] == ("double", 0)] == expected
    assert_changed(out[0], sample(comfy, model, pos, neg, steps=3), what="the region in its steps")


def test_aesthetic_mix_strength_zero_is_vanilla_and_a_strength_acts(comfy, qwen, vanilla):
    model, pos, neg = qwen
    aesthetic = local_prompt(seed=9, tokens=3)[0][0]
    assert_exact(sample(comfy, aesthetic_mix(model, aesthetic, 0.0), pos, neg), vanilla[1.0], "strength 0")
    out = sample(comfy, aesthetic_mix(model, aesthetic, 0.8), pos, neg)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla[1.0], what="aesthetic mix at 0.8")


def test_a_local_prompt_of_another_text_width_is_refused(comfy, qwen):
    errors = pack("attention.core.errors")
    model, pos, neg = qwen
    wide = [[torch.randn(1, 5, 3584), {}]]
    with pytest.raises(errors.AtelierError, match=r"AtelierRegion.*3584.*32"):
        sample(comfy, regional(comfy, model, region(comfy, wide)), pos, neg, batch=1, steps=1)


# ---- Qwen-Image-Edit: reference latents --------------------------------------------------------------

def test_edit_reference_latents_are_extra_tokens_after_the_image(comfy, qwen, edit):
    """The layout of an Edit call: [8 text | 4 x 4 image | 3 x 3 reference] tokens; the grid is the
    generated latent's."""
    model, _, _ = qwen
    pos, neg = edit
    calls = spy_calls(lambda: sample(comfy, style_aligned(comfy, model), pos, neg, batch=2, steps=1))
    override, args, _, _ = calls[0]
    assert override.tokens.text == TEXT and override.tokens.image == 16 and override.tokens.extra == 9
    assert override.tokens.grid == (4, 4) and args[0].shape[-2] == TEXT + 16 + 9


@pytest.mark.parametrize("cfg", [1.0, CFG])
def test_edit_style_aligned_keeps_row_0_and_styles_the_other_rows(comfy, qwen, edit, cfg):
    model, _, _ = qwen
    pos, neg = edit
    plain = sample(comfy, model, pos, neg, cfg=cfg)
    out = sample(comfy, style_aligned(comfy, model), pos, neg, cfg=cfg)
    assert_close(out[0], plain[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(out[1], plain[1], what="generated row 1")


def _edit_controls(comfy, model):
    return {
        "StyleAligned": style_aligned(comfy, model, shared_score_shift=0.3),
        "regional": regional(comfy, model, region(comfy, local_prompt(), x=0.0, width=0.5)),
        "aesthetic": aesthetic_mix(model, local_prompt(seed=9, tokens=3)[0][0], 0.8),
    }


@pytest.mark.parametrize("control", ["StyleAligned", "regional", "aesthetic"])
def test_edit_reference_tokens_attention_outputs_are_untouched_by_every_control(comfy, qwen, edit, control):
    """In every call the reference latents' outputs are the model's attention on the q/k/v it gave,
    bit for bit, while the generated image tokens' outputs change."""
    model, _, _ = qwen
    pos, neg = edit
    patched = _edit_controls(comfy, model)[control]
    calls = spy_calls(lambda: sample(comfy, patched, pos, neg, batch=2, steps=2, cfg=CFG))
    assert calls
    image_change = 0.0  # the largest relative change of the image tokens' outputs over the calls
    for override, args, _, out in calls:
        layout = override.tokens
        assert layout.extra == 9
        (q, _), (k, _), (v, _) = (layout.split(t) for t in args[:3])
        main_out, _ = layout.split(out)
        assert_exact(main_out[:, -9:], plain_attention(q[..., -9:, :], k, v), "reference-latent tokens")
        image = layout.main.image_slice
        image_change = max(image_change, relative_change(main_out[:, image], plain_attention(q, k, v)[:, image]))
    assert image_change > EFFECT, image_change


def test_edit_2511_keeps_row_0_and_the_reference_tokens(comfy, edit):
    """Qwen-Image-Edit 2511 (ComfyUI 0.33.0 detects it; its reference latents are modulated at timestep
    0): StyleAligned keeps row 0 and styles row 1, the reference tokens' outputs stay the model's."""
    from tiny_models.qwen_image import QWEN_IMAGE, load_tiny_qwen_image
    try:
        model = load_tiny_qwen_image(comfy.base_dir / "models" / "diffusion_models" / QWEN_IMAGE, edit_2511=True)
    except (ValueError, TypeError):
        pytest.skip("this ComfyUI version has no Qwen-Image-Edit 2511 (index_timestep_zero)")
    assert model.get_model_object("diffusion_model").default_ref_method == "index_timestep_zero"
    pos, neg = edit
    plain = sample(comfy, model, pos, neg, cfg=CFG)
    outs = []
    calls = spy_calls(lambda: outs.append(sample(comfy, style_aligned(comfy, model), pos, neg, cfg=CFG)))
    assert_close(outs[0][0], plain[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(outs[0][1], plain[1], what="generated row 1")
    for override, args, _, out in calls:
        q, k, v = args[:3]
        assert override.tokens.extra == 9
        assert_exact(out[:, -9:], plain_attention(q[..., -9:, :], k, v), "reference-latent tokens")


def test_edit_region_weight_zero_and_neutral_style_are_vanilla(comfy, qwen, edit):
    model, _, _ = qwen
    pos, neg = edit
    plain = sample(comfy, model, pos, neg)
    assert_exact(sample(comfy, style_aligned(comfy, model, **NEUTRAL), pos, neg), plain, "neutral StyleAligned")
    zero = regional(comfy, model, region(comfy, local_prompt(), weight=0.0))
    assert_exact(sample(comfy, zero, pos, neg), plain, "region weight 0")


# ---- inversion and the reference-image mode -----------------------------------------------------------

@pytest.fixture(scope="module")
def x0():
    """An encoded still image as the Wan 2.1 VAE gives it: [1, 16, 1, 8, 8]."""
    return torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(5))


def invert(comfy, model, latent, pos, refine, steps=12):
    return comfy.node_class("AtelierInvert").execute(model, {"samples": latent}, steps, 1.0, "simple", refine,
                                                     positive=pos, negative=pos).args


def test_flow_inversion_round_trip_with_refinement(comfy, qwen, x0):
    from comfy import sample as comfy_sample, samplers
    model, pos, _ = qwen
    errors = []
    for refine in (0, 3):
        x_T, trajectory, sigmas = invert(comfy, model, x0, pos, refine, steps=8)
        out = comfy_sample.sample_custom(model, model.model.process_latent_in(x_T["samples"]), 1.0,
                                         samplers.ksampler("euler"), sigmas, pos, pos, torch.zeros_like(x0),
                                         disable_pbar=True, seed=0)
        errors.append(rel_rms(out, x0))
    assert trajectory.model_family == "QwenImage"
    assert errors[1] < ROUND_TRIP and errors[1] < REFINE_GAIN * errors[0], errors


def test_inversion_without_a_prompt_uses_zeros_of_the_models_text_width(comfy, qwen, x0):
    model = qwen[0]
    x_T, trajectory, _ = comfy.node_class("AtelierInvert").execute(model, {"samples": x0}, 3, 1.0, "simple", 0).args
    assert torch.isfinite(x_T["samples"]).all() and x_T["samples"].shape == x0.shape
    assert trajectory.conds_for(0).c_crossattn.shape[-1] == 32


@pytest.fixture(scope="module")
def trajectory(comfy, qwen, x0):
    return invert(comfy, qwen[0], x0, qwen[1], 2, steps=4)[1]


@pytest.mark.parametrize("edit_run", [False, True], ids=["Qwen-Image", "Qwen-Image-Edit"])
def test_reference_image_mode_runs(comfy, qwen, edit, trajectory, edit_run):
    model, pos, neg = qwen
    if edit_run:
        pos, neg = edit
    plain = sample(comfy, model, pos, neg, batch=2)
    styled = sample(comfy, style_aligned(comfy, model, reference=trajectory), pos, neg, batch=2)
    assert styled.shape == plain.shape and torch.isfinite(styled).all()
    assert_changed(styled, plain, what="reference-image mode")
    neutral = style_aligned(comfy, model, **NEUTRAL, reference=trajectory)
    assert_close(sample(comfy, neutral, pos, neg, batch=2), plain, ulps=SAMPLING, what="neutral reference-image mode")
