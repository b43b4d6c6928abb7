"""The shipped Flux templates, run in-process on the tiny Flux (scripts/tiny_models/dit.py) with its tiny
text encoders and VAE (flux_text.py): real tokenizers, real AtelierBatchPrompts / regions on Flux
conditioning, real KSampler at cfg 1 with FluxGuidance. Each Atelier node is checked against the same
graph without it."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from tests.harness.paths import WORKFLOWS_API_DIR
from tiny_models.template_swap import for_test_bed

SIZE = 128  # px: a 16 x 16 latent, 64 image tokens


def template(name: str) -> dict:
    return for_test_bed(json.loads((WORKFLOWS_API_DIR / f"{name}.json").read_text()), size=SIZE)


def sampled(comfy, graph: dict, sampler: str) -> torch.Tensor:
    samples = comfy.run_graph(graph).output(sampler)["samples"]
    assert torch.isfinite(samples).all()
    return samples


def without(graph: dict, node_id: str, model_from) -> dict:
    """The graph with a MODEL patch node wired around (its consumers take ``model_from``)."""
    out = copy.deepcopy(graph)
    del out[node_id]
    for node in out.values():
        if node["inputs"].get("model") == [node_id, 0]:
            node["inputs"]["model"] = model_from
    return out


def test_style_set_template_runs_on_flux_conditioning_of_the_real_tokenizers(comfy):
    graph = template("flux_style_aligned_set")
    result = comfy.run_graph(graph)
    context, extra = result.output("5")[0]
    rows = len(graph["5"]["inputs"]["prompts"].splitlines())
    assert result.output("5", 1) == rows
    assert context.shape == (rows, 256, 32)  # T5 padded to 256 tokens, tiny T5 width = Flux context_in_dim
    assert extra["pooled_output"].shape == (rows, 16)  # CLIP-L pooled = Flux vec_in_dim
    assert result.output("9")["samples"].shape == (rows, 16, SIZE // 8, SIZE // 8)


def test_style_set_template_styles_rows_1_on_and_leaves_row_0(comfy):
    graph = template("flux_style_aligned_set")
    styled = sampled(comfy, graph, "9")
    vanilla = sampled(comfy, without(graph, "4", ["1", 0]), "9")
    torch.testing.assert_close(styled[0], vanilla[0], rtol=0, atol=1e-5)
    for row in range(1, styled.shape[0]):
        assert (styled[row] - vanilla[row]).abs().max() > 1e-3, f"row {row} not styled"


def every_region_weight_zero(graph: dict, region: str = "8", boxes: str = "9") -> dict:
    """A copy of a regional-layout template with the chained region's and every box's weights at 0."""
    zero = copy.deepcopy(graph)
    zero[region]["inputs"].update(weight=0.0, end_weight=0.0, weights="0")
    layout = json.loads(zero[boxes]["inputs"]["regions_json"])
    for box in layout["boxes"]:
        box.update(weight=0.0, end_weight=0.0)
    zero[boxes]["inputs"]["regions_json"] = json.dumps(layout)
    return zero


def test_regional_template_moves_the_image_and_weight_0_is_vanilla(comfy):
    graph = template("flux_regional_layout")
    vanilla = sampled(comfy, without(graph, "10", ["1", 0]), "12")
    assert (sampled(comfy, graph, "12") - vanilla).abs().max() > 1e-3

    torch.testing.assert_close(sampled(comfy, every_region_weight_zero(graph), "12"), vanilla, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["flux_style_aligned_set", "flux_regional_layout"])
def test_flux_templates_name_the_public_flux_files(name):
    loaders = {n["class_type"]: n["inputs"] for n in json.loads((WORKFLOWS_API_DIR / f"{name}.json").read_text()).values()}
    assert loaders["UNETLoader"]["unet_name"] == "flux1-dev.safetensors"
    assert (loaders["DualCLIPLoader"]["clip_name1"], loaders["DualCLIPLoader"]["clip_name2"],
            loaders["DualCLIPLoader"]["type"]) == ("clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "flux")
    assert loaders["VAELoader"]["vae_name"] == "ae.safetensors"
    assert loaders["KSampler"]["cfg"] == 1.0 and "FluxGuidance" in loaders


@pytest.mark.parametrize("relative_to_empty_prompt", [True, False])
def test_aesthetic_mix_takes_the_flux_text_encoders(comfy, relative_to_empty_prompt):
    """AtelierAestheticMix encodes its aesthetic with the graph's DualCLIPLoader (T5 + CLIP-L) and mixes
    it into the prompt's text values: it changes the Flux style set; strength 0 is the graph without it."""
    graph = without(template("flux_style_aligned_set"), "4", ["1", 0])
    vanilla = sampled(comfy, graph, "9")
    mixed = copy.deepcopy(graph)
    mixed["20"] = {"class_type": "AtelierAestheticMix", "inputs": {
        "model": ["1", 0], "clip": ["2", 0], "aesthetic": "golden hour, soft light, vibrant colours",
        "strength": 0.8, "relative_to_empty_prompt": relative_to_empty_prompt, "layers": "all",
        "start_percent": 0.0, "end_percent": 1.0}}
    mixed["9"]["inputs"]["model"] = ["20", 0]
    assert (sampled(comfy, mixed, "9") - vanilla).abs().max() > 1e-3
    mixed["20"]["inputs"]["strength"] = 0.0
    torch.testing.assert_close(sampled(comfy, mixed, "9"), vanilla, rtol=0, atol=0)
