"""The shipped FLUX.2 klein style set, run in-process as a user runs it: the graph ComfyUI's own FLUX.2
klein template has (UNETLoader flux-2-klein-4b, CLIPLoader qwen_3_4b type flux2, flux2-vae, RandomNoise,
CFGGuider cfg 1, KSamplerSelect euler, Flux2Scheduler 4 steps, SamplerCustomAdvanced) on the tiny FLUX.2
(scripts/tiny_models/flux2.py: klein layout, its VAE) and the tiny klein text encoder (qwen3_text.py:
ComfyUI's Flux2TEModel over its klein Qwen3 and KleinTokenizer, three stacked layers of width 16).
Klein exists in ComfyUI 0.33.0 only: on 0.3.75 the module is skipped with that reason."""
from __future__ import annotations

import pytest

from tests.comfy.template_graphs import SIZE, api_twin, assert_rows_1_on_styled_and_row_0_vanilla, on_test_bed
from tests.harness.paths import COMFY_DIR
from tiny_models.template_swap import unsupported

NAME = "flux2_klein_style_aligned_set"  # at SIZE 128 px: an 8 x 8 FLUX.2 latent (16 px per position), 64 image tokens


def test_the_template_loads_klein_as_comfyuis_own_template_does():
    graph = api_twin(NAME)
    by_class = {node["class_type"]: node["inputs"] for node in graph.values()}
    assert by_class["UNETLoader"]["unet_name"] == "flux-2-klein-4b.safetensors"
    assert (by_class["CLIPLoader"]["clip_name"], by_class["CLIPLoader"]["type"]) == ("qwen_3_4b.safetensors", "flux2")
    assert by_class["VAELoader"]["vae_name"] == "flux2-vae.safetensors"
    assert by_class["CFGGuider"]["cfg"] == 1.0 and by_class["KSamplerSelect"]["sampler_name"] == "euler"
    assert by_class["Flux2Scheduler"]["steps"] == 4
    for size_node in ("Flux2Scheduler", "EmptyFlux2LatentImage"):
        assert (by_class[size_node]["width"], by_class[size_node]["height"]) == (1024, 1024)
    assert graph[by_class["CFGGuider"]["negative"][0]]["class_type"] == "ConditioningZeroOut"
    assert "SamplerCustomAdvanced" in by_class and "RandomNoise" in by_class


@pytest.fixture(scope="module")
def klein(comfy):
    reason = unsupported(NAME, COMFY_DIR)
    if reason:
        pytest.skip(reason)
    return comfy


def test_batch_prompts_encode_one_row_per_line_with_the_klein_encoder(klein):
    graph = on_test_bed(NAME)
    result = klein.run_graph(graph)
    context, _ = result.output("5")[0]
    rows = len(graph["5"]["inputs"]["prompts"].splitlines())
    assert result.output("5", 1) == rows
    assert context.shape[0] == rows and context.shape[-1] == 48  # 3 stacked layers x 16 = the tiny FLUX.2's context_in_dim
    assert result.output("12")["samples"].shape == (rows, 128, SIZE // 16, SIZE // 16)
    assert result.output("13").shape == (rows, SIZE, SIZE, 3)  # the FLUX.2 VAE decodes at 16 px per position


def test_rows_1_on_are_styled_and_row_0_is_the_graph_without_style_aligned(klein):
    assert_rows_1_on_styled_and_row_0_vanilla(klein, on_test_bed(NAME), "12", "4", ["1", 0])
