"""The invariants every family with Flux-style blocks proves inside a real ComfyUI (FLUX.2, Chroma):
``double.i`` blocks, then ``single.i`` blocks, one joint [text | image (| extra)] attention per block,
the layer named from the block_type / block_index the model writes.

A test module imports these tests (``from tests.comfy.double_single_family import *``) and defines the
module fixture ``bed`` (a :class:`Bed`): the tiny model, its stand-in prompts and latent shape, the
family's name and the cfg its users run. Each test reads as the specification it proves.
"""
import math
from dataclasses import dataclass, field

import pytest
import torch

from tests.comfy.dit_helpers import (QKVRecorder, adain, aesthetic_mix, assert_outside_the_region_is_the_models_attention,  # noqa: F401
                                    pack, plain_attention, region, regional, spy_calls, with_override)
from tests.comfy.style_aligned_node import NEUTRAL, style_aligned
from tests.tolerance import (ONE_CALL, OPS, REFINE_GAIN, ROUND_TRIP, SAMPLING, assert_changed, assert_close,
                             assert_exact, rel_rms)

LAYERS = (("double", 0), ("double", 1), ("single", 0), ("single", 1))


@dataclass
class Bed:
    """A tiny model of the family and what sampling it needs."""
    comfy: object
    model: object  # ModelPatcher
    family: str  # the adapter's name, as refusals say it
    conditioning: object  # conditioning(tokens, seed) -> CONDITIONING of the family's text width
    channels: int  # latent channels
    downscale: int  # pixels per latent position
    cfg: float  # the real cfg the family's users run
    text_width: int
    text_tokens: object  # text_tokens(prompt tokens) -> text tokens of a call (the model may pad)
    inversion: tuple = (12, 4)  # (steps, refine_iterations) whose round trip stays under ROUND_TRIP
    _vanilla: dict = field(default_factory=dict)

    @property
    def pos(self):
        return self.conditioning(8, 1)

    @property
    def neg(self):
        return self.conditioning(8, 2)

    def sample(self, model=None, pos=None, neg=None, batch=3, cfg=1.0, steps=2, size=64, seed=0):
        """KSampler semantics (euler, simple) on an empty latent of ``size`` x ``size`` pixels."""
        side = size // self.downscale
        latent = {"samples": torch.zeros([batch, self.channels, side, side])}
        return self.comfy.sample(model or self.model, pos or self.pos, neg or self.neg, latent=latent,
                                 batch=batch, cfg=cfg, steps=steps, seed=seed, sampler_name="euler",
                                 scheduler="simple")

    def vanilla(self, batch=3, cfg=1.0):
        if (batch, cfg) not in self._vanilla:
            self._vanilla[(batch, cfg)] = self.sample(batch=batch, cfg=cfg)
        return self._vanilla[(batch, cfg)]

    def latent(self, seed=5, size=64):
        side = size // self.downscale
        return torch.randn(1, self.channels, side, side, generator=torch.Generator().manual_seed(seed))


# ---- the family ------------------------------------------------------------------------------------

def test_the_adapter_names_the_layers_and_reads_the_text_width_from_the_model(bed):
    models = pack("attention.models")
    diffusion_model = bed.model.get_model_object("diffusion_model")
    family = models.family_of(diffusion_model)
    assert family.name == bed.family and family.joint
    assert [f.name for f in models.FAMILIES if f.matches(diffusion_model)] == [bed.family]  # exclusive
    assert family.layer_keys(diffusion_model) == LAYERS
    assert family.context_width(diffusion_model) == bed.text_width
    layers = pack("attention.core.layers")
    selection = layers.LayerSelection(layers.parse_layer_spec("double.1, single", "AtelierStyleAligned",
                                                              family.block_kinds))
    assert selection.resolve(list(LAYERS)) == {("double", 1), ("single", 0), ("single", 1)}


def test_every_attention_call_is_a_joint_call_of_a_named_layer(bed):
    """One [text | image] call per block, in layer order, each with the key the model wrote."""
    recorder = QKVRecorder(keep=True)
    bed.sample(with_override(bed.model, recorder), batch=1, steps=1)
    assert [c["key"] for c in recorder.calls] == list(LAYERS)
    assert {c["q"].shape[-2] for c in recorder.calls} == {bed.text_tokens(8) + 16}  # 64 px: 4 x 4 image tokens


# ---- StyleAligned ----------------------------------------------------------------------------------

def test_neutral_settings_reproduce_vanilla_exactly(bed):
    assert_exact(bed.sample(style_aligned(bed.comfy, bed.model, **NEUTRAL)), bed.vanilla(), "neutral StyleAligned")


@pytest.mark.parametrize("cfg, settings", [
    ("1", {}), ("real", {}),  # distilled models run cfg 1 (cond rows only), the others real cfg
    ("1", {"shared_score_shift": 0.69, "adain_values": True}), ("real", {"layers": "double.1, single.0"})])
def test_style_aligned_keeps_row_0_and_styles_the_other_rows(bed, cfg, settings):
    cfg = 1.0 if cfg == "1" else bed.cfg
    out = bed.sample(style_aligned(bed.comfy, bed.model, **settings), cfg=cfg)
    vanilla = bed.vanilla(cfg=cfg)
    assert_close(out[0], vanilla[0], ulps=SAMPLING, what="reference row 0")
    for row in (1, 2):
        assert_changed(out[row], vanilla[row], what=f"generated row {row}")


@pytest.fixture(scope="module")
def captured_qkv(bed):
    """{layer key: the model's q/k/v call} of one vanilla step, batch 2, cfg 1."""
    recorder = QKVRecorder(keep=True)
    bed.sample(with_override(bed.model, recorder), batch=2, steps=1)
    return {c["key"]: c for c in recorder.calls}


def independent_shared_attention(q, k, v, text, image, scale=1.0, shift=0.0):
    """StyleAligned for generated row 1 against reference row 0, written out with plain softmax:
    q, k, v (2, heads, T, d); image tokens text..text + image."""
    img = slice(text, text + image)
    q1, k1, v1 = q[1].clone(), k[1].clone(), v[1].clone()
    q1[:, img] = adain(q1[:, img], q[0, :, img])
    k1[:, img] = adain(k1[:, img], k[0, :, img])
    keys = torch.cat([k1, scale * k[0, :, img]], dim=-2)
    values = torch.cat([v1, v[0, :, img]], dim=-2)
    scores = q1 @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores[..., k1.shape[-2]:] += shift
    out = scores.softmax(-1) @ values
    return out.transpose(0, 1).reshape(out.shape[1], -1)


@pytest.mark.parametrize("fold", [False, True], ids=["shift as a mask", "shift folded into head channels"])
@pytest.mark.parametrize("layer", [("double", 1), ("single", 0)])
def test_style_aligned_formula_against_an_independent_computation(bed, captured_qkv, layer, fold):
    """Capture the model's q/k/v at a layer, run the joint method on them and compare with the formula."""
    dit_style, style, rows = pack("attention.style_aligned"), pack("attention.style_aligned"), pack("attention.core.rows")
    q, k, v = (captured_qkv[layer][name] for name in "qkv")
    image = 16  # 64 px: 4 x 4 tokens
    text = q.shape[-2] - image
    settings = style.SharingSettings(score_scale=1.3, score_shift=0.4)

    def attention(q_, k_, v_, mask):
        scores = q_ @ k_.transpose(-1, -2) / math.sqrt(q_.shape[-1])
        if mask is not None:
            scores = scores + mask
        return (scores.softmax(-1) @ v_).transpose(1, 2).flatten(2)
    out = dit_style.dit_shared_attention(q, k, v, rows.chunk_layout(2, [0]), settings, slice(text, text + image),
                                         attention, heads=q.shape[1] if fold else None)
    assert_exact(out[0], attention(q[:1], k[:1], v[:1], None)[0], "reference row (its own call)")
    expected = independent_shared_attention(q.double(), k.double(), v.double(), text, image, 1.3, 0.4)
    assert_close(out[1], expected, ulps=ONE_CALL, dtype=torch.float32, what="generated row vs the formula")


def test_in_the_model_the_generated_row_gets_adain_and_the_reference_keys(bed, captured_qkv):
    """What our chain hands the foreign override below it at double.0 (same inputs as vanilla there):
    row 0 as it is; the generated row's image queries/keys AdaIN'd, its text untouched, and the
    reference's image keys appended."""
    under = QKVRecorder(keep=True)
    bed.sample(style_aligned(bed.comfy, with_override(bed.model, under), layers="double.0"), batch=2, steps=1)
    first = captured_qkv[("double", 0)]
    ours = [c for c in under.calls if c["key"] == ("double", 0)][:2]  # reference row, then generated row
    image = 16
    text = first["q"].shape[-2] - image
    assert_exact(ours[0]["q"], first["q"][:1], "reference row's q")
    q_ref, k_ref = first["q"][0, :, text:], first["k"][0, :, text:]
    gen_q, gen_k = ours[1]["q"][0], ours[1]["k"][0]
    assert_exact(gen_q[:, :text], first["q"][1, :, :text], "generated row's text queries")
    assert_close(gen_q[:, text:], adain(first["q"][1, :, text:], q_ref), ulps=OPS, what="AdaIN'd image queries")
    assert_close(gen_k[:, text:-image], adain(first["k"][1, :, text:], k_ref), ulps=OPS, what="AdaIN'd image keys")
    assert_exact(gen_k[:, -image:], k_ref, "appended reference image keys")


def test_another_packs_override_keeps_running(bed):
    foreign = QKVRecorder(scale=0.9)
    foreign_only = with_override(bed.model, foreign)
    base = bed.sample(foreign_only)
    foreign.calls.clear()
    out = bed.sample(style_aligned(bed.comfy, foreign_only))
    assert {c["key"] for c in foreign.calls} == set(LAYERS)
    assert_close(out[0], base[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(out[1], base[1], what="generated row 1")
    assert_changed(base, bed.vanilla(), what="the foreign override alone")  # and it does act


def test_the_unpatched_model_is_vanilla_after_a_patched_run(bed):
    bed.sample(style_aligned(bed.comfy, bed.model))
    assert_exact(bed.sample(), bed.vanilla(), "the unpatched model after a patched run")
    assert "optimized_attention_override" not in bed.model.model_options.get("transformer_options", {})


def test_what_the_family_cannot_run_is_refused_by_name(bed):
    errors = pack("attention.core.errors")
    with pytest.raises(errors.AtelierError, match=rf"AtelierStyleAligned: input 'model'.*{bed.family}.*share_group_norm"):
        style_aligned(bed.comfy, bed.model, share_group_norm=True)


# ---- regional attention --------------------------------------------------------------------------

def test_region_weight_zero_reproduces_vanilla_exactly(bed):
    regions = region(bed.comfy, bed.conditioning(5, 7), weight=0.0)
    assert_exact(bed.sample(regional(bed.comfy, bed.model, regions), batch=2), bed.vanilla(batch=2), "region weight 0")


@pytest.mark.parametrize("cfg", ["1", "real"])
def test_a_region_changes_the_image(bed, cfg):
    cfg = 1.0 if cfg == "1" else bed.cfg
    out = bed.sample(regional(bed.comfy, bed.model, region(bed.comfy, bed.conditioning(5, 7))), batch=2, cfg=cfg)
    assert torch.isfinite(out).all()
    assert_changed(out, bed.vanilla(batch=2, cfg=cfg), what="a region")


def test_outside_every_region_the_tokens_get_the_models_attention(bed):
    """At a selected layer the prompt's tokens and the image tokens outside the region get the model's
    attention (computed split at the prompt's keys: within float rounding of the model's call); inside it
    the region acts; the local prompt's stream attends to itself and the image, bit for bit."""
    regions = region(bed.comfy, bed.conditioning(5, 7), x=0.0, width=0.5)
    calls = spy_calls(lambda: bed.sample(regional(bed.comfy, bed.model, regions, layers="double.1"), batch=1, steps=1))
    override, args, _, out = next(c for c in calls if c[2] == ("double", 1))
    layout = override.tokens
    assert layout.streams == (5,)
    (q, (q_l,)), (k, (k_l,)), (v, (v_l,)) = (layout.split(t) for t in args[:3])
    main_out, (stream_out,) = layout.split(out)
    chain = plain_attention(q, k, v)
    h, w = layout.grid
    outside = torch.zeros(h, w, dtype=torch.bool)
    outside[:, w // 2:] = True  # the region covers the left half
    outside = torch.cat([torch.ones(layout.text, dtype=torch.bool), outside.flatten()])
    assert_outside_the_region_is_the_models_attention(main_out, chain, outside)
    image = slice(layout.text, None)
    own = plain_attention(q_l, torch.cat([k_l, k[..., image, :]], -2), torch.cat([v_l, v[..., image, :]], -2))
    assert_exact(stream_out, own, "the stream's own attention")


def test_the_weight_curve_sets_the_regions_weight_per_step(bed):
    """A step curve (0, then 1 from 5 % progress on): the local prompt is carried (and blended) in the
    model calls of the steps whose weight at their sampling progress is not 0, and only there; the first
    step does not carry it, later ones do."""
    curves = pack("attention.weight_curves")
    curve = curves.WeightCurve("step", start=0.0, end=1.0, switch_at=0.05)
    patched = regional(bed.comfy, bed.model, region(bed.comfy, bed.conditioning(5, 7), weight=0.0, curve="step",
                                                    end_weight=1.0, switch_at=0.05))
    calls = spy_calls(lambda: bed.sample(patched, batch=1, steps=4))
    carried = {c[0].run.sigma: bool(c[0].tokens.streams) for c in calls}
    progress = {c[0].run.sigma: curves.step_progress(c[0].run) for c in calls}
    assert carried == {sigma: curve.at(p) != 0.0 for sigma, p in progress.items()}
    assert not carried[max(carried)] and any(carried.values()), progress  # off at the first step, then on
    out = bed.sample(patched, batch=2)
    assert_changed(out, bed.vanilla(batch=2), what="late region vs vanilla")
    always = bed.sample(regional(bed.comfy, bed.model, region(bed.comfy, bed.conditioning(5, 7))), batch=2)
    assert_changed(out, always, what="late region vs a constant curve")


def test_a_local_prompt_of_another_text_width_is_refused(bed):
    """Named when AtelierRegionalAttention runs, with both widths (the model's read off the adapter)."""
    errors = pack("attention.core.errors")
    wrong = [[torch.randn(1, 5, bed.text_width + 1), {"pooled_output": None}]]
    with pytest.raises(errors.AtelierError, match=rf"AtelierRegionalAttention: input 'regions'.*"
                                                  rf"{bed.text_width + 1}-wide.*{bed.text_width}-wide"):
        regional(bed.comfy, bed.model, region(bed.comfy, wrong))


def test_regional_composes_with_style_aligned(bed):
    sa = style_aligned(bed.comfy, bed.model)
    both = bed.sample(regional(bed.comfy, sa, region(bed.comfy, bed.conditioning(5, 7))), batch=2)
    sa_only = bed.sample(sa, batch=2)
    assert torch.isfinite(both).all()
    assert_changed(both, sa_only, what="a region on StyleAligned")


# ---- aesthetic value mixing ------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", ["1", "real"])
def test_aesthetic_mix_strength_zero_is_vanilla_and_a_strength_acts(bed, cfg):
    cfg = 1.0 if cfg == "1" else bed.cfg
    aesthetic = bed.conditioning(3, 9)[0][0]
    vanilla = bed.vanilla(batch=2, cfg=cfg)
    assert_exact(bed.sample(aesthetic_mix(bed.model, aesthetic, 0.0), batch=2, cfg=cfg), vanilla, "strength 0")
    out = bed.sample(aesthetic_mix(bed.model, aesthetic, 0.8), batch=2, cfg=cfg)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla, what="aesthetic mix at 0.8")


# ---- flow inversion and the reference-image mode ---------------------------------------------------

def invert(bed, latent, refine, steps=12, pos=None):
    pos = pos or bed.pos
    return bed.comfy.node_class("AtelierInvert").execute(bed.model, {"samples": latent}, steps, 1.0, "simple",
                                                         refine, positive=pos, negative=pos).args


def test_flow_inversion_round_trip_with_refinement(bed):
    from comfy import sample as comfy_sample, samplers
    x0 = bed.latent()
    steps, refine_iterations = bed.inversion
    errors = []
    for refine in (0, refine_iterations):
        x_T, trajectory, sigmas = invert(bed, x0, refine, steps)
        assert torch.isfinite(x_T["samples"]).all()
        out = comfy_sample.sample_custom(bed.model, bed.model.model.process_latent_in(x_T["samples"]), 1.0,
                                         samplers.ksampler("euler"), sigmas, bed.pos, bed.pos, torch.zeros_like(x0),
                                         disable_pbar=True, seed=0)
        errors.append(rel_rms(out, x0))
    assert trajectory.model_family == type(bed.model.model.model_config).__name__
    assert errors[1] < ROUND_TRIP and errors[1] < REFINE_GAIN * errors[0], errors


def test_reference_image_mode_runs(bed):
    _, trajectory, _ = invert(bed, bed.latent(), 2, steps=4)
    plain = bed.sample(batch=2)
    styled = bed.sample(style_aligned(bed.comfy, bed.model, reference=trajectory), batch=2)
    assert styled.shape == plain.shape and torch.isfinite(styled).all()
    assert_changed(styled, plain, what="reference-image mode")
    neutral = style_aligned(bed.comfy, bed.model, **NEUTRAL, reference=trajectory)
    assert_close(bed.sample(neutral, batch=2), plain, ulps=SAMPLING, what="neutral reference-image mode")
