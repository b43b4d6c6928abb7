"""AtelierStyleAligned with a reference trajectory in a real ComfyUI: the reference row follows the
trajectory at every step with the inversion's conditioning, gets no ControlNet residual, and never
reaches the output; cfg 1, batched and split cond/uncond calls all work.

Test bed: tiny SD1.5, 64 px (latent 8x8), 3 steps; the trajectory is inverted once per module.
"""
import math

import pytest
import torch

from tests.harness import SD15
from tests.comfy.inversion_helpers import image_latent, invert, with_unet_spy
from tests.tolerance import OPS, SAMPLING, assert_changed, assert_close, assert_exact

STEPS = 3
CONTROLNET = "atelier_tiny_sd15_controlnet.safetensors"


@pytest.fixture(scope="module")
def reference(comfy):
    checkpoint = comfy.sd15
    positive = comfy.encode(checkpoint.clip, "a sunset over hills")
    negative = comfy.encode(checkpoint.clip, "ugly")
    return invert(comfy, checkpoint.model, image_latent(checkpoint), STEPS, cfg=2.0, refine=0,
                  positive=positive, negative=negative)[1]


def style_aligned(comfy, model, reference, **overrides):
    settings = dict(share_attention=True, adain_queries=True, adain_keys=True, adain_values=False,
                    share_group_norm=True, shared_score_scale=1.0, shared_score_shift=0.0, layers="all",
                    unshared_fraction=0.0, start_percent=0.0, end_percent=1.0, reference=reference)
    settings.update(overrides)
    return comfy.node_class("AtelierStyleAligned").execute(model, **settings).result[0]


class Recorder:
    """DIFFUSION_MODEL wrapper (innermost): what the UNet itself receives in every call."""

    def __init__(self):
        self.calls = []

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, timesteps, context=None, y=None, control=None, transformer_options={}, **kw):
        self.calls.append({"x": x.detach().clone(), "context": context.detach().clone(),
                           "y": None if y is None else y.detach().clone(),
                           "sigma": float(transformer_options["sigmas"][0]),
                           "kinds": list(transformer_options["cond_or_uncond"]),
                           "control": None if control is None else
                           {k: [c.detach().clone() if c is not None else None for c in v] for k, v in control.items()}})
        return executor(x, timesteps, context, y, control, transformer_options, **kw)


def recorded(model):
    return with_unet_spy(model, Recorder())


def c_in(sigma):
    return 1.0 / math.sqrt(sigma ** 2 + 1.0)


@pytest.mark.parametrize("batch,cfg", [(1, 1.0), (2, 1.0), (2, 3.0)])
def test_reference_row_follows_the_trajectory_and_stays_out_of_the_output(comfy, reference, batch, cfg):
    checkpoint = comfy.sd15
    model, recorder = recorded(style_aligned(comfy, checkpoint.model, reference))
    positive = comfy.encode(checkpoint.clip, "a house")
    out = comfy.sample(model, positive, comfy.encode(checkpoint.clip, ""), steps=STEPS, cfg=cfg, width=64,
                       height=64, batch=batch, sampler_name="euler")
    assert out.shape == (batch, 4, 8, 8)
    assert len(recorder.calls) == STEPS
    for call, sigma in zip(recorder.calls, reference.sigmas[:-1].tolist()):
        assert call["sigma"] == sigma  # the trajectory's own sigmas (looked up by value below)
        rows = batch + 1
        assert call["x"].shape[0] == rows * len(call["kinds"])
        want = (reference.latents[reference.sigmas.tolist().index(sigma), 0] * c_in(sigma)).to(call["x"])
        for chunk, kind in enumerate(call["kinds"]):
            assert_close(call["x"][chunk * rows], want, ulps=OPS, what="the reference row's scaled latent")
            ref_context = reference.conds_for(kind).c_crossattn[0].to(call["context"])
            assert_exact(call["context"][chunk * rows], ref_context, "the reference row's context")
    assert [c["kinds"] for c in recorder.calls] == ([[0]] * STEPS if cfg == 1.0 else [[1, 0]] * STEPS)


def test_reference_changes_the_images_and_a_different_reference_changes_them_differently(comfy, reference):
    checkpoint = comfy.sd15
    positive, negative = comfy.encode(checkpoint.clip, "a house"), comfy.encode(checkpoint.clip, "")
    kw = dict(steps=STEPS, cfg=3.0, width=64, height=64, batch=2, seed=5)
    vanilla = comfy.sample(checkpoint.model, positive, negative, **kw)
    styled = comfy.sample(style_aligned(comfy, checkpoint.model, reference), positive, negative, **kw)
    other = invert(comfy, checkpoint.model, -image_latent(checkpoint), STEPS)[1]
    styled_other = comfy.sample(style_aligned(comfy, checkpoint.model, other), positive, negative, **kw)
    assert_changed(styled, vanilla, what="a reference")
    assert_changed(styled, styled_other, what="another reference")


def test_cond_and_uncond_in_separate_calls_give_the_same_images_as_one_batched_call(comfy, reference):
    checkpoint = comfy.sd15
    positive, negative = comfy.encode(checkpoint.clip, "a house"), comfy.encode(checkpoint.clip, "blurry")
    # 5 x 77 tokens cannot be joined with 77 (ComfyUI pads at most 4x): ComfyUI runs two model calls.
    # Repeating a whole token sequence leaves cross-attention unchanged, so the images must agree.
    long_negative = [[negative[0][0].repeat(1, 5, 1), dict(negative[0][1])]]
    kw = dict(steps=STEPS, cfg=4.0, width=64, height=64, batch=2, seed=9)
    batched_model, batched = recorded(style_aligned(comfy, checkpoint.model, reference))
    split_model, split = recorded(style_aligned(comfy, checkpoint.model, reference))
    a = comfy.sample(batched_model, positive, negative, **kw)
    b = comfy.sample(split_model, positive, long_negative, **kw)
    assert [c["kinds"] for c in batched.calls] == [[1, 0]] * STEPS
    assert sorted(tuple(c["kinds"]) for c in split.calls) == sorted([(0,), (1,)] * STEPS)
    vanilla = comfy.sample(checkpoint.model, positive, negative, **kw)
    # float32 sums in another batch order: equal to rounding, while the reference changes them
    assert_close(a, b, ulps=SAMPLING, what="split vs batched calls")
    assert_changed(a, vanilla, what="the reference")


@pytest.mark.parametrize("hint_batch", [1, 2])
def test_controlnet_residuals_reach_the_generated_rows_only(comfy, reference, hint_batch):
    import folder_paths
    from comfy.controlnet import load_controlnet
    checkpoint = comfy.sd15
    net = load_controlnet(folder_paths.get_full_path_or_raise("controlnet", CONTROLNET))
    hints = torch.rand(hint_batch, 64, 64, 3, generator=torch.Generator().manual_seed(3))
    apply = comfy.node_class("ControlNetApplyAdvanced")()
    positive, negative = apply.apply_controlnet(comfy.encode(checkpoint.clip, "a house"),
                                                comfy.encode(checkpoint.clip, ""), net, hints, 1.0, 0.0, 1.0)
    kw = dict(steps=STEPS, cfg=2.0, width=64, height=64, batch=2, seed=1)
    vanilla_model, vanilla = recorded(checkpoint.model)
    styled_model, styled = recorded(style_aligned(comfy, checkpoint.model, reference))
    comfy.sample(vanilla_model, positive, negative, **kw)
    comfy.sample(styled_model, positive, negative, **kw)
    first_vanilla, first_styled = vanilla.calls[0], styled.calls[0]  # same x at step 0 (same seed)
    gen_rows = [1, 2, 4, 5]  # chunks [uncond, cond] of 3 rows: reference at 0 and 3
    for name, residuals in first_styled["control"].items():
        for i, residual in enumerate(residuals):
            if residual is None:
                continue
            assert torch.count_nonzero(residual[[0, 3]]) == 0, (name, i)
            # ComfyUI computes the ControlNet on the caller's rows, the zero rows are inserted after: bit for bit
            assert_exact(residual[gen_rows], first_vanilla["control"][name][i], f"{name} residual {i}")
    assert any(r is not None and torch.count_nonzero(r) for r in first_styled["control"]["output"])


def test_a_reference_of_another_size_is_refused_naming_both_sizes(comfy, reference):
    checkpoint = comfy.sd15
    model = style_aligned(comfy, checkpoint.model, reference)
    with pytest.raises(ValueError) as info:
        comfy.sample(model, comfy.encode(checkpoint.clip, "x"), comfy.encode(checkpoint.clip, ""), steps=1,
                     width=128, height=64)
    message = str(info.value)
    assert "AtelierStyleAligned" in message and "'reference'" in message
    assert "64x64" in message and "128x64" in message


def test_a_reference_from_another_model_family_is_refused(comfy, reference):
    with pytest.raises(ValueError) as info:
        style_aligned(comfy, comfy.sdxl.model, reference)
    assert "SD15" in str(info.value) and "SDXL" in str(info.value) and "'reference'" in str(info.value)


def test_sdxl_reference_row_gets_the_inversions_pooled_and_size_conditioning(comfy):
    checkpoint = comfy.sdxl
    positive = comfy.encode(checkpoint.clip, "a sunset over hills")
    trajectory = invert(comfy, checkpoint.model, image_latent(checkpoint), 2, positive=positive)[1]
    model, recorder = recorded(style_aligned(comfy, checkpoint.model, trajectory, share_group_norm=False))
    out = comfy.sample(model, comfy.encode(checkpoint.clip, "a house"), comfy.encode(checkpoint.clip, ""), steps=2,
                       cfg=2.0, width=64, height=64, batch=1)
    assert out.shape == (1, 4, 8, 8)
    assert len(recorder.calls) == 2
    for call in recorder.calls:
        assert call["x"].shape[0] == 2 * len(call["kinds"])
        for chunk, kind in enumerate(call["kinds"]):
            want_y = trajectory.conds_for(kind).extra["y"][0].to(call["y"])
            assert_exact(call["y"][chunk * 2], want_y, "the reference row's y")  # the inversion's, put in as is
        assert_changed(call["y"][0], call["y"][1], what="the generated row's y")  # it keeps its own prompt


def test_rerunning_the_graph_reuses_the_cached_inversion(comfy):
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD15}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a sunset", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "AtelierInvert", "inputs": {"model": ["1", 0], "latent": ["4", 0], "positive": ["2", 0],
                                                       "steps": 2, "cfg": 1.0, "scheduler": "normal",
                                                       "refine_iterations": 0}},
        "6": {"class_type": "AtelierStyleAligned", "inputs": {
            "model": ["1", 0], "share_attention": True, "adain_queries": True, "adain_keys": True,
            "adain_values": False, "share_group_norm": False, "shared_score_scale": 1.0, "shared_score_shift": 0.0,
            "layers": "all", "unshared_fraction": 0.0, "start_percent": 0.0, "end_percent": 1.0,
            "reference": ["5", 1]}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
        "8": {"class_type": "KSampler", "inputs": {"model": ["6", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                  "latent_image": ["7", 0], "seed": 0, "steps": 2, "cfg": 2.0,
                                                  "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["9", 0]}},
    }
    executor = comfy.new_executor()
    first = comfy.run_graph(graph, executor)
    assert first.output("8")["samples"].shape == (2, 4, 8, 8)
    graph["8"]["inputs"]["seed"] = 1  # a new batch against the same reference
    second = comfy.run_graph(graph, executor)
    cached = [n for e, d in second.messages if e == "execution_cached" for n in d["nodes"]]
    assert "5" in cached, second.messages
    assert_changed(first.output("8")["samples"], second.output("8")["samples"], what="a new seed")
