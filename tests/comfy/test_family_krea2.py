"""Every control on a (tiny, seeded) Krea 2 inside a real ComfyUI (0.33.0; Krea 2 needs ComfyUI >= 0.24,
so on 0.3.75 the module is skipped with that reason).

Krea 2 is single-stream: ``[text | image | reference latents]`` in one sequence through every block,
``block_type = "single"``, ``block_index`` written by the model, its own ``attn1_patch`` hooks around
the attention call, and a text adapter (``txtfusion``) that attends across text tokens before the
blocks. Proven here: neutral settings = vanilla bit for bit; StyleAligned keeps row 0 and styles the
others at cfg 1 (as turbo templates run) and real cfg, with the formula checked on captured q/k/v;
regional weight 0 = vanilla, outside every region bit for bit, per-step weights; aesthetic mixing;
appended prompt streams never meet the prompt (not even in the text adapter); flow inversion and the
reference-image mode; another pack's override and the model's attn1 hooks keep running; reference
latents are never styled or regioned; refusals name the family.
"""
import math

import pytest
import torch

from tests.comfy import dit_helpers
from tests.comfy.dit_helpers import MIX, QKVRecorder, adain, aesthetic_mix, pack, region, regional, spy_calls, with_override
from tests.comfy.style_aligned_node import NEUTRAL, NODE, style_aligned
from tests.tolerance import (LAYERS, ONE_CALL, OPS, REFINE_GAIN, ROUND_TRIP, SAMPLING, assert_changed, assert_close,
                             assert_exact, rel_rms)

INVERT = "AtelierInvert"
TEXT = 8  # prompt tokens of the stand-in conditioning


@pytest.fixture(scope="module")
def krea2(comfy):
    import importlib.util
    if importlib.util.find_spec("comfy.ldm.krea2") is None:
        pytest.skip("Krea 2 exists in ComfyUI >= 0.24 only (comfy/ldm/krea2); this test bed's ComfyUI has none")
    from tiny_models.krea2 import KREA2, build_krea2, load_krea2, verify_krea2
    path = comfy.base_dir / "models" / "diffusion_models" / KREA2
    try:
        verify_krea2(path)
    except Exception:  # missing or stale: rebuild (a second)
        build_krea2(path)
    model = load_krea2(path)
    return model, conditioning(model, seed=1), conditioning(model, seed=2)


def conditioning(model, tokens=TEXT, seed=0):
    from tiny_models.krea2 import random_conditioning
    return random_conditioning(model, tokens=tokens, seed=seed)


def with_reference(cond, latent, method="index_timestep_zero"):
    """What ReferenceLatent + FluxKontextMultiReferenceLatentMethod add to a conditioning."""
    return [[c, dict(extra, reference_latents=[latent], reference_latents_method=method)] for c, extra in cond]


def sample(comfy, model, positive, negative, batch=3, cfg=1.0, steps=3, size=64, seed=0):
    """KSampler semantics on an empty 16-channel latent (Krea 2 samples it as [B, 16, 1, H, W])."""
    latent = {"samples": torch.zeros([batch, 16, size // 8, size // 8])}
    return comfy.sample(model, positive, negative, latent=latent, batch=batch, cfg=cfg, steps=steps,
                        seed=seed, sampler_name="euler", scheduler="simple")


@pytest.fixture(scope="module")
def vanilla(comfy, krea2):
    model, pos, neg = krea2
    return {cfg: sample(comfy, model, pos, neg, cfg=cfg) for cfg in (1.0, 4.0)}


def diffusion_model(model):
    return model.get_model_object("diffusion_model")


# ---- the adapter ------------------------------------------------------------------------------------
def test_the_adapter_recognises_krea2_and_names_its_single_blocks(krea2):
    model = krea2[0]
    family = pack("attention.models").family_of(diffusion_model(model))
    layers = pack("attention.core.layers")
    assert family.name == "Krea 2" and family.joint
    keys = pack("attention.dispatch.dispatcher").layer_keys(diffusion_model(model))
    assert keys == (("single", 0), ("single", 1))
    selection = layers.LayerSelection(layers.parse_layer_spec("single.1", NODE, family.block_kinds))
    assert selection.resolve(list(keys)) == {("single", 1)}
    assert family.context_width(diffusion_model(model)) == 12 * 80  # 12 tapped Qwen3-VL layers side by side


def test_token_layout_counts_reference_latents_as_extra_tokens(krea2):
    model = krea2[0]
    family = pack("attention.models").family_of(diffusion_model(model))
    dm, x, context = diffusion_model(model), torch.zeros(2, 16, 1, 10, 8), torch.zeros(2, TEXT, 960)
    plain = family.token_layout(dm, x, context, {})
    assert (plain.text, plain.image, plain.grid, plain.extra) == (TEXT, 20, (5, 4), 0)
    ref = [torch.zeros(1, 16, 1, 6, 6)]
    assert family.token_layout(dm, x, context, {"ref_latents": ref, "ref_latents_method": "index"}).extra == 9
    assert family.token_layout(dm, x, context, {"ref_latents": ref}).extra == 0  # no method: the model ignores them


# ---- StyleAligned -----------------------------------------------------------------------------------
def test_neutral_settings_reproduce_vanilla_exactly(comfy, krea2, vanilla):
    model, pos, neg = krea2
    assert_exact(sample(comfy, style_aligned(comfy, model, **NEUTRAL), pos, neg), vanilla[1.0], "neutral StyleAligned")


def test_a_control_selecting_no_layer_reproduces_vanilla_exactly(comfy, krea2, vanilla):
    dispatcher, layers, style = pack("attention.dispatch.dispatcher"), pack("attention.core.layers"), pack("attention.style_aligned")
    model, pos, neg = krea2
    control = style.SharedAttentionControl(settings=style.SharingSettings(), layers=layers.LayerSelection((("single", 99),)))
    assert_exact(sample(comfy, dispatcher.attach(model, control, node=NODE), pos, neg), vanilla[1.0],
                 "no layer selected")


@pytest.mark.parametrize("settings, cfg", [({}, 1.0), ({}, 4.0), ({"shared_score_shift": 0.69, "adain_values": True}, 4.0),
                                           ({"layers": "single.1"}, 1.0)])
def test_reference_row_unchanged_other_rows_styled(comfy, krea2, vanilla, cfg, settings):
    model, pos, neg = krea2
    out = sample(comfy, style_aligned(comfy, model, **settings), pos, neg, cfg=cfg)
    assert_close(out[0], vanilla[cfg][0], ulps=SAMPLING, what="reference row 0")
    for row in (1, 2):
        assert_changed(out[row], vanilla[cfg][row], what=f"generated row {row}")


def plain_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    return (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)


def test_style_formula_against_an_independent_computation(comfy, krea2):
    """q/k/v of single.1 as Krea 2 hands them to attention (after QK-norm, RoPE and the repeat of its
    grouped key/value heads): the generated row's output is softmax over its own tokens (image ones
    AdaIN'd to the reference's) plus the reference's scaled, shifted image keys, written out here."""
    dit_style, style, rows = pack("attention.style_aligned"), pack("attention.style_aligned"), pack("attention.core.rows")
    model, pos, neg = krea2
    recorder = QKVRecorder(keep=True)
    sample(comfy, with_override(model, recorder), pos, neg, batch=2, steps=1)
    captured = next(c for c in recorder.calls if c["key"] == ("single", 1))
    q, k, v = captured["q"].double(), captured["k"].double(), captured["v"].double()
    assert q.shape == k.shape == v.shape and q.shape[1:] == (2, TEXT + 16, 128)  # (B, heads, [text | 4x4], 128)
    settings = style.SharingSettings(score_scale=1.3, score_shift=0.4)
    out = dit_style.dit_shared_attention(q, k, v, rows.chunk_layout(2, [0]), settings, slice(TEXT, q.shape[-2]),
                                         lambda q_, k_, v_, m: plain_attention(q_, k_, v_, m))
    assert_exact(out[0], plain_attention(q[:1], k[:1], v[:1])[0], "reference row (its own call)")
    q1, k1 = q[1].clone(), k[1].clone()
    q1[:, TEXT:], k1[:, TEXT:] = adain(q1[:, TEXT:], q[0, :, TEXT:]), adain(k1[:, TEXT:], k[0, :, TEXT:])
    keys, values = torch.cat([k1, 1.3 * k[0, :, TEXT:]], -2), torch.cat([v[1], v[0, :, TEXT:]], -2)
    scores = q1 @ keys.transpose(-1, -2) / math.sqrt(128)
    scores[..., k1.shape[-2]:] += 0.4
    expected = (scores.softmax(-1) @ values).transpose(0, 1).flatten(1)
    assert_close(out[1], expected, ulps=ONE_CALL, what="generated row vs the formula")


def test_in_model_the_chain_hands_down_adain_queries_and_the_references_image_keys(comfy, krea2):
    """Under ours, another pack's override sees at single.0 the reference row's own q (vanilla, as
    block 0 gets the same input), then the generated row's AdaIN'd image queries (text untouched) and
    its keys extended by the reference row's image keys."""
    model, pos, neg = krea2
    plain, under = QKVRecorder(keep=True), QKVRecorder(keep=True)
    sample(comfy, with_override(model, plain), pos, neg, batch=2, steps=1)
    sample(comfy, style_aligned(comfy, with_override(model, under), layers="single.0"), pos, neg, batch=2, steps=1)
    first = [c for c in plain.calls if c["key"] == ("single", 0)][0]
    ours = [c for c in under.calls if c["key"] == ("single", 0)][:2]
    assert_exact(ours[0]["q"], first["q"][:1], "reference row's q")
    q_ref, k_ref = first["q"][0, :, TEXT:], first["k"][0, :, TEXT:]
    gen_q, gen_k = ours[1]["q"][0], ours[1]["k"][0]
    assert_exact(gen_q[:, :TEXT], first["q"][1, :, :TEXT], "generated row's text queries")
    assert_close(gen_q[:, TEXT:], adain(first["q"][1, :, TEXT:], q_ref), ulps=OPS, what="AdaIN'd image queries")
    assert_close(gen_k[:, TEXT:-16], adain(first["k"][1, :, TEXT:], k_ref), ulps=OPS, what="AdaIN'd image keys")
    assert_exact(gen_k[:, -16:], k_ref, "appended reference image keys")


def test_another_packs_override_keeps_running(comfy, krea2):
    """It sees every call: the text adapter's (no layer) and both single blocks'."""
    model, pos, neg = krea2
    foreign = QKVRecorder(scale=0.9)
    foreign_only = with_override(model, foreign)
    base = sample(comfy, foreign_only, pos, neg)
    seen = {c["key"] for c in foreign.calls}
    foreign.calls.clear()
    out = sample(comfy, style_aligned(comfy, foreign_only), pos, neg)
    assert seen == {c["key"] for c in foreign.calls} == {(None, None), ("single", 0), ("single", 1)}
    assert_close(out[0], base[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(out[1], base[1], what="generated row 1")
    assert_changed(base, sample(comfy, model, pos, neg), what="the foreign override alone")  # and it does act


def test_the_models_attn1_hooks_keep_running(comfy, krea2):
    """Krea 2 calls ``attn1_patch`` (before RoPE) and ``attn1_output_patch`` inside its single blocks;
    the pack's override sits at the attention call between them: both run on every block call with
    StyleAligned on, and row 0 keeps what the hooks alone give it."""
    model, pos, neg = krea2
    seen = []

    def before(q, k, v, pe=None, attn_mask=None, extra_options=None):
        seen.append(("before", extra_options["block_index"]))
        return {"v": v * 1.1}

    def after(out, extra_options):
        seen.append(("after", extra_options["block_index"]))
        return out * 0.95
    hooked = model.clone()
    hooked.set_model_attn1_patch(before)
    hooked.set_model_attn1_output_patch(after)
    base = sample(comfy, hooked, pos, neg)
    calls = list(seen)
    seen.clear()
    out = sample(comfy, style_aligned(comfy, hooked), pos, neg)
    assert seen == calls and {c for c in calls} == {(w, i) for w in ("before", "after") for i in (0, 1)}
    assert_changed(base, sample(comfy, model, pos, neg), what="the hooks alone")
    assert_close(out[0], base[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(out[1], base[1], what="generated row 1")


def test_cores_attention_override_keeps_running(comfy, krea2):
    model, pos, neg = krea2
    from comfy.ldm.modules import attention as comfy_attention
    seen = []

    def backend(q, k, v, heads, *args, **kwargs):
        seen.append((kwargs.get("transformer_options") or {}).get("block_index"))
        return comfy_attention.attention_basic(q, k, v, heads, *args, **kwargs)
    core = model.clone()
    core.set_model_optimized_attention(backend)
    base = sample(comfy, core, pos, neg, batch=2, steps=1)
    calls = len(seen)
    seen.clear()
    out = sample(comfy, style_aligned(comfy, core), pos, neg, batch=2, steps=1)
    assert calls and len(seen) >= calls and {0, 1} <= set(seen)
    assert_close(out[0], base[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(out[1], base[1], what="generated row 1")


def test_unpatched_model_is_vanilla_after_a_patched_run(comfy, krea2, vanilla):
    model, pos, neg = krea2
    sample(comfy, style_aligned(comfy, model), pos, neg)
    assert_exact(sample(comfy, model, pos, neg), vanilla[1.0], "the unpatched model after a patched run")
    assert "optimized_attention_override" not in model.model_options.get("transformer_options", {})


def test_what_krea2_cannot_run_is_refused_by_name(comfy, krea2):
    errors = pack("attention.core.errors")
    with pytest.raises(errors.AtelierError, match=r"AtelierStyleAligned: input 'model'.*Krea 2.*share_group_norm"):
        style_aligned(comfy, krea2[0], share_group_norm=True)


# ---- regional attention and aesthetic mixing ---------------------------------------------------------
def test_region_weight_zero_reproduces_vanilla_exactly(comfy, krea2, vanilla):
    model, pos, neg = krea2
    regions = region(comfy, conditioning(model, tokens=5, seed=7), weight=0.0)
    assert_exact(sample(comfy, regional(comfy, model, regions), pos, neg), vanilla[1.0], "region weight 0")


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_a_region_changes_the_image(comfy, krea2, vanilla, cfg):
    model, pos, neg = krea2
    out = sample(comfy, regional(comfy, model, region(comfy, conditioning(model, tokens=5, seed=7))), pos, neg, cfg=cfg)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla[cfg], what="a region")


def test_appended_prompt_streams_never_meet_the_prompt(comfy, krea2, vanilla):
    """Krea 2's text adapter attends across text tokens (its refiner blocks): a local prompt appended
    to the context would change the prompt's text tokens there. Those calls keep the prompt and each
    stream apart: after the text adapter (what a post_input patch sees) the prompt's tokens are
    vanilla's and the stream's are its own prompt's encoded alone; a region selecting no layer leaves
    the image as vanilla (matmuls over a longer sequence may round differently: SAMPLING ulps)."""
    model, pos, neg = krea2
    local = conditioning(model, tokens=5, seed=7)
    assert_close(sample(comfy, dit_helpers.regional_at_no_layer(model, region(comfy, local), ("single", 99)), pos, neg),
                 vanilla[1.0], ulps=SAMPLING, what="a stream carried through no layer")
    seen = []
    spied = model.clone()
    spied.set_model_patch(lambda args: seen.append(args["txt"].clone()) or args, "post_input")
    sample(comfy, spied, pos, neg, batch=1, steps=1)
    sample(comfy, dit_helpers.regional_at_no_layer(spied, region(comfy, local), ("single", 99)), pos, neg, batch=1, steps=1)
    plain, carried = seen
    assert plain.shape[1] == TEXT and carried.shape[1] == TEXT + 5
    assert_close(carried[:, :TEXT], plain, ulps=LAYERS, what="the prompt's tokens after the text adapter")
    dm = diffusion_model(model)
    with torch.no_grad():
        alone = dm.txtmlp(dm.txtfusion(dm._unpack_context(local[0][0]), mask=None, transformer_options={}))
    assert_close(carried[:, TEXT:], alone, ulps=LAYERS, what="the stream's tokens vs its prompt encoded alone")


def test_regional_outside_every_region_gets_the_models_attention(comfy, krea2):
    from comfy.ldm.modules.attention import optimized_attention
    model, pos, neg = krea2
    regions = region(comfy, conditioning(model, tokens=5, seed=7), x=0.0, width=0.5)
    calls = spy_calls(lambda: sample(comfy, regional(comfy, model, regions, layers="single.1"), pos, neg,
                                     batch=1, steps=1))
    override, args, _, out = next(c for c in calls if c[2] == ("single", 1))
    layout = override.tokens
    assert (layout.text, layout.streams, layout.image, layout.grid) == (TEXT, (5,), 16, (4, 4))
    (q, (q_l,)), (k, (k_l,)), (v, (v_l,)) = (layout.split(t) for t in args[:3])
    chain = optimized_attention(q, k, v, args[3], skip_reshape=True)
    main_out, (stream_out,) = layout.split(out)
    outside = torch.zeros(4, 4, dtype=torch.bool)
    outside[:, 2:] = True  # the region covers the left half
    outside = torch.cat([torch.ones(TEXT, dtype=torch.bool), outside.flatten()])
    dit_helpers.assert_outside_the_region_is_the_models_attention(main_out, chain, outside)
    image = slice(TEXT, None)
    own = optimized_attention(q_l, torch.cat([k_l, k[..., image, :]], -2), torch.cat([v_l, v[..., image, :]], -2),
                              args[3], skip_reshape=True)
    assert_exact(stream_out, own, "the stream's own attention")


def test_per_step_weights_decide_the_steps_a_region_acts_in(comfy, krea2, vanilla):
    """A step curve from 0 to 1 at progress 0.25: the local prompt rides along (and acts) only in the
    evaluations of steps past 0.25, here the last two of 3 (at progress 0, 1/3 and 2/3 on ComfyUI's percent
    scale, which Krea 2's shifted schedule spreads evenly over the steps); the image differs from both
    vanilla and the constant curve."""
    weight_curves = pack("attention.weight_curves")
    model, pos, neg = krea2
    local = conditioning(model, tokens=5, seed=7)
    late = regional(comfy, model, region(comfy, local, curve="step", weight=0.0, end_weight=1.0, switch_at=0.25))
    calls = spy_calls(lambda: sample(comfy, late, pos, neg))
    steps = {round(c[0].run.sigma, 6): (bool(c[0].tokens.streams), weight_curves.step_progress(c[0].run)) for c in calls}
    assert len(steps) == 3 and all(streams == (p >= 0.25) for streams, p in steps.values())
    assert sorted(sigma for sigma, (streams, _) in steps.items() if streams) == sorted(steps)[:2]
    out = sample(comfy, late, pos, neg)
    constant = sample(comfy, regional(comfy, model, region(comfy, local)), pos, neg)
    assert_changed(out, vanilla[1.0], what="late region vs vanilla")
    assert_changed(out, constant, what="late region vs a constant curve")


def test_aesthetic_mixing_acts_and_strength_zero_is_vanilla(comfy, krea2, vanilla):
    model, pos, neg = krea2
    aesthetic = conditioning(model, tokens=3, seed=9)[0][0]
    out = sample(comfy, aesthetic_mix(model, aesthetic, 0.8), pos, neg)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla[1.0], what="aesthetic mix at 0.8")
    assert_close(sample(comfy, aesthetic_mix(model, aesthetic, 0.0), pos, neg), vanilla[1.0],
                 ulps=SAMPLING, what="strength 0")  # its stream rides along, never meeting the prompt
    node_out = comfy.node_class(MIX).execute(model, None, "", 0.5, True, "all", 0.0, 1.0).args[0]
    assert_exact(sample(comfy, node_out, pos, neg), vanilla[1.0], "an empty aesthetic")


# ---- reference latents (image-style-reference / edit conditioning) -----------------------------------
@pytest.fixture(scope="module")
def referenced(krea2):
    model, pos, neg = krea2
    latent = torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    return with_reference(pos, latent), with_reference(neg, latent)


@pytest.mark.parametrize("control", ["style", "regional"])
def test_reference_latents_are_never_styled_or_regioned(comfy, krea2, referenced, control):
    """With reference latents (16 tokens after the image): at every selected layer the reference
    tokens' outputs are the model's own attention of their queries over the call's own keys, bit for
    bit, and the shared keys of a generated row are the reference row's image tokens only."""
    from comfy.ldm.modules.attention import optimized_attention
    model, _, _ = krea2
    pos, neg = referenced
    patched = (style_aligned(comfy, model) if control == "style"
               else regional(comfy, model, region(comfy, conditioning(model, tokens=5, seed=7))))
    calls = spy_calls(lambda: sample(comfy, patched, pos, neg, batch=2, steps=1))
    layers = [c for c in calls if c[2][0] == "single"]
    assert len(layers) == 2
    for override, args, _, out in layers:
        layout = override.tokens
        assert layout.extra == 16 and args[0].shape[-2] == layout.text_total + 16 + 16
        q, k, v = (layout.split(t)[0] for t in args[:3])
        own = optimized_attention(q[..., -16:, :], k, v, args[3], skip_reshape=True)
        assert_exact(layout.split(out)[0][:, -16:], own, "reference-latent tokens")
        assert_changed(layout.split(out)[0][:, :-16], optimized_attention(q, k, v, args[3], skip_reshape=True)[:, :-16],
                       what="text and image tokens")
    if control == "style":
        under = QKVRecorder(keep=True)
        sample(comfy, style_aligned(comfy, with_override(model, under), layers="single.0"), pos, neg, batch=2, steps=1)
        tokens = {c["k"].shape[-2] for c in under.calls if c["key"] == ("single", 0)}
        assert TEXT + 32 + 16 in tokens  # generated row: own [text | image | reference] + reference row's image


def test_style_aligned_with_reference_latents_keeps_row_0(comfy, krea2, referenced):
    model, _, _ = krea2
    pos, neg = referenced
    base = sample(comfy, model, pos, neg)
    assert_changed(base, sample(comfy, model, *krea2[1:]), what="reference latents")
    out = sample(comfy, style_aligned(comfy, model), pos, neg)
    assert_close(out[0], base[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(out[1], base[1], what="generated row 1")


# ---- flow inversion and reference-image mode ---------------------------------------------------------
STEPS = 12


@pytest.fixture(scope="module")
def x0():
    return torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(5))


def invert(comfy, model, latent, pos, refine):
    return comfy.node_class(INVERT).execute(model, {"samples": latent}, STEPS, 1.0, "simple", refine,
                                            positive=pos, negative=pos).args


@pytest.fixture(scope="module")
def round_trips(comfy, krea2, x0):
    """refine_iterations -> (relative round-trip error, trajectory, sigmas): AtelierInvert, then ComfyUI's
    own Euler sampler from x_T over the inversion's sigmas."""
    from comfy import sample as comfy_sample, samplers
    model, pos, _ = krea2
    out = {}
    for refine in (0, 4):
        x_T, trajectory, sigmas = invert(comfy, model, x0, pos, refine)
        back = comfy_sample.sample_custom(model, model.model.process_latent_in(x_T["samples"]), 1.0,
                                          samplers.ksampler("euler"), sigmas, pos, pos, torch.zeros_like(x0),
                                          disable_pbar=True, seed=0)
        out[refine] = (rel_rms(back, x0), trajectory, sigmas)
    return out


def test_flow_inversion_round_trip(round_trips):
    (plain, _, _), (refined, trajectory, sigmas) = round_trips[0], round_trips[4]
    assert trajectory.model_family == "Krea2"
    assert_close(float(sigmas[0]), 1.0, ulps=OPS, dtype=sigmas.dtype, what="the first sigma")
    assert refined < ROUND_TRIP and refined < REFINE_GAIN * plain, (plain, refined)


def test_inversion_without_a_prompt_uses_a_zero_conditioning_of_krea2s_width(comfy, krea2, x0):
    model = krea2[0]
    x_T, trajectory, _ = comfy.node_class(INVERT).execute(model, {"samples": x0}, 2, 1.0, "simple", 0).args
    assert torch.isfinite(x_T["samples"]).all() and trajectory.conds[0].c_crossattn.shape[-1] == 960


def test_reference_image_mode(comfy, krea2, round_trips):
    model, pos, neg = krea2
    trajectory = round_trips[4][1]
    plain = sample(comfy, model, pos, neg, batch=2)
    styled = sample(comfy, style_aligned(comfy, model, reference=trajectory), pos, neg, batch=2)
    assert styled.shape == plain.shape and torch.isfinite(styled).all()
    assert_changed(styled, plain, what="reference-image mode")
    neutral = style_aligned(comfy, model, **dict(NEUTRAL, reference=trajectory))
    assert_close(sample(comfy, neutral, pos, neg, batch=2), plain, ulps=SAMPLING, what="neutral reference-image mode")


def test_reference_image_mode_with_reference_latents(comfy, krea2, round_trips, referenced):
    """An image-style-reference conditioning: the inserted reference row takes its chunk's reference
    latents (one token count per call); its output is dropped."""
    model = krea2[0]
    pos, neg = referenced
    plain = sample(comfy, model, pos, neg, batch=2)
    styled = sample(comfy, style_aligned(comfy, model, reference=round_trips[4][1]), pos, neg, batch=2)
    assert styled.shape == plain.shape and torch.isfinite(styled).all()
    assert_changed(styled, plain, what="reference-image mode")
