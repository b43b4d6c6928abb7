"""The shipped Z-Image Turbo style set, run in-process as a user runs it: the graph ComfyUI's own
Z-Image template has (UNETLoader, CLIPLoader type lumina2, ModelSamplingAuraFlow 3, KSampler 8 steps
cfg 1 res_multistep) on the tiny Z-Image (scripts/tiny_models/lumina.py) and the tiny Qwen3 text
encoder (qwen3_text.py: ComfyUI's ZImageTEModel and the real Qwen tokenizer at a tiny width)."""
from __future__ import annotations

import json

import torch

from tests.comfy.test_flux_templates import sampled, without
from tests.harness.paths import WORKFLOWS_API_DIR
from tiny_models.template_swap import for_test_bed

SIZE = 128  # px: a 16 x 16 latent, 64 image tokens
NAME = "z_image_style_aligned_set"


def template() -> dict:
    return for_test_bed(json.loads((WORKFLOWS_API_DIR / f"{NAME}.json").read_text()), size=SIZE)


def test_the_template_loads_z_image_as_comfyuis_own_template_does():
    graph = json.loads((WORKFLOWS_API_DIR / f"{NAME}.json").read_text())
    by_class = {node["class_type"]: node["inputs"] for node in graph.values()}
    assert by_class["UNETLoader"]["unet_name"] == "z_image_turbo_bf16.safetensors"
    assert (by_class["CLIPLoader"]["clip_name"], by_class["CLIPLoader"]["type"]) == ("qwen_3_4b.safetensors", "lumina2")
    assert by_class["VAELoader"]["vae_name"] == "ae.safetensors"
    assert by_class["ModelSamplingAuraFlow"]["shift"] == 3.0
    sampler = by_class["KSampler"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == \
        (8, 1.0, "res_multistep", "simple")


def test_batch_prompts_encode_one_row_per_line_with_the_qwen3_encoder(comfy):
    graph = template()
    result = comfy.run_graph(graph)
    context, _ = result.output("6")[0]
    rows = len(graph["6"]["inputs"]["prompts"].splitlines())
    assert result.output("6", 1) == rows
    assert context.shape[0] == rows and context.shape[-1] == 32  # tiny Qwen3 width = the tiny Z-Image's caption width
    assert result.output("9")["samples"].shape == (rows, 16, SIZE // 8, SIZE // 8)


def test_rows_1_on_are_styled_and_row_0_is_the_graph_without_style_aligned(comfy):
    graph = template()
    styled = sampled(comfy, graph, "9")
    vanilla = sampled(comfy, without(graph, "5", ["4", 0]), "9")
    torch.testing.assert_close(styled[0], vanilla[0], rtol=0, atol=1e-5)
    for row in range(1, styled.shape[0]):
        assert (styled[row] - vanilla[row]).abs().max() > 1e-3, f"row {row} not styled"
