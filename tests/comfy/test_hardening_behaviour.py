"""Behaviour the hardening issue asked for, inside a real ComfyUI (tiny SD1.5): a batch of one with
StyleAligned or ArtBN and no reference says once that there is nothing to align; IP-Adapter plus
with the optional clip_vision input uses the original's negative (the Resampler of the CLIP hidden
states of an all-zero pixel image), without it the earlier all-zero hidden states."""
import logging

import pytest
import torch

from tests.pack import pack_module
from tests.tolerance import assert_changed, assert_exact

SIZE = 64


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_seen():
    capture = Capture()
    logger = logging.getLogger("attention_atelier")
    logger.addHandler(capture)
    yield capture.messages
    logger.removeHandler(capture)


def style_aligned(comfy, model):
    return comfy.node_class("AtelierStyleAligned").execute(
        model, True, True, True, False, True, 1.0, 0.0, "all", 0.0, 0.0, 1.0).result[0]


def art_bn(comfy, model):
    return comfy.node_class("AtelierArtBN").execute(model, 1.0, "both", "all", 0.0, 1.0).result[0]


def sample(comfy, model, batch, steps=2):
    clip = comfy.sd15.clip
    return comfy.sample(model, comfy.encode(clip, "a fox"), comfy.encode(clip, ""), steps=steps, cfg=4.0,
                        width=SIZE, height=SIZE, batch=batch)


@pytest.mark.parametrize("patch,names", [(style_aligned, "AtelierStyleAligned"), (art_bn, "AtelierArtBN")])
def test_a_batch_of_one_warns_once_per_run_and_stays_vanilla(comfy, warnings_seen, patch, names):
    model = patch(comfy, comfy.sd15.model)
    out = sample(comfy, model, batch=1)
    nothing = [m for m in warnings_seen if "no row 0 to align with" in m]
    assert len(nothing) == 1 and nothing[0].startswith(names), warnings_seen
    assert_exact(out, sample(comfy, comfy.sd15.model, batch=1), "a batch of one")  # the unpatched model's ops
    warnings_seen.clear()
    sample(comfy, model, batch=2, steps=1)
    assert not [m for m in warnings_seen if "no row 0 to align with" in m]


@pytest.fixture(scope="module")
def clip_vision(comfy):
    import nodes
    from tiny_models.clip_vision import CLIP_VISION
    comfy.load_nodes()
    return nodes.CLIPVisionLoader().load_clip(CLIP_VISION)[0]


def negative_of(comfy, adapter, vision_output, clip_vision=None):
    patched = comfy.node_class("AtelierImagePrompt").execute(
        comfy.sd15.model, adapter, vision_output, 1.0, "all", 0.0, 1.0, clip_vision=clip_vision).result[0]
    return pack_module("attention.dispatch.dispatcher").controls_of(patched)[-1].uncond_tokens


def zero_pixel_hidden_states(clip_vision, monkeypatch):
    """Core CLIPVisionEncode's own path, with its preprocessing replaced by all-zero pixel_values."""
    import comfy.clip_model
    import comfy.clip_vision
    import nodes

    def zeros(image, size=224, **kwargs):
        return torch.zeros(image.shape[0], 3, size, size, device=image.device)

    for module in (comfy.clip_model, comfy.clip_vision):  # 0.3.75 defines it in clip_vision, 0.33 in clip_model
        if hasattr(module, "clip_preprocess"):
            monkeypatch.setattr(module, "clip_preprocess", zeros)
    out = nodes.CLIPVisionEncode().encode(clip_vision, torch.rand(1, 224, 224, 3), "center")[0]
    return out["penultimate_hidden_states"]


def test_plus_adapter_negative_is_the_resampler_of_a_zero_pixel_image_when_clip_vision_is_wired(
        comfy, clip_vision, monkeypatch):
    import nodes
    from tiny_models.ip_adapter import SD15_BASE, SD15_PLUS
    loader = comfy.node_class("AtelierIPAdapterLoader")
    plus, base = loader.execute(SD15_PLUS).result[0], loader.execute(SD15_BASE).result[0]
    vision_output = nodes.CLIPVisionEncode().encode(clip_vision, torch.rand(1, 224, 224, 3), "center")[0]
    features = vision_output["penultimate_hidden_states"]

    default = negative_of(comfy, plus, vision_output)
    # the same projection (and CLIP vision forward on the same all-zero pixel_values) as the pack's: bit for bit
    assert_exact(default, plus.image_tokens(torch.zeros_like(features[:1])), "default negative")
    wired = negative_of(comfy, plus, vision_output, clip_vision)
    expected = plus.image_tokens(zero_pixel_hidden_states(clip_vision, monkeypatch))
    assert_exact(wired, expected, "negative with CLIP vision wired")
    assert_changed(wired, default, what="a zero image's hidden states vs zeros")  # they are not zero

    base_default = negative_of(comfy, base, vision_output)
    assert_exact(negative_of(comfy, base, vision_output, clip_vision), base_default, "base adapter's negative")
