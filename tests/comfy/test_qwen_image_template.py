"""The shipped Qwen-Image regional layout, run in-process as a user runs it: the graph ComfyUI's own
Qwen-Image template has (UNETLoader, CLIPLoader type qwen_image, ModelSamplingAuraFlow 3.5, KSampler 20
steps cfg 4 euler/simple with a negative prompt) on the tiny Qwen-Image (scripts/tiny_models/qwen_image.py),
the tiny Qwen2.5-VL text encoder and the tiny Wan 2.1 VAE (qwen_image_parts.py: ComfyUI's QwenImageTEModel
and the real Qwen tokenizer at width 32; ComfyUI's WanVAE). ComfyUI 0.3.75 and 0.33.0."""
from __future__ import annotations

import json

from tests.comfy.template_graphs import (SIZE, api_twin, assert_regions_move_the_image_and_weight_0_is_vanilla,
                                         on_test_bed)

NAME = "qwen_image_regional_layout"  # at SIZE 128 px: a 16 x 16 latent, 64 image tokens


def test_the_template_loads_qwen_image_as_comfyuis_own_template_does():
    graph = api_twin(NAME)
    by_class = {node["class_type"]: node["inputs"] for node in graph.values()}
    assert by_class["UNETLoader"]["unet_name"] == "qwen_image_fp8_e4m3fn.safetensors"
    assert (by_class["CLIPLoader"]["clip_name"], by_class["CLIPLoader"]["type"]) == \
        ("qwen_2.5_vl_7b_fp8_scaled.safetensors", "qwen_image")
    assert by_class["VAELoader"]["vae_name"] == "qwen_image_vae.safetensors"
    assert by_class["ModelSamplingAuraFlow"]["shift"] == 3.5
    sampler = by_class["KSampler"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == (20, 4.0, "euler", "simple")
    assert graph[sampler["negative"][0]]["class_type"] == "CLIPTextEncode"  # cfg 4: a real negative prompt
    assert (by_class["EmptySD3LatentImage"]["width"], by_class["EmptySD3LatentImage"]["height"]) == (1328, 1328)
    assert json.loads(graph["9"]["inputs"]["regions_json"])["width"] == 1328  # the editor's aspect = the latent's


def test_prompts_encode_with_the_qwen25vl_encoder_and_the_image_decodes(comfy):
    graph = on_test_bed(NAME)
    result = comfy.run_graph(graph)
    context, _ = result.output("5")[0]
    assert context.shape[0] == 1 and context.shape[-1] == 32  # tiny Qwen2.5-VL width = the tiny Qwen-Image's text width
    assert result.output("13").shape == (1, SIZE, SIZE, 3)  # the Wan 2.1 VAE decodes the sampled latent


def test_regional_template_moves_the_image_and_weight_0_is_vanilla(comfy):
    assert_regions_move_the_image_and_weight_0_is_vanilla(comfy, on_test_bed(NAME), "12", "10", ["4", 0])
