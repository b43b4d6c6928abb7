"""AtelierAestheticMix on its defaults (relative_to_empty_prompt on) takes any aesthetic text on every text
encoder of the test bed, padded or not: CLIP (77-token chunks, SD1.5), T5 + CLIP-L (Flux.1, T5 padded to
256), Qwen2.5-VL (Qwen-Image, unpadded), Qwen3 (Z-Image, unpadded) and klein's Qwen3 (FLUX.2, 0.33.0).

Issue 26: E(aesthetic) - E("") was computed by tiling E("") a whole number of times, which raised for an
unpadded encoder whenever the aesthetic's token count was not a multiple of the empty prompt's ("golden
hour": 7 vs 5 tokens on Qwen-Image, 10 vs 8 on Z-Image; T5 above 256 tokens). Each text here is encoded
by ComfyUI's own tokenizer and text-encoder classes (tiny widths), mixed into the family's tiny model and
sampled one step.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings, strategies as st

from tests.tolerance import assert_changed

MIX = "AtelierAestheticMix"
WORDS = ("golden", "hour", "soft", "light", "vibrant", "colours", "rule", "of", "thirds", "bokeh", "35mm",
         "film", "grain", "moody", "chiaroscuro", "teal", "and", "orange", "watercolour", "(glow:1.2)")


def text_of(words: int, offset: int) -> str:
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(words))


def encoder_path(comfy, name):
    return comfy.base_dir / "models" / "text_encoders" / name


def sd15(comfy):
    return "sd15", comfy.sd15.clip


def flux(comfy):
    from tiny_models.flux_text import FLUX_CLIP_L, FLUX_T5, load_tiny_flux_clip
    return "flux", load_tiny_flux_clip([encoder_path(comfy, FLUX_CLIP_L), encoder_path(comfy, FLUX_T5)])


def z_image(comfy):
    from tiny_models.qwen3_text import QWEN3_TEXT, load_tiny_qwen3_clip
    return "lumina", load_tiny_qwen3_clip(encoder_path(comfy, QWEN3_TEXT))


def qwen_image(comfy):
    from tiny_models.qwen_image_parts import QWEN25VL_TEXT, load_tiny_qwen_image_clip
    return "qwen_image", load_tiny_qwen_image_clip(encoder_path(comfy, QWEN25VL_TEXT))


def flux2_klein(comfy):
    if importlib.util.find_spec("comfy.text_encoders.flux") is None or not hasattr(
            importlib.import_module("comfy.text_encoders.flux"), "KleinTokenizer"):
        pytest.skip("FLUX.2 klein's text encoder exists in ComfyUI 0.33 only")
    from tiny_models.qwen3_text import KLEIN_TEXT, load_tiny_klein_clip
    return "flux2", load_tiny_klein_clip(encoder_path(comfy, KLEIN_TEXT))


ENCODERS = {"SD1.5 (CLIP)": sd15, "Flux.1 (T5 + CLIP-L)": flux, "Z-Image (Qwen3)": z_image,
            "Qwen-Image (Qwen2.5-VL)": qwen_image, "FLUX.2 klein (Qwen3)": flux2_klein}


@pytest.fixture(scope="module", params=list(ENCODERS))
def family_and_clip(request, comfy):
    comfy.load_nodes()
    name, clip = ENCODERS[request.param](comfy)
    from scripts.bench_families import family
    fam = family(name) if name != "sd15" else None
    model = comfy.sd15.model if fam is None else fam.model
    channels = 4 if fam is None else fam.latent_channels
    conditioning = (comfy.encode(clip, "a fox in a meadow") if fam is None else fam.conditioning(8, 1))
    return request.param, model, clip, channels, conditioning


def sample(model, positive, channels):
    import comfy.sample
    latent = comfy.sample.fix_empty_latent_channels(model, torch.zeros(1, channels, 8, 8))
    noise = comfy.sample.prepare_noise(latent, 0)
    return comfy.sample.sample(model, noise, 1, 1.0, "euler", "simple", positive, positive, latent,
                               disable_pbar=True, seed=0)


def mixed(comfy, model, clip, text):
    return comfy.node_class(MIX).execute(model, clip, text, 0.5, True, "all", 0.0, 1.0).result[0]


def token_count(clip, text) -> int:
    return clip.encode_from_tokens(clip.tokenize(text), return_dict=True)["cond"].shape[1]


@given(words=st.integers(1, 400), offset=st.integers(0, len(WORDS) - 1))
@example(words=2, offset=0)  # "golden hour": 7 vs 5 tokens on Qwen-Image, 10 vs 8 on Z-Image
@example(words=300, offset=3)  # past T5's 256 padded tokens on Flux.1
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_default_mix_takes_any_aesthetic_text(comfy, family_and_clip, words, offset):
    label, model, clip, channels, positive = family_and_clip
    text = text_of(words, offset)
    out = sample(mixed(comfy, model, clip, text), positive, channels)
    assert torch.isfinite(out).all(), f"{label}: {words} words gave a non-finite latent"


def test_the_lengths_that_crashed_are_unequal_and_now_mix(comfy, family_and_clip):
    """Where E("") and E("golden hour") differ in length and one does not divide the other, the mix still
    runs and changes the image (so the empty-prompt baseline did not wipe the aesthetic out)."""
    label, model, clip, channels, positive = family_and_clip
    empty, golden = token_count(clip, ""), token_count(clip, "golden hour")
    vanilla = sample(model, positive, channels)
    out = sample(mixed(comfy, model, clip, "golden hour"), positive, channels)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla, what=f"{label}: the aesthetic ({golden} tokens, E(\"\") {empty})")
