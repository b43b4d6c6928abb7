"""The shipped Krea 2 regional layout, run in-process as a user runs it: the graph ComfyUI's own Krea 2 Turbo
template has (UNETLoader krea2_turbo_fp8_scaled, CLIPLoader qwen3vl_4b_fp8_scaled type krea2, qwen_image_vae,
EmptyLatentImage 1024, KSampler 8 steps cfg 1 euler/simple, the negative zeroed) with the pack's box editor
(four boxes, four weight curves) and Regional Attention, on the tiny Krea 2 (scripts/tiny_models/krea2.py), the
tiny Krea 2 text encoder (krea2_text.py: ComfyUI's Krea2TEModel over its Qwen3-VL and Krea2Tokenizer, 12 taps of
width 80) and the tiny Wan 2.1 VAE (qwen_image_parts.py). Krea 2 exists in ComfyUI >= 0.24 only: on 0.3.75 the
tests that run it skip with that reason."""
from __future__ import annotations

import json

import pytest

from tests.comfy.template_graphs import (SIZE, api_twin, assert_regions_move_the_image_and_weight_0_is_vanilla,
                                         on_test_bed, sampled)
from tests.harness.paths import COMFY_DIR
from tests.tolerance import assert_changed
from tiny_models.template_swap import unsupported

NAME = "krea2_regional_layout"  # at SIZE 128 px: a 16 x 16 latent, patch 2: 64 image tokens


def test_the_template_loads_krea2_as_comfyuis_own_template_does():
    graph = api_twin(NAME)
    by_class = {node["class_type"]: node["inputs"] for node in graph.values()}
    assert by_class["UNETLoader"] == {"unet_name": "krea2_turbo_fp8_scaled.safetensors", "weight_dtype": "default"}
    assert (by_class["CLIPLoader"]["clip_name"], by_class["CLIPLoader"]["type"]) == \
        ("qwen3vl_4b_fp8_scaled.safetensors", "krea2")
    assert by_class["VAELoader"]["vae_name"] == "qwen_image_vae.safetensors"
    sampler = by_class["KSampler"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"], sampler["denoise"]) == \
        (8, 1.0, "euler", "simple", 1.0)
    assert graph[sampler["negative"][0]]["class_type"] == "ConditioningZeroOut"  # cfg 1: as Krea 2's template
    assert graph[sampler["model"][0]]["class_type"] == "AtelierRegionalAttention"
    assert (by_class["EmptyLatentImage"]["width"], by_class["EmptyLatentImage"]["height"]) == (1024, 1024)
    assert not any(node["class_type"].startswith("ModelSampling") for node in graph.values())  # none in Krea 2's


def test_four_boxes_with_a_local_prompt_and_a_weight_curve_each():
    graph = api_twin(NAME)
    boxes_node = next(node for node in graph.values() if node["class_type"] == "AtelierBoxRegions")
    assert boxes_node["inputs"]["clip"] == ["2", 0] and "regions" not in boxes_node["inputs"]  # the four are all
    layout = json.loads(boxes_node["inputs"]["regions_json"])
    assert (layout["width"], layout["height"]) == (1024, 1024)  # the editor's aspect = the latent's
    boxes = layout["boxes"]
    assert len(boxes) == 4 and all(box["prompt"].strip() and box["weight"] > 0 for box in boxes)
    assert {box["curve"] for box in boxes} == {"cosine", "linear", "step", "list"}
    listed = next(box for box in boxes if box["curve"] == "list")
    assert len(listed["weights"].split(",")) == 8  # one weight per step of the 8


@pytest.fixture(scope="module")
def krea2(comfy):
    reason = unsupported(NAME, COMFY_DIR)
    if reason:
        pytest.skip(reason)
    return comfy


def test_prompts_encode_with_the_krea2_encoder_and_the_image_decodes(krea2):
    from tiny_models.krea2 import TINY_KREA2
    graph = on_test_bed(NAME)
    result = krea2.run_graph(graph)
    context, _ = result.output("4")[0]
    width = TINY_KREA2["txtlayers"] * TINY_KREA2["txtdim"]  # 12 taps x 80: what the tiny Krea 2's adapter reads
    assert context.shape[0] == 1 and context.shape[-1] == width
    regions = result.output("6")
    assert len(regions) == 4 and all(region.cond.shape[-1] == width for region in regions)
    assert result.output("9")["samples"].shape == (1, 16, 1, SIZE // 8, SIZE // 8)  # Wan 2.1 latent, one frame
    assert result.output("10").shape == (1, SIZE, SIZE, 3)  # the Wan 2.1 VAE decodes the sampled latent


def test_regional_template_moves_the_image_and_weight_0_is_vanilla(krea2):
    assert_regions_move_the_image_and_weight_0_is_vanilla(krea2, on_test_bed(NAME), "9", "7", ["1", 0],
                                                          region=None, boxes="6")


def test_each_box_moves_the_image(krea2):
    """Every one of the four boxes acts: the layout without it differs from the layout with all four."""
    graph = on_test_bed(NAME)
    full = sampled(krea2, graph, "9")
    layout = json.loads(graph["6"]["inputs"]["regions_json"])
    for index, box in enumerate(layout["boxes"]):
        fewer = json.loads(json.dumps(graph))
        fewer["6"]["inputs"]["regions_json"] = json.dumps(dict(layout, boxes=layout["boxes"][:index] + layout["boxes"][index + 1:]))
        assert_changed(sampled(krea2, fewer, "9"), full, what=f"without box {index} ({box['prompt']})")
