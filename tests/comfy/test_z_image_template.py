"""The shipped Z-Image Turbo style set, run in-process as a user runs it: the graph ComfyUI's own
Z-Image template has (UNETLoader, CLIPLoader type lumina2, ModelSamplingAuraFlow 3, KSampler 8 steps
cfg 1 res_multistep) on the tiny Z-Image (scripts/tiny_models/lumina.py) and the tiny Qwen3 text
encoder (qwen3_text.py: ComfyUI's ZImageTEModel and the real Qwen tokenizer at a tiny width)."""
from __future__ import annotations

from tests.comfy.template_graphs import SIZE, assert_rows_1_on_styled_and_row_0_vanilla, inputs_by_class, on_test_bed

NAME = "z_image_style_aligned_set"  # at SIZE 128 px: a 16 x 16 latent, 64 image tokens


def test_the_template_loads_z_image_as_comfyuis_own_template_does():
    by_class = inputs_by_class(NAME)
    assert by_class["UNETLoader"]["unet_name"] == "z_image_turbo_bf16.safetensors"
    assert (by_class["CLIPLoader"]["clip_name"], by_class["CLIPLoader"]["type"]) == ("qwen_3_4b.safetensors", "lumina2")
    assert by_class["VAELoader"]["vae_name"] == "ae.safetensors"
    assert by_class["ModelSamplingAuraFlow"]["shift"] == 3.0
    sampler = by_class["KSampler"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == \
        (8, 1.0, "res_multistep", "simple")


def test_batch_prompts_encode_one_row_per_line_with_the_qwen3_encoder(comfy):
    graph = on_test_bed(NAME)
    result = comfy.run_graph(graph)
    context, _ = result.output("6")[0]
    rows = len(graph["6"]["inputs"]["prompts"].splitlines())
    assert result.output("6", 1) == rows
    assert context.shape[0] == rows and context.shape[-1] == 32  # tiny Qwen3 width = the tiny Z-Image's caption width
    assert result.output("9")["samples"].shape == (rows, 16, SIZE // 8, SIZE // 8)


def test_rows_1_on_are_styled_and_row_0_is_the_graph_without_style_aligned(comfy):
    assert_rows_1_on_styled_and_row_0_vanilla(comfy, on_test_bed(NAME), "9", "5", ["4", 0])
