"""AtelierStyleAligned on a (tiny, seeded) Flux.1 inside a real ComfyUI: neutral = vanilla exactly,
reference row unchanged, the joint-attention formula against an independent computation on the
captured q/k/v, another pack's attention override keeps running, refusals name what is unsupported."""
import math

import pytest
import torch

from tests.comfy.dit_helpers import QKVRecorder, conditioning, sample, tiny_flux, with_override
from tests.comfy.style_aligned_node import NEUTRAL, NODE, style_aligned
from tests.tolerance import ONE_CALL, OPS, SAMPLING, assert_changed, assert_close, assert_exact


@pytest.fixture(scope="module")
def flux(comfy):
    model = tiny_flux(comfy)
    return model, conditioning(model, seed=1), conditioning(model, seed=2)


@pytest.fixture(scope="module")
def vanilla(comfy, flux):
    model, pos, neg = flux
    return {cfg: sample(comfy, model, pos, neg, cfg=cfg) for cfg in (1.0, 3.0)}


def test_neutral_settings_reproduce_vanilla_exactly(comfy, flux, vanilla):
    model, pos, neg = flux
    assert_exact(sample(comfy, style_aligned(comfy, model, **NEUTRAL), pos, neg), vanilla[1.0], "neutral StyleAligned")


def test_a_control_selecting_no_layer_reproduces_vanilla_exactly(comfy, flux, vanilla):
    from tests.pack import pack_module
    dispatcher, layers = pack_module("attention.dispatch.dispatcher"), pack_module("attention.core.layers")
    style = pack_module("attention.style_aligned")
    model, pos, neg = flux
    control = style.SharedAttentionControl(settings=style.SharingSettings(), layers=layers.LayerSelection((("double", 99),)))
    assert_exact(sample(comfy, dispatcher.attach(model, control, node=NODE), pos, neg), vanilla[1.0],
                 "no layer selected")


@pytest.mark.parametrize("cfg", [1.0, 3.0])
@pytest.mark.parametrize("settings", [{}, {"shared_score_shift": 0.69, "adain_values": True},
                                      {"layers": "double.1, single.0"}])
def test_reference_row_unchanged_other_rows_styled(comfy, flux, vanilla, cfg, settings):
    model, pos, neg = flux
    out = sample(comfy, style_aligned(comfy, model, **settings), pos, neg, cfg=cfg)
    assert_close(out[0], vanilla[cfg][0], ulps=SAMPLING, what="reference row 0")
    for row in (1, 2):
        assert_changed(out[row], vanilla[cfg][row], what=f"generated row {row}")


def test_dit_layer_names(comfy, flux):
    from tests.pack import pack_module
    dispatcher = pack_module("attention.dispatch.dispatcher")
    layers = pack_module("attention.core.layers")
    keys = dispatcher.layer_keys(flux[0].get_model_object("diffusion_model"))
    assert keys == (("double", 0), ("double", 1), ("single", 0), ("single", 1))
    block_kinds = pack_module("attention.models").block_kinds()
    selection = layers.LayerSelection(layers.parse_layer_spec("double.1, single", "AtelierStyleAligned", block_kinds))
    assert selection.resolve(list(keys)) == {("double", 1), ("single", 0), ("single", 1)}


def independent_shared_attention(q, k, v, text, scale=1.0, shift=0.0, eps=1e-5):
    """StyleAligned on joint tokens for one generated row (1) against the reference row (0), written
    out with plain softmax: q, k, v (2, heads, T, d); image tokens are text..T."""
    def adain(x, ref):
        mu, var = x.mean(-2, keepdim=True), x.var(-2, keepdim=True)
        rmu, rvar = ref.mean(-2, keepdim=True), ref.var(-2, keepdim=True)
        return (x - mu) / (var + eps).sqrt() * (rvar + eps).sqrt() + rmu
    q1, k1, v1 = q[1].clone(), k[1].clone(), v[1].clone()
    q1[:, text:] = adain(q1[:, text:], q[0, :, text:])
    k1[:, text:] = adain(k1[:, text:], k[0, :, text:])
    keys = torch.cat([k1, scale * k[0, :, text:]], dim=-2)
    values = torch.cat([v1, v[0, :, text:]], dim=-2)
    scores = q1 @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores[..., k1.shape[-2]:] += shift
    out = scores.softmax(-1) @ values  # (heads, T, d)
    return out.transpose(0, 1).reshape(out.shape[1], -1)


@pytest.mark.parametrize("fold", [False, True], ids=["shift as a mask", "shift folded into head channels"])
@pytest.mark.parametrize("layer", [("double", 1), ("single", 0)])
def test_formula_against_an_independent_computation(comfy, flux, layer, fold):
    """The foreign override sits under ours, so it sees what our chain passes down: the reference
    row's own q/k/v, then the generated rows' AdaIN'd queries and extended keys. Capture the
    vanilla q/k/v at the layer, run ours on them and compare with the formula written out."""
    from tests.pack import pack_module
    dit_style = pack_module("attention.style_aligned")
    style = pack_module("attention.style_aligned")
    rows = pack_module("attention.core.rows")
    model, pos, neg = flux
    recorder = QKVRecorder(keep=True)
    sample(comfy, with_override(model, recorder), pos, neg, batch=2, steps=1)
    captured = next(c for c in recorder.calls if c["key"] == layer)
    q, k, v = captured["q"], captured["k"], captured["v"]
    text = pos[0][0].shape[1]
    settings = style.SharingSettings(score_scale=1.3, score_shift=0.4)

    def attention(q_, k_, v_, mask):
        scores = q_ @ k_.transpose(-1, -2) / math.sqrt(q_.shape[-1])
        if mask is not None:
            scores = scores + mask
        out = scores.softmax(-1) @ v_
        return out.transpose(1, 2).flatten(2)
    seen = []

    def kernel(q_, k_, v_, mask):
        seen.append((q_.shape[-1], mask is None))
        return attention(q_, k_, v_, mask)
    out = dit_style.dit_shared_attention(q, k, v, rows.chunk_layout(2, [0]), settings, slice(text, q.shape[-2]),
                                         kernel, heads=q.shape[1] if fold else None)
    head_dim = q.shape[-1]
    assert seen[1] == ((head_dim + 1, True) if fold else (head_dim, False))  # generated rows: no mask when folded
    assert_exact(out[0], attention(q[:1], k[:1], v[:1], None)[0], "reference row (its own call)")
    expected = independent_shared_attention(q.double(), k.double(), v.double(), text, 1.3, 0.4)
    assert_close(out[1], expected, ulps=ONE_CALL, dtype=torch.float32, what="generated row vs the formula")


def test_in_model_matches_the_formula_on_captured_qkv(comfy, flux):
    """Inside the model: what our chain hands the foreign override for the generated row at a layer
    is the AdaIN'd queries and keys extended by the reference's image keys."""
    model, pos, neg = flux
    plain = QKVRecorder(keep=True)
    sample(comfy, with_override(model, plain), pos, neg, batch=2, steps=1)
    under = QKVRecorder(keep=True)
    sample(comfy, style_aligned(comfy, with_override(model, under), layers="double.0"), pos, neg, batch=2, steps=1)
    first = [c for c in plain.calls if c["key"] == ("double", 0)][0]
    ours = [c for c in under.calls if c["key"] == ("double", 0)][:2]  # reference row, then generated row
    text = pos[0][0].shape[1]
    assert_exact(ours[0]["q"], first["q"][:1], "reference row's q")  # block 0: same inputs
    q_ref, k_ref = first["q"][0, :, text:], first["k"][0, :, text:]

    def adain(x, ref, eps=1e-5):
        return ((x - x.mean(-2, keepdim=True)) / (x.var(-2, keepdim=True) + eps).sqrt()
                * (ref.var(-2, keepdim=True) + eps).sqrt() + ref.mean(-2, keepdim=True))
    gen_q, gen_k = ours[1]["q"][0], ours[1]["k"][0]
    assert_exact(gen_q[:, :text], first["q"][1, :, :text], "generated row's text queries")  # text untouched
    assert_close(gen_q[:, text:], adain(first["q"][1, :, text:], q_ref), ulps=OPS, what="AdaIN'd image queries")
    assert_close(gen_k[:, text:-q_ref.shape[-2]], adain(first["k"][1, :, text:], k_ref), ulps=OPS,
                 what="AdaIN'd image keys")
    assert_exact(gen_k[:, -q_ref.shape[-2]:], k_ref, "appended reference image keys")


def test_a_foreign_override_keeps_running(comfy, flux):
    model, pos, neg = flux
    foreign = QKVRecorder(scale=0.9)
    foreign_only = with_override(model, foreign)
    base = sample(comfy, foreign_only, pos, neg)
    foreign.calls.clear()
    out = sample(comfy, style_aligned(comfy, foreign_only), pos, neg)
    assert {c["key"] for c in foreign.calls} == {("double", 0), ("double", 1), ("single", 0), ("single", 1)}
    assert_close(out[0], base[0], ulps=SAMPLING, what="reference row 0")  # its effect on row 0 is intact
    assert_changed(out[1], base[1], what="generated row 1")
    assert_changed(base, sample(comfy, model, pos, neg), what="the foreign override alone")  # and it does act


def test_unpatched_model_is_vanilla_after_a_patched_run(comfy, flux, vanilla):
    model, pos, neg = flux
    sample(comfy, style_aligned(comfy, model), pos, neg)
    assert_exact(sample(comfy, model, pos, neg), vanilla[1.0], "the unpatched model after a patched run")
    assert "optimized_attention_override" not in model.model_options.get("transformer_options", {})


def test_what_flux_does_not_support_is_refused_by_name(comfy, flux):
    from tests.pack import pack_module
    errors = pack_module("attention.core.errors")
    with pytest.raises(errors.AtelierError, match=r"AtelierStyleAligned: input 'model'.*Flux.*share_group_norm"):
        style_aligned(comfy, flux[0], share_group_norm=True)


def test_a_folded_score_shift_never_reaches_another_packs_override(comfy, flux):
    """The shift rides in an extra channel per head; another pack's override would read the head size
    from q and mis-split, so those calls go to ComfyUI's attention: the override sees only head size
    32 calls, and with it passing results through the output is the same as without it."""
    model, pos, neg = flux
    styled = style_aligned(comfy, model, shared_score_shift=0.69)
    recorder = QKVRecorder(keep=True)
    out = sample(comfy, with_override(styled, recorder), pos, neg, batch=2, steps=1)
    head_dims = {c["q"].shape[-1] for c in recorder.calls}
    assert head_dims == {32}, head_dims
    assert_exact(out, sample(comfy, styled, pos, neg, batch=2, steps=1), "with a pass-through override")


def test_cores_attention_override_keeps_running(comfy, flux):
    """ComfyUI 0.33's own override slot (ModelPatcher.set_model_optimized_attention, used by core's
    attention-backend nodes) stays the base of the chain: the attention it names runs every call."""
    model, pos, neg = flux
    if not hasattr(model, "set_model_optimized_attention"):
        pytest.skip("this ComfyUI has no core attention override (added after 0.3.75)")
    import comfy.ldm.modules.attention as comfy_attention
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
    assert calls and len(seen) >= calls  # every attention call still reaches core's backend
    assert_close(out[0], base[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(out[1], base[1], what="generated row 1")
