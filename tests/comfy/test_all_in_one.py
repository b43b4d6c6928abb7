"""The all_in_one workflow: LoRA, ControlNet, StyleAligned from a reference image, an image prompt,
regional prompts and aesthetic mixing in one graph. Every one of them acts in that run (taking it out
changes the latent), and reordering the Atelier patch chain keeps every patch acting."""
import pytest
import torch

from tests.comfy import all_in_one_graph as aio
from tests.tolerance import assert_changed

STEPS = 2  # the shipped graph samples 6 steps; 2 keep the many runs of this file cheap


def quick(graph: dict) -> dict:
    graph[aio.KSAMPLER]["inputs"]["steps"] = STEPS
    invert = [n for n in graph.values() if n["class_type"] == "AtelierInvert"][0]
    invert["inputs"].update(steps=STEPS, refine_iterations=0)
    return graph


@pytest.fixture(scope="module")
def run(comfy):
    executor = comfy.new_executor()  # keeps ComfyUI's output cache: loaders, encoders, inversion run once

    def latent_of(graph: dict) -> torch.Tensor:
        return comfy.run_graph(graph, executor=executor).output(aio.KSAMPLER)["samples"]
    return latent_of


@pytest.fixture(scope="module")
def graph():
    return quick(aio.load())


@pytest.fixture(scope="module")
def full(run, graph):
    latent = run(graph)
    assert latent.shape == (1, 4, 32, 32) and torch.isfinite(latent).all()
    return latent


def class_of(comfy, graph, node_id):
    return comfy.node_class(graph[node_id]["class_type"])


def test_graph_holds_every_control_and_the_chain_feeds_the_sampler(graph):
    kinds = {graph[i]["class_type"] for i in aio.CONTROLS}
    assert kinds == {"LoraLoader", "ControlNetApplyAdvanced", "AtelierStyleAligned", "AtelierImagePrompt",
                     "AtelierRegionalAttention", "AtelierAestheticMix"}
    assert graph[aio.KSAMPLER]["inputs"]["model"] == [aio.PATCH_CHAIN[-1], 0]
    assert graph["10"]["inputs"]["reference"][0] == "9"  # StyleAligned in reference-image mode
    for earlier, later in zip(aio.PATCH_CHAIN, aio.PATCH_CHAIN[1:]):
        assert graph[later]["inputs"]["model"] == [earlier, 0]


@pytest.mark.parametrize("node_id", list(aio.CONTROLS), ids=list(aio.CONTROLS.values()))
def test_every_control_acts(comfy, run, graph, full, node_id):
    removed = aio.without(graph, node_id, class_of(comfy, graph, node_id))
    assert node_id not in removed
    assert_changed(run(removed), full, what=f"taking out {aio.CONTROLS[node_id]}")


@pytest.mark.parametrize("order", [tuple(reversed(aio.PATCH_CHAIN))], ids=["reversed"])  # every patch moves
def test_every_patch_acts_in_another_chain_order(comfy, run, graph, order):
    reordered = aio.with_chain_order(graph, order)
    assert reordered[aio.KSAMPLER]["inputs"]["model"] == [order[-1], 0]
    latent = run(reordered)
    assert torch.isfinite(latent).all()
    for node_id in order:
        assert_changed(run(aio.without(reordered, node_id, class_of(comfy, graph, node_id))), latent,
                       what=f"in order {order}, taking out {aio.CONTROLS[node_id]}")


def test_without_atelier_nodes_is_lora_and_controlnet_only(comfy, run, graph, full):
    plain = aio.without_atelier_nodes(graph)
    assert not [n for n in plain.values() if n["class_type"] in
                ("AtelierStyleAligned", "AtelierImagePrompt", "AtelierRegionalAttention", "AtelierAestheticMix")]
    assert_changed(run(plain), full, what="taking out every Atelier node")
