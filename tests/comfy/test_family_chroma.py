"""Chroma (tiny, seeded, ComfyUI's own Chroma module) inside a real ComfyUI: Flux-style ``double.i`` /
``single.i`` blocks with one joint [T5 text | image] attention each, modulation from the distilled
guidance approximator, no pooled vector; users run real cfg (about 4).

The shared invariants (tests/comfy/double_single_family.py): neutral settings = vanilla bit for bit;
StyleAligned keeps row 0 and styles rows 1.. at cfg 1 and real cfg, its formula against an independent
computation on captured q/k/v; regional weight 0 = vanilla, outside every region bit for bit, the
per-step curve; aesthetic mixing; flow inversion with refinement and the reference-image mode; another
pack's override keeps running; refusals name Chroma. Here: ComfyUI's Chroma runs unmasked (its T5 is
not padded), so regional / aesthetic prompt streams are carried.
"""
import pytest

from tests.comfy.double_single_family import *  # noqa: F401,F403  (the shared invariants)
from tests.comfy.double_single_family import Bed, QKVRecorder, with_override

CFG = 4.0  # ComfyUI's Chroma template


@pytest.fixture(scope="module")
def bed(comfy):
    from tiny_models.chroma import CHROMA, TEXT_WIDTH, build_chroma, random_conditioning, verify_chroma
    from tiny_models.dit import load_tiny_dit
    path = comfy.base_dir / "models" / "diffusion_models" / CHROMA
    try:
        verify_chroma(path)
    except Exception:  # missing or stale: rebuild (a second)
        build_chroma(path)
    return Bed(comfy=comfy, model=load_tiny_dit(path), family="Chroma", conditioning=random_conditioning,
               channels=16, downscale=8, cfg=CFG, text_width=TEXT_WIDTH, text_tokens=lambda n: n)


def test_the_model_is_comfyuis_chroma(bed):
    diffusion_model = bed.model.get_model_object("diffusion_model")
    assert type(bed.model.model).__name__ == "Chroma" and type(diffusion_model).__name__ == "Chroma"
    assert type(bed.model.model.model_config).__name__ == "Chroma"


def test_chroma_runs_unmasked_so_the_prompt_streams_are_carried(bed):
    """ComfyUI's Chroma conditioning brings no attention mask: the model's attention calls get none,
    and a local prompt's stream is in every call."""
    from tests.comfy.double_single_family import region, regional, spy_calls
    recorder = QKVRecorder()
    patched = regional(bed.comfy, with_override(bed.model, recorder), region(bed.comfy, bed.conditioning(5, 7)))
    calls = spy_calls(lambda: bed.sample(patched, batch=1, steps=1))
    assert calls and all(c[0].tokens.streams == (5,) for c in calls)
    assert all(c["mask"] is None for c in recorder.calls)
