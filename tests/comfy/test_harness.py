"""The in-process harness itself: tiny checkpoints load as the right models, sampling is finite and
seeded, the tiny LoRA applies through core's loader and changes outputs, graphs execute."""
import pytest
import torch

from tests.harness import SD15, SDXL, graphs
from tests.harness.inprocess import GraphError
from tests.tolerance import assert_changed, assert_exact


def test_tiny_sd15_is_detected_and_samples_deterministically(comfy):
    ck = comfy.sd15
    assert type(ck.model.model.model_config).__name__ == "SD15"
    a = comfy.txt2img(SD15, seed=3, steps=2)
    b = comfy.txt2img(SD15, seed=3, steps=2)
    c = comfy.txt2img(SD15, seed=4, steps=2)
    assert a.shape == (1, 4, 32, 32) and torch.isfinite(a).all()
    assert_exact(a, b, "the same seed twice")
    assert_changed(a, c, what="another seed")
    img = comfy.decode(ck.vae, a)
    assert img.shape[-1] == 3 and torch.isfinite(img).all()


def test_tiny_lora_applies_without_unknown_keys_and_changes_output(comfy, caplog):
    ck = comfy.sd15
    with caplog.at_level("WARNING"):
        model, clip = comfy.lora(ck.model, ck.clip)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage() or "NOT LOADED" in r.getMessage()]
    assert len(model.patches) > 0 and len(clip.patcher.patches) > 0
    base = comfy.txt2img(SD15, seed=1, steps=2)
    unet_only = comfy.txt2img(SD15, seed=1, steps=2, model=model)
    both = comfy.txt2img(SD15, seed=1, steps=2, model=model, clip=clip)
    assert_changed(unet_only, base, what="the LoRA on the UNet")
    assert_changed(both, unet_only, what="the LoRA on the text encoder")
    assert_exact(comfy.txt2img(SD15, seed=1, steps=2), base, "the unpatched model (no LoRA leaked)")


def test_graph_runs_in_process_and_returns_outputs(comfy):
    res = comfy.run_graph(graphs.txt2img(steps=2, save=False))
    latent = res.output("5")["samples"]
    assert latent.shape == (1, 4, 32, 32)
    assert res.ui["7"]["images"], res.ui
    assert any(e == "execution_success" for e, _ in res.messages)


def test_graph_errors_are_reported(comfy):
    g = graphs.txt2img(steps=2, save=False)
    g["5"]["inputs"]["steps"] = "abc"
    with pytest.raises(GraphError) as e:
        comfy.run_graph(g)
    assert "5" in e.value.node_errors


@pytest.mark.slow
def test_tiny_sdxl_is_detected_and_samples(comfy):
    ck = comfy.sdxl
    assert type(ck.model.model.model_config).__name__ == "SDXL"
    out = comfy.txt2img(SDXL, seed=0, steps=1, cfg=1.0)
    assert out.shape == (1, 4, 32, 32) and torch.isfinite(out).all()
