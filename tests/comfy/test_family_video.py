"""The pack's controls on the video transformers (tiny, seeded Wan 2.1 / 2.2, LTX-Video, LTX-2 and MiniMax
H3) inside a real ComfyUI, sampling clips of a few frames.

Wan and LTX run self-attention over the clip's tokens and cross-attention to the prompt as separate calls
(a "separate" family): StyleAligned shares the first clip's self-attention keys with the others, regional
attention blends each region's local prompt into the prompt cross-attention on the region's cells of every
frame (a box moving along its keyframes), aesthetic mixing adds the aesthetic prompt's values there, and
AtelierInvert walks a whole clip up the schedule. Proven here: neutral settings = vanilla bit for bit; the
first clip keeps its own attention and the others are styled, with the formula checked on a captured call;
regions follow their keyframes frame by frame, outside them (and on the uncond rows) the model's own call
bit for bit; a clip's inversion regenerates it; refusals (MiniMax H3 everything, LTX-2 regional / aesthetic /
inversion, GroupNorm sharing and ArtBN on any video model, a clip that keeps frames) name the family and
the reason. LTX-2 and MiniMax H3 exist in the 0.33.0 test bed only (skipped with the reason elsewhere).
"""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.comfy.dit_helpers import adain, aesthetic_mix, pack
from tests.comfy.style_aligned_node import NEUTRAL, style_aligned
from tests.comfy.video_models import forget, spy_separate_calls, streams, tiny
from tests.tolerance import (ONE_CALL, ROUND_TRIP, SAMPLING, assert_changed, assert_close, assert_exact,
                             rel_rms)

TEXT = 6  # prompt tokens of the stand-in conditioning
STYLED = ("wan21_t2v", "wan22_ti2v_5b", "ltxv", "ltxav")  # families StyleAligned runs on
REGIONED = ("wan21_t2v", "wan22_i2v_14b", "ltxv")  # families regional attention and aesthetic mixing run on
# case -> (pixel frames giving 3 latent frames, pixel size giving a 4 x 4 token grid)
CLIP = {"wan21_t2v": (9, 64), "wan21_i2v": (9, 64), "wan22_i2v_14b": (9, 64), "wan22_ti2v_5b": (9, 128),
        "ltxv": (17, 128), "ltxav": (17, 128), "minimax_h3": (9, 64)}


@pytest.fixture(scope="module", autouse=True)
def _forget_models():
    yield
    forget()


def conditioning(module, model, tokens=TEXT, seed=0, image=None):
    """Stand-in text-encoder CONDITIONING; LTX-Video's without padding (its local prompts' padding mask is
    the model's own business, tested with the prompt's)."""
    if module.__name__.endswith("wan"):
        return module.random_conditioning(model, tokens=tokens, seed=seed, image_latent=image)
    if module.__name__.endswith("ltx"):
        return module.random_conditioning(model, tokens=tokens, seed=seed, padding=2 if seed == 0 else 0)
    return module.random_conditioning(tokens=tokens, seed=seed)


def clip_latent(module, model, case, batch=1, frames=None, size=None):
    default_frames, default_size = CLIP[case]
    frames, size = frames or default_frames, size or default_size
    if module.__name__.endswith("minimax"):
        return module.empty_latent(frames=frames, size=size)
    return module.empty_latent(model, frames=frames, size=size, batch=batch)


def prompts(case, module, model, latent):
    image = streams(latent)[0][:1] if case in ("wan21_i2v", "wan22_i2v_14b") else None
    return conditioning(module, model, seed=0, image=image), conditioning(module, model, seed=3, image=image)


def sample(model, positive, negative, latent, cfg=1.0, steps=2, seed=0):
    import comfy.sample
    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, "euler", "simple", positive, negative, latent,
                               disable_pbar=True, seed=seed)


def video(out):
    return streams(out)[0]


def region_node(comfy, cond, box=(0.0, 0.0, 0.5, 1.0), keyframes="", weight=1.0):
    return comfy.node_class("AtelierRegion").execute(cond, *box, weight, "constant", 0.0, 0.5, "1",
                                                     keyframes=keyframes).args[0]


def regional(comfy, model, regions):
    return comfy.node_class("AtelierRegionalAttention").execute(model, regions, "all", 0.0, 1.0).args[0]


# ---- neutral settings -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", STYLED)
def test_neutral_style_aligned_is_vanilla_bit_for_bit(comfy, case):
    module, _, model = tiny(comfy, case)
    latent = clip_latent(module, model, case, batch=2)
    pos, neg = prompts(case, module, model, latent)
    for cfg in (1.0, 3.0):
        plain = sample(model, pos, neg, latent, cfg=cfg)
        for got, want in zip(streams(sample(style_aligned(comfy, model, **NEUTRAL), pos, neg, latent, cfg=cfg)),
                             streams(plain)):
            assert_exact(got, want, f"{case}, cfg {cfg}: neutral StyleAligned")


@pytest.mark.parametrize("case", REGIONED)
def test_regional_weight_0_and_mix_strength_0_are_vanilla_bit_for_bit(comfy, case):
    module, _, model = tiny(comfy, case)
    latent = clip_latent(module, model, case)
    pos, neg = prompts(case, module, model, latent)
    plain = sample(model, pos, neg, latent, cfg=3.0)
    local = conditioning(module, model, tokens=4, seed=7)
    silent = regional(comfy, model, region_node(comfy, local, weight=0.0))
    assert_exact(sample(silent, pos, neg, latent, cfg=3.0), plain, f"{case}: regional attention at weight 0")
    aesthetic = conditioning(module, model, tokens=4, seed=9)[0][0]
    assert_exact(sample(aesthetic_mix(model, aesthetic, 0.0), pos, neg, latent, cfg=3.0), plain,
                 f"{case}: aesthetic mixing at strength 0")


# ---- StyleAligned -------------------------------------------------------------------------------------------
@settings(max_examples=16, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=st.sampled_from(STYLED), latent_frames=st.integers(1, 4), cells=st.sampled_from([2, 3, 4]),
       tokens=st.integers(1, 40), seed=st.integers(0, 2**16), cfg=st.sampled_from([1.0, 4.0]))
def test_the_first_clip_keeps_its_attention_the_others_are_styled(comfy, case, latent_frames, cells, tokens, seed,
                                                                  cfg):
    """Across clip lengths (one latent frame: a still), latent sizes, prompt lengths, seeds and cfg."""
    module, _, model = tiny(comfy, case)
    temporal, spatial = (4, 16) if case.startswith("wan") else (8, 32)
    if case == "wan22_ti2v_5b":
        spatial = 32
    latent = clip_latent(module, model, case, batch=2, frames=(latent_frames - 1) * temporal + 1,
                         size=cells * spatial)
    pos = conditioning(module, model, tokens=tokens, seed=seed)
    neg = conditioning(module, model, tokens=max(1, tokens // 2), seed=seed + 1)
    plain = video(sample(model, pos, neg, latent, cfg=cfg, seed=seed))
    styled = video(sample(style_aligned(comfy, model), pos, neg, latent, cfg=cfg, seed=seed))
    assert torch.isfinite(styled).all()
    assert_close(styled[0], plain[0], ulps=SAMPLING, magnitude_of=plain, what=f"{case}: the first clip")
    assert_changed(styled[1], plain[1], what=f"{case}: the second clip")


def test_style_formula_on_a_captured_self_attention_call(comfy):
    """Wan's block 0 self-attention as the model hands it over (q/k after RMS norm and RoPE): the second
    clip attends over its own tokens, AdaIN'd to the first clip's queries and keys, plus the first clip's
    keys and values, written out here."""
    module, _, model = tiny(comfy, "wan21_t2v")
    latent = clip_latent(module, model, "wan21_t2v", batch=2)
    pos, neg = prompts("wan21_t2v", module, model, latent)
    calls = spy_separate_calls(lambda: sample(style_aligned(comfy, model), pos, neg, latent, steps=1))
    call = next(c for c in calls if c["key"] == ("block", 0) and c["own"] is None)
    heads = call["heads"]

    def split(x):  # (batch, tokens, heads * dim) -> (batch, heads, tokens, dim), float64
        return x.double().unflatten(-1, (heads, -1)).transpose(1, 2)
    q, k, v = split(call["q"]), split(call["k"]), split(call["v"])
    q1, k1 = adain(q[1], q[0]), adain(k[1], k[0])
    keys, values = torch.cat([k1, k[0]], -2), torch.cat([v[1], v[0]], -2)
    want = torch.softmax(q1 @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ values
    got = split(call["out"])[1]
    assert_close(got, want, ulps=ONE_CALL, dtype=call["out"].dtype, magnitude_of=want,
                 what="the second clip's shared self-attention")
    first = torch.softmax(q[0] @ k[0].transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v[0]
    assert_close(split(call["out"])[0], first, ulps=ONE_CALL, dtype=call["out"].dtype, magnitude_of=first,
                 what="the first clip's own self-attention")


# ---- regional attention over frames --------------------------------------------------------------------------
@pytest.mark.parametrize("case", REGIONED)
def test_a_region_follows_its_keyframes_frame_by_frame(comfy, case):
    """A box on the left half at the first frame and on the right half at the last (halfway, at the middle
    frame, the middle columns): in each frame's prompt cross-attention exactly the box's cells change, every
    other cell and the uncond rows are the model's own call bit for bit."""
    module, _, model = tiny(comfy, case)
    latent = clip_latent(module, model, case)
    pos, neg = prompts(case, module, model, latent)
    local = conditioning(module, model, tokens=4, seed=7)
    regions = region_node(comfy, local, box=(0.0, 0.0, 0.5, 1.0), keyframes="1: 0.5, 0.0, 0.5, 1.0")
    calls = spy_separate_calls(lambda: sample(regional(comfy, model, regions), pos, neg, latent, cfg=3.0, steps=1))
    cross = [c for c in calls if c["own"] is not None and c["k"].shape[-2] > c["text"]]
    assert cross, "no prompt cross-attention call carried the local prompt"
    frames = video(latent).shape[2]
    inside = torch.zeros(frames, 4, 4, dtype=torch.bool)  # (frames, rows, columns) of the token grid
    for frame, columns in zip(range(frames), ([0, 1], [1, 2], [2, 3])):
        inside[frame, :, columns] = True
    inside = inside.flatten()
    for call in cross:
        out, own = call["out"], call["own"]
        chunk = out.shape[0] // len(call["cond_or_uncond"])  # ComfyUI's batch: chunks of cond (0) or uncond (1)
        kinds = torch.tensor(call["cond_or_uncond"]).repeat_interleave(chunk)
        rows, uncond = kinds == 0, kinds == 1
        assert rows.any() and uncond.any()
        assert_exact(out[rows][:, :inside.numel()][:, ~inside], own[rows][:, :inside.numel()][:, ~inside],
                     f"{case} {call['key']}: cells outside the box")
        assert_exact(out[uncond], own[uncond], f"{case} {call['key']}: the uncond rows")
        assert_changed(out[rows][:, :inside.numel()][:, inside], own[rows][:, :inside.numel()][:, inside],
                       what=f"{case} {call['key']}: cells inside the box")
        for frame in range(frames):
            cells = slice(frame * 16, (frame + 1) * 16)
            assert_changed(out[rows][:, cells], own[rows][:, cells], what=f"{case}: frame {frame} has the region")


@pytest.mark.parametrize("case", REGIONED)
def test_aesthetic_mixing_acts_on_a_clip(comfy, case):
    module, _, model = tiny(comfy, case)
    latent = clip_latent(module, model, case)
    pos, neg = prompts(case, module, model, latent)
    aesthetic = conditioning(module, model, tokens=4, seed=9)[0][0]
    plain = sample(model, pos, neg, latent, cfg=3.0)
    mixed = sample(aesthetic_mix(model, aesthetic, 0.5), pos, neg, latent, cfg=3.0)
    assert torch.isfinite(mixed).all()
    assert_changed(mixed, plain, what=f"{case}: aesthetic mixing at 0.5")


# ---- inversion ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ("wan21_t2v", "ltxv"))
def test_an_inverted_clip_regenerates_and_serves_as_the_reference(comfy, case):
    from comfy import sample as comfy_sample, samplers
    module, _, model = tiny(comfy, case)
    shape = clip_latent(module, model, case).shape
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    pos = conditioning(module, model, seed=1)
    x_T, trajectory, sigmas = comfy.node_class("AtelierInvert").execute(
        model, {"samples": x0}, 12, 1.0, "simple", 4, positive=pos, negative=pos).args
    assert x_T["samples"].shape == x0.shape and torch.isfinite(x_T["samples"]).all()
    noise = model.model.process_latent_in(x_T["samples"])  # flow: the sampler starts at x = eps (s = 1)
    back = comfy_sample.sample_custom(model, noise, 1.0, samplers.ksampler("euler"), sigmas, pos, pos,
                                      torch.zeros_like(x0), disable_pbar=True, seed=0)
    assert rel_rms(back, x0) < ROUND_TRIP, rel_rms(back, x0)
    batch = clip_latent(module, model, case, batch=2)
    plain = sample(model, pos, pos, batch)
    referenced = sample(style_aligned(comfy, model, reference=trajectory), pos, pos, batch)
    assert torch.isfinite(referenced).all()
    assert_changed(referenced, plain, what=f"{case}: StyleAligned on the inverted clip")


def test_a_clip_that_keeps_frames_is_refused_by_inversion(comfy):
    module, _, model = tiny(comfy, "wan22_ti2v_5b")
    ti2v = module.ti2v_latent(model, frames=9)
    with pytest.raises(Exception, match=r"AtelierInvert.*latent.*keeps some frames"):
        comfy.node_class("AtelierInvert").execute(model, ti2v, 4, 1.0, "simple", 0)


# ---- refusals -----------------------------------------------------------------------------------------------
def refusal(comfy, node, model):
    """The call that applies ``node`` to ``model`` with its defaults."""
    calls = {
        "AtelierStyleAligned": lambda: style_aligned(comfy, model),
        "AtelierStyleAligned+GroupNorm": lambda: style_aligned(comfy, model, share_group_norm=True),
        "AtelierArtBN": lambda: comfy.node_class("AtelierArtBN").execute(model, 1.0, "both", "all", 0.0, 1.0),
        "AtelierRegionalAttention": lambda: regional(comfy, model, region_node(comfy, [[torch.zeros(1, 4, 8), {}]])),
        "AtelierAestheticMix": lambda: aesthetic_mix(model, torch.zeros(1, 4, 8), 0.5),
        "AtelierInvert": lambda: comfy.node_class("AtelierInvert").execute(model, {"samples": torch.zeros(1, 16, 1, 8, 8)},
                                                                           4, 1.0, "simple", 0),
    }
    return calls[node]


@pytest.mark.parametrize("case, node, family", [
    ("minimax_h3", "AtelierStyleAligned", "MiniMax H3"),
    ("minimax_h3", "AtelierRegionalAttention", "MiniMax H3"),
    ("minimax_h3", "AtelierAestheticMix", "MiniMax H3"),
    ("minimax_h3", "AtelierInvert", "MiniMax H3"),
    ("ltxav", "AtelierRegionalAttention", "LTX-2"),
    ("ltxav", "AtelierAestheticMix", "LTX-2"),
    ("ltxav", "AtelierInvert", "LTX-2"),
    ("wan21_t2v", "AtelierStyleAligned+GroupNorm", "Wan 2.1 / 2.2"),
    ("wan21_t2v", "AtelierArtBN", "Wan 2.1 / 2.2"),
    ("ltxv", "AtelierArtBN", "LTX-Video"),
])
def test_what_a_video_family_cannot_run_is_refused_by_name(comfy, case, node, family):
    from comfy_api.latest import io  # noqa: F401 (ComfyUI loaded)
    _, _, model = tiny(comfy, case)
    errors = pack("attention.core.errors")
    with pytest.raises(errors.AtelierError) as refused:
        refusal(comfy, node, model)()
    message = str(refused.value)
    assert family in message and node.split("+")[0] in message, message
