"""The tiny video test-bed models (scripts/tiny_models/wan.py, ltx.py, minimax.py) inside a real ComfyUI:
each loads, ComfyUI's own detection names the real family, and ComfyUI's sampler (euler, 2 steps) turns
an empty latent of a few frames at 64 px, and of one frame, into finite latents of the same shape; the
image-to-video inputs of each family (Wan concat image + CLIP-vision tokens, Wan 2.2 5B's noise mask, LTX's
first-frame noise mask, MiniMax H3's first-frame keyframe) run too.

The attention census pins what docs/VIDEO_RESEARCH.md says of each family's attention calls (per
forward, in order: which tokens query which keys; what ``transformer_options`` carries), so a ComfyUI that
changes them fails here first. Families a test bed's ComfyUI lacks are skipped with the reason (LTX-2
audio-video and MiniMax H3 exist in ComfyUI 0.33.0 only).
"""
import pytest
import torch

from tests.comfy.video_models import CASES, forget, streams, tiny
from tests.tolerance import OPS, assert_close

TEXT = 5  # stand-in prompt tokens: a count no video / audio stream of these latents has


@pytest.fixture(scope="module", autouse=True)
def _forget_models():
    yield
    forget()


def sample(model, positive, latent, noise_mask=None, steps=2, cfg=1.0, negative=None):
    import comfy.sample
    noise = comfy.sample.prepare_noise(latent, 0)
    return comfy.sample.sample(model, noise, steps, cfg, "euler", "simple", positive, negative or positive, latent,
                               noise_mask=noise_mask, disable_pbar=True, seed=0)


def assert_finite_like(out, latent):
    got, want = streams(out), streams(latent)
    assert [tuple(t.shape) for t in got] == [tuple(t.shape) for t in want]
    assert all(bool(torch.isfinite(t).all()) for t in got)
    assert all(float(t.std()) > 0 for t in got)  # the model moved the noise somewhere


def inputs(case, module, model, frames, image=False):
    """(positive, latent, noise_mask) for a case at ``frames`` pixel frames, 64 px (``image``: the family's
    image-to-video inputs)."""
    if module.__name__.endswith("wan"):
        latent = module.empty_latent(model, frames=frames)
        if image and case == "wan22_ti2v_5b":
            ti2v = module.ti2v_latent(model, frames=frames)
            return module.random_conditioning(model, tokens=TEXT), ti2v["samples"], ti2v["noise_mask"]
        image_latent = latent if image else None
        return module.random_conditioning(model, tokens=TEXT, image_latent=image_latent), latent, None
    if module.__name__.endswith("ltx"):
        latent = module.empty_latent(model, frames=frames)
        mask = None
        if image:  # LTXVImgToVideoInplace at strength 1: the first latent frame kept
            mask = torch.ones(1, 1, streams(latent)[0].shape[2], 1, 1)
            mask[:, :, :1] = 0.0  # LTXAV: the sampler gives the audio stream a mask of ones
        return module.random_conditioning(model, tokens=TEXT), latent, mask
    latent = module.empty_latent(frames=frames)
    h, w = streams(latent)[0].shape[-2:]
    return module.random_conditioning(tokens=TEXT, first_frame=(h, w) if image else None), latent, None


FRAMES = {"wan": 9, "ltx": 17, "minimax": 22}  # a few frames: 3 latent frames each (MiniMax: 7)


@pytest.mark.parametrize("case", list(CASES))
def test_comfyui_detects_the_real_family(comfy, case):
    import json
    import comfy.model_detection as md
    from tiny_models.files import file_metadata, load_file_keys
    module, path, model = tiny(comfy, case)
    _, _, config_class, model_class = CASES[case]
    keys = load_file_keys(path)
    unet_config = md.detect_unet_config(keys, "")
    unet_config.update(json.loads(file_metadata(path).get("atelier_dit_overrides", "{}")))
    assert type(md.model_config_from_unet_config(unet_config, keys)).__name__ == config_class
    assert type(model.model.model_config).__name__ == config_class
    assert type(model.get_model_object("diffusion_model")).__name__ == model_class
    assert path.stat().st_size < 8e6  # a few MB (Wan 2.1 i2v: its 1280-wide CLIP-vision projection)


@pytest.mark.parametrize("frames", ["few", 1])
@pytest.mark.parametrize("case", list(CASES))
def test_a_few_euler_steps_give_finite_latents(comfy, case, frames):
    module, _, model = tiny(comfy, case)
    frames = FRAMES[CASES[case][0]] if frames == "few" else frames
    positive, latent, noise_mask = inputs(case, module, model, frames)
    assert_finite_like(sample(model, positive, latent, noise_mask), latent)


@pytest.mark.parametrize("case", ["wan21_i2v", "wan22_i2v_14b", "wan22_ti2v_5b", "ltxv", "ltxav", "minimax_h3"])
def test_image_to_video_inputs_sample(comfy, case):
    module, _, model = tiny(comfy, case)
    positive, latent, noise_mask = inputs(case, module, model, FRAMES[CASES[case][0]], image=True)
    out = sample(model, positive, latent, noise_mask)
    assert_finite_like(out, latent)
    if noise_mask is not None:  # the kept first frame comes back as it went in, up to the rounding of the
        import comfy.sample  # unit noise the sampler adds to every frame and takes out of the kept ones
        kept, noise = streams(latent)[0][:, :, :1], streams(comfy.sample.prepare_noise(latent, 0))[0]
        assert_close(streams(out)[0][:, :, :1], kept, ulps=OPS, magnitude_of=torch.cat([kept.flatten(), noise.flatten()]),
                     what=f"{case}: the kept first frame")


# ---- the attention census (what docs/VIDEO_RESEARCH.md relies on) -----------------------------------------
class Census:
    """An optimized_attention_override recording each call's (query tokens, key tokens, width, heads, mask,
    skip_reshape, block_type, block_index)."""

    def __init__(self):
        self.calls = []

    def __deepcopy__(self, memo):  # ModelPatcher.clone() deep-copies model_options
        return self

    def __call__(self, func, q, k, v, heads, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        assert all(isinstance(t, torch.Tensor) for t in (q, k, v))  # MiniMax's containers arrive unwrapped
        skip = kwargs.get("skip_reshape", False)
        tokens = (q.shape[-2], k.shape[-2]) if skip else (q.shape[1], k.shape[1])
        width = q.shape[1] * q.shape[-1] if skip else q.shape[-1]
        mask = kwargs.get("mask", args[0] if args else None)
        self.calls.append((tokens, width, heads, None if mask is None else tuple(mask.shape), skip,
                           options.get("block_type"), options.get("block_index")))
        return func(q, k, v, heads, *args, **kwargs)


def census(model, positive, latent, noise_mask=None):
    m = model.clone()
    recorder = Census()
    m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = recorder
    sample(m, positive, latent, noise_mask, steps=1)
    return recorder.calls


def newer_wan() -> bool:
    """ComfyUI 0.33.0's Wan sets block_type "double" / block_index in transformer_options; 0.3.75's does not."""
    import inspect
    import comfy.ldm.wan.model as wan_model
    return '"block_index"' in inspect.getsource(wan_model.WanModel.forward_orig)


@pytest.mark.parametrize("case", ["wan21_t2v", "wan21_i2v", "wan22_ti2v_5b"])
def test_wan_census_self_then_image_then_text_attention_per_block(comfy, case):
    module, _, model = tiny(comfy, case)
    positive, latent, noise_mask = inputs(case, module, model, 9, image=case != "wan21_t2v")
    video = latent.shape[2] * (latent.shape[3] // 2) * (latent.shape[4] // 2)  # frames x h/2 x w/2 (patch 1x2x2)
    per_block = [(video, video)] + ([(video, 257)] if case == "wan21_i2v" else []) + [(video, TEXT)]
    calls = census(model, positive, latent, noise_mask)
    assert [c[0] for c in calls] == per_block * 2  # 2 blocks, one forward
    assert {(c[1], c[2], c[3], c[4]) for c in calls} == {(64, 2, None, False)}  # (B, T, H*D), no mask
    tags = [(c[5], c[6]) for c in calls]
    n = len(per_block)
    assert tags == ([("double", 0)] * n + [("double", 1)] * n if newer_wan() else [(None, None)] * 2 * n)


@pytest.mark.parametrize("case", ["ltxv", "ltxav"])
def test_ltx_census_video_calls_and_audio_calls_tell_apart_by_width(comfy, case):
    module, _, model = tiny(comfy, case)
    positive, latent, _ = inputs(case, module, model, 9)
    video = 2 * 2 * 2  # 9 frames -> 2 latent frames of 2 x 2 tokens (32x VAE, patch 1)
    calls = census(model, positive, latent)
    if case == "ltxv":  # self-attention, then text cross-attention with T5's padding mask
        assert [(c[0], c[3]) for c in calls] == [((video, video), None), ((video, TEXT), (1, 1, 1, TEXT))] * 2
    else:  # video self, video text (1024 register-padded tokens), audio self, audio text, a2v, v2a
        audio = streams(latent)[1].shape[2]
        want = [((video, video), 64), ((video, 1024), 64), ((audio, audio), 32), ((audio, 1024), 32),
                ((video, audio), 32), ((audio, video), 32)]
        assert [(c[0], c[1]) for c in calls] == want * 2
        video_only = census(model, positive, streams(latent)[0])
        assert [(c[0], c[1]) for c in video_only] == want[:2] * 2
    assert all(c[5] is None and c[6] is None for c in calls)  # LTX names no block in transformer_options


def test_minimax_census_one_packed_self_attention_per_block(comfy):
    module, _, model = tiny(comfy, "minimax_h3")
    positive, latent, _ = inputs("minimax_h3", module, model, 5, image=True)
    video, audio = streams(latent)
    packed = TEXT + 1 * 2 * 2 + audio.shape[2] * audio.shape[3] + video.shape[2] * 2 * 2  # text | cond | audio | video
    calls = census(model, positive, latent)
    assert [c[0] for c in calls] == [(packed, packed)] * 2
    assert all(c[4] and c[3] is None and c[5] is None for c in calls)  # (1, H, S, D), skip_reshape, no mask
