"""The shipped Flux templates, run in-process on the tiny Flux (scripts/tiny_models/dit.py) with its tiny
text encoders and VAE (flux_text.py): real tokenizers, real AtelierBatchPrompts / regions on Flux
conditioning, real KSampler at cfg 1 with FluxGuidance. Each Atelier node is checked against the same
graph without it."""
from __future__ import annotations

import copy

import pytest

from tests.comfy.template_graphs import (SIZE, assert_regions_move_the_image_and_weight_0_is_vanilla,
                                         assert_rows_1_on_styled_and_row_0_vanilla, inputs_by_class, on_test_bed,
                                         sampled, without)
from tests.tolerance import assert_changed, assert_exact

def test_style_set_template_runs_on_flux_conditioning_of_the_real_tokenizers(comfy):
    graph = on_test_bed("flux_style_aligned_set")
    result = comfy.run_graph(graph)
    context, extra = result.output("5")[0]
    rows = len(graph["5"]["inputs"]["prompts"].splitlines())
    assert result.output("5", 1) == rows
    assert context.shape == (rows, 256, 32)  # T5 padded to 256 tokens, tiny T5 width = Flux context_in_dim
    assert extra["pooled_output"].shape == (rows, 16)  # CLIP-L pooled = Flux vec_in_dim
    assert result.output("9")["samples"].shape == (rows, 16, SIZE // 8, SIZE // 8)


def test_style_set_template_styles_rows_1_on_and_leaves_row_0(comfy):
    assert_rows_1_on_styled_and_row_0_vanilla(comfy, on_test_bed("flux_style_aligned_set"), "9", "4", ["1", 0])


def test_regional_template_moves_the_image_and_weight_0_is_vanilla(comfy):
    assert_regions_move_the_image_and_weight_0_is_vanilla(comfy, on_test_bed("flux_regional_layout"), "12", "10",
                                                          ["1", 0])


@pytest.mark.parametrize("name", ["flux_style_aligned_set", "flux_regional_layout"])
def test_flux_templates_name_the_public_flux_files(name):
    loaders = inputs_by_class(name)
    assert loaders["UNETLoader"]["unet_name"] == "flux1-dev.safetensors"
    assert (loaders["DualCLIPLoader"]["clip_name1"], loaders["DualCLIPLoader"]["clip_name2"],
            loaders["DualCLIPLoader"]["type"]) == ("clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "flux")
    assert loaders["VAELoader"]["vae_name"] == "ae.safetensors"
    assert loaders["KSampler"]["cfg"] == 1.0 and "FluxGuidance" in loaders


@pytest.mark.parametrize("relative_to_empty_prompt", [True, False])
def test_aesthetic_mix_takes_the_flux_text_encoders(comfy, relative_to_empty_prompt):
    """AtelierAestheticMix encodes its aesthetic with the graph's DualCLIPLoader (T5 + CLIP-L) and mixes
    it into the prompt's text values: it changes the Flux style set; strength 0 is the graph without it."""
    graph = without(on_test_bed("flux_style_aligned_set"), "4", ["1", 0])
    vanilla = sampled(comfy, graph, "9")
    mixed = copy.deepcopy(graph)
    mixed["20"] = {"class_type": "AtelierAestheticMix", "inputs": {
        "model": ["1", 0], "clip": ["2", 0], "aesthetic": "golden hour, soft light, vibrant colours",
        "strength": 0.8, "relative_to_empty_prompt": relative_to_empty_prompt, "layers": "all",
        "start_percent": 0.0, "end_percent": 1.0}}
    mixed["9"]["inputs"]["model"] = ["20", 0]
    assert_changed(sampled(comfy, mixed, "9"), vanilla, what="aesthetic mix at 0.8")
    mixed["20"]["inputs"]["strength"] = 0.0
    assert_exact(sampled(comfy, mixed, "9"), vanilla, "strength 0")
