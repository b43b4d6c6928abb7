"""StyleAligned, regional attention, aesthetic mixing and inversion on a (tiny, seeded) SD3.5 MMDiT
inside a real ComfyUI. SD3 writes no block index: the pack marks its joint blocks through
``patches_replace["dit"]`` block replaces, so another pack's block replace must keep running too."""
import pytest
import torch

from tests.comfy.dit_helpers import QKVRecorder, conditioning, sample, tiny_sd35, with_override
from tests.comfy.style_aligned_node import NEUTRAL, style_aligned
from tests.tolerance import REFINE_GAIN, ROUND_TRIP, SAMPLING, assert_changed, assert_close, assert_exact, rel_rms

REGION, ATTENTION = "AtelierRegion", "AtelierRegionalAttention"


@pytest.fixture(scope="module")
def sd35(comfy):
    model = tiny_sd35(comfy)
    return model, conditioning(model, seed=1, guidance=None), conditioning(model, seed=2, guidance=None)


@pytest.fixture(scope="module")
def vanilla(comfy, sd35):
    model, pos, neg = sd35
    return {cfg: sample(comfy, model, pos, neg, cfg=cfg) for cfg in (1.0, 4.0)}


def test_layer_keys_are_joint_blocks(comfy, sd35):
    from tests.pack import pack_module
    dispatcher = pack_module("attention.dispatch.dispatcher")
    assert dispatcher.layer_keys(sd35[0].get_model_object("diffusion_model")) == (("joint", 0), ("joint", 1))


def test_neutral_settings_reproduce_vanilla_exactly(comfy, sd35, vanilla):
    model, pos, neg = sd35
    assert_exact(sample(comfy, style_aligned(comfy, model, **NEUTRAL), pos, neg), vanilla[1.0], "neutral StyleAligned")


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_style_aligned_reference_row_unchanged_other_rows_styled(comfy, sd35, vanilla, cfg):
    model, pos, neg = sd35
    out = sample(comfy, style_aligned(comfy, model), pos, neg, cfg=cfg)
    assert_close(out[0], vanilla[cfg][0], ulps=SAMPLING, what="reference row 0")
    for row in (1, 2):
        assert_changed(out[row], vanilla[cfg][row], what=f"generated row {row}")


def test_only_the_selected_joint_block_is_touched(comfy, sd35):
    """With layers='joint.1' the attention of joint block 0 (and the MMDiT-X image-only attention)
    is given exactly the vanilla q/k/v, and the override sees the marked block index."""
    model, pos, neg = sd35
    plain, under = QKVRecorder(keep=True), QKVRecorder(keep=True)
    sample(comfy, with_override(model, plain), pos, neg, batch=2, steps=1)
    sample(comfy, style_aligned(comfy, with_override(model, under), layers="joint.1"), pos, neg, batch=2, steps=1)
    # block 0: the joint attention then block 0's image-only attention, same calls and inputs
    assert_exact(under.calls[0]["q"], plain.calls[0]["q"], "block 0's joint attention q")
    assert_exact(under.calls[1]["q"], plain.calls[1]["q"], "block 0's image-only attention q")
    assert len(under.calls) > len(plain.calls)  # block 1's reference and generated rows ran apart


def test_a_foreign_block_replace_and_override_keep_running(comfy, sd35):
    model, pos, neg = sd35
    ran = []

    def foreign_block(args, extra):
        ran.append(1)
        out = extra["original_block"](args)
        return {"txt": out["txt"], "img": out["img"] * 1.01}
    foreign = QKVRecorder(scale=0.9)
    other = with_override(model, foreign)
    other.set_model_patch_replace(foreign_block, "dit", "double_block", 1)
    base = sample(comfy, other, pos, neg)
    ran.clear(), foreign.calls.clear()
    out = sample(comfy, style_aligned(comfy, other), pos, neg)
    assert ran and foreign.calls
    assert_close(out[0], base[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(out[1], base[1], what="generated row 1")


def test_regional_and_aesthetic_act_and_weight_zero_is_vanilla(comfy, sd35, vanilla):
    from tests.pack import pack_module
    dispatcher = pack_module("attention.dispatch.dispatcher")
    mix = pack_module("attention.aesthetic_mix")
    model, pos, neg = sd35
    local = conditioning(model, tokens=5, seed=7, guidance=None)
    curve = dict(curve="constant", end_weight=0.0, switch_at=0.5, weights="1")
    zero = comfy.node_class(REGION).execute(local, 0.0, 0.0, 0.5, 1.0, weight=0.0, **curve).args[0]
    one = comfy.node_class(REGION).execute(local, 0.0, 0.0, 0.5, 1.0, weight=1.0, **curve).args[0]
    regional = comfy.node_class(ATTENTION)
    assert_exact(sample(comfy, regional.execute(model, zero, "all", 0.0, 1.0).args[0], pos, neg), vanilla[1.0],
                 "region weight 0")
    out = sample(comfy, regional.execute(model, one, "all", 0.0, 1.0).args[0], pos, neg)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla[1.0], what="a region")
    aesthetic = mix.AestheticMixControl(aesthetic=conditioning(model, tokens=3, seed=9)[0][0], strength=0.8)
    out = sample(comfy, dispatcher.attach(model, aesthetic, node="AtelierAestheticMix"), pos, neg)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla[1.0], what="aesthetic mix at 0.8")


def test_flow_inversion_round_trip(comfy, sd35):
    from comfy import sample as comfy_sample, samplers
    model, pos, _ = sd35
    x0 = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    errors = []
    for refine in (0, 4):
        x_T, trajectory, sigmas = comfy.node_class("AtelierInvert").execute(
            model, {"samples": x0}, 12, 1.0, "simple", refine, positive=pos, negative=pos).args
        out = comfy_sample.sample_custom(model, model.model.process_latent_in(x_T["samples"]), 1.0,
                                         samplers.ksampler("euler"), sigmas, pos, pos, torch.zeros_like(x0),
                                         disable_pbar=True, seed=0)
        errors.append(rel_rms(out, x0))
    assert trajectory.model_family == "SD3"
    assert errors[1] < ROUND_TRIP and errors[1] < REFINE_GAIN * errors[0], errors
