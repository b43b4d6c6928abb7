"""FLUX.2 (tiny, seeded, klein layout: ComfyUI's Flux class with global modulation) inside a real ComfyUI:
``double.i`` / ``single.i`` blocks with one joint [text | image | reference images] attention each; the
prompt padded at the front to 512 tokens by model_base.Flux2; 128-channel latent, patch 1. klein is
distilled (cfg 1); dev runs real cfg.

The shared invariants (tests/comfy/double_single_family.py): neutral settings = vanilla bit for bit;
StyleAligned keeps row 0 and styles rows 1.. at cfg 1 and real cfg, its formula against an independent
computation on captured q/k/v; regional weight 0 = vanilla, outside every region bit for bit, the
per-step curve; aesthetic mixing; flow inversion with refinement and the reference-image mode; another
pack's override keeps running; refusals name FLUX.2. Here: reference images (ReferenceLatent) are extra
tokens after the image whose attention outputs no control touches.
"""
import pytest
import torch

from tests.comfy.double_single_family import *  # noqa: F401,F403  (the shared invariants)
from tests.comfy.double_single_family import (NEUTRAL, Bed, aesthetic_mix, invert, pack, plain_attention, region,
                                              regional, spy_calls, style_aligned)
from tests.tolerance import EFFECT, SAMPLING, assert_changed, assert_close, assert_exact, relative_change

CFG = 4.0  # FLUX.2 dev as ComfyUI runs it with real cfg (klein: cfg 1)
PADDED = 512  # model_base.Flux2 pads the prompt at the front to 512 tokens
REFERENCE = 9  # a 48 px reference image: 3 x 3 latent positions, patch 1


@pytest.fixture(scope="module")
def bed(comfy):
    from tiny_models.dit import load_tiny_dit
    from tiny_models.flux2 import (DOWNSCALE, FLUX2, LATENT_CHANNELS, TEXT_WIDTH, build_flux2, random_conditioning,
                                   verify_flux2)
    path = comfy.base_dir / "models" / "diffusion_models" / FLUX2
    try:
        verify_flux2(path)
    except Exception:  # missing or stale: rebuild (a second)
        build_flux2(path)
    return Bed(comfy=comfy, model=load_tiny_dit(path), family="FLUX.2", conditioning=random_conditioning,
               channels=LATENT_CHANNELS, downscale=DOWNSCALE, cfg=CFG, text_width=TEXT_WIDTH,
               text_tokens=lambda n: max(n, PADDED), inversion=(8, 3))


@pytest.fixture(scope="module")
def edit(bed):
    """FLUX.2 edit conditioning: a reference image's latent appended by ReferenceLatent."""
    from tiny_models.flux2 import with_reference_latents
    reference = torch.randn(1, bed.channels, 3, 3, generator=torch.Generator().manual_seed(11))
    return with_reference_latents(bed.pos, [reference]), with_reference_latents(bed.neg, [reference])


def test_the_model_is_comfyuis_flux2_and_not_flux1(bed):
    from comfy.ldm.flux.model import Flux
    models = pack("attention.models")
    diffusion_model = bed.model.get_model_object("diffusion_model")
    assert isinstance(diffusion_model, Flux) and diffusion_model.params.global_modulation
    assert type(bed.model.model).__name__ == "Flux2" and type(bed.model.model.model_config).__name__ == "Flux2"
    assert not models.flux.FAMILY.matches(diffusion_model)  # the Flux.1 adapter leaves it to FLUX.2's


# ---- reference images (ReferenceLatent) -----------------------------------------------------------

def test_reference_latents_are_extra_tokens_after_the_image(bed, edit):
    """[512 text | 4 x 4 image | 3 x 3 reference] tokens; the image grid is the generated latent's."""
    pos, neg = edit
    calls = spy_calls(lambda: bed.sample(style_aligned(bed.comfy, bed.model), pos, neg, batch=2, steps=1))
    override, args, _, _ = calls[0]
    assert (override.tokens.text, override.tokens.image, override.tokens.extra) == (PADDED, 16, REFERENCE)
    assert override.tokens.grid == (4, 4) and args[0].shape[-2] == PADDED + 16 + REFERENCE


@pytest.mark.parametrize("cfg", ["1", "real"])
def test_with_a_reference_image_style_aligned_keeps_row_0_and_styles_the_other_rows(bed, edit, cfg):
    cfg = 1.0 if cfg == "1" else bed.cfg
    pos, neg = edit
    plain = bed.sample(pos=pos, neg=neg, cfg=cfg)
    out = bed.sample(style_aligned(bed.comfy, bed.model), pos, neg, cfg=cfg)
    assert_close(out[0], plain[0], ulps=SAMPLING, what="reference row 0")
    for row in (1, 2):
        assert_changed(out[row], plain[row], what=f"generated row {row}")


def _controls(bed):
    return {
        "StyleAligned": style_aligned(bed.comfy, bed.model, shared_score_shift=0.3, adain_values=True),
        "regional": regional(bed.comfy, bed.model, region(bed.comfy, bed.conditioning(5, 7), x=0.0, width=0.5)),
        "aesthetic": aesthetic_mix(bed.model, bed.conditioning(3, 9)[0][0], 0.8),
    }


@pytest.mark.parametrize("control", ["StyleAligned", "regional", "aesthetic"])
def test_reference_tokens_attention_outputs_are_untouched_by_every_control(bed, edit, control):
    """In every call the reference image's tokens get the model's attention on the q/k/v it gave, bit
    for bit (never AdaIN'd, never shown the style reference's keys, never regioned), while the
    generated image tokens' outputs change."""
    pos, neg = edit
    patched = _controls(bed)[control]
    calls = spy_calls(lambda: bed.sample(patched, pos, neg, batch=2, steps=2, cfg=bed.cfg))
    assert calls
    image_change = 0.0  # the largest relative change of the image tokens' outputs over the calls
    for override, args, _, out in calls:
        layout = override.tokens
        assert layout.extra == REFERENCE
        (q, _), (k, _), (v, _) = (layout.split(t) for t in args[:3])
        main_out, _ = layout.split(out)
        assert_exact(main_out[:, -REFERENCE:], plain_attention(q[..., -REFERENCE:, :], k, v), "reference-image tokens")
        image = layout.main.image_slice
        image_change = max(image_change, relative_change(main_out[:, image], plain_attention(q, k, v)[:, image]))
    assert image_change > EFFECT, image_change


def test_with_a_reference_image_neutral_settings_and_region_weight_zero_are_vanilla(bed, edit):
    pos, neg = edit
    plain = bed.sample(pos=pos, neg=neg)
    assert_exact(bed.sample(style_aligned(bed.comfy, bed.model, **NEUTRAL), pos, neg), plain, "neutral StyleAligned")
    zero = regional(bed.comfy, bed.model, region(bed.comfy, bed.conditioning(5, 7), weight=0.0))
    assert_exact(bed.sample(zero, pos, neg), plain, "region weight 0")


def test_reference_image_mode_runs_with_a_reference_latent(bed, edit):
    """Style from an inverted image while the prompt carries an edit's reference image: the inserted
    style row gets the chunk's reference tokens too, so the model's token counts agree."""
    pos, neg = edit
    _, trajectory, _ = invert(bed, bed.latent(), 2, steps=4)
    plain = bed.sample(pos=pos, neg=neg, batch=2)
    styled = bed.sample(style_aligned(bed.comfy, bed.model, reference=trajectory), pos, neg, batch=2)
    assert styled.shape == plain.shape and torch.isfinite(styled).all()
    assert_changed(styled, plain, what="reference-image mode")
    neutral = style_aligned(bed.comfy, bed.model, **NEUTRAL, reference=trajectory)
    assert_close(bed.sample(neutral, pos, neg, batch=2), plain, ulps=SAMPLING, what="neutral reference-image mode")
