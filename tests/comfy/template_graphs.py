"""Shipped templates as the in-process template tests use them: the API twin as shipped and on the test
bed's tiny models, a graph with one patch node wired around, and the two checks every family's template
is held to (StyleAligned: row 0 is the graph without it, every other row is styled; regions: the layout
moves the image and weight 0 everywhere is the graph without it)."""
from __future__ import annotations

import copy
import json

import torch

from tests.harness.paths import WORKFLOWS_API_DIR
from tests.tolerance import SAMPLING, assert_changed, assert_close, assert_exact
from tiny_models.template_swap import for_test_bed

SIZE = 128  # px


def api_twin(name: str) -> dict:
    """The API workflow as shipped (the public file names and sampler settings a user gets)."""
    return json.loads((WORKFLOWS_API_DIR / f"{name}.json").read_text())


def inputs_by_class(name: str) -> dict:
    """class_type -> inputs of the shipped API twin (each class once in these templates)."""
    return {node["class_type"]: node["inputs"] for node in api_twin(name).values()}


def on_test_bed(name: str, size: int = SIZE) -> dict:
    """The API twin with the test bed's tiny models at ``size`` px."""
    return for_test_bed(api_twin(name), size=size)


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


def every_region_weight_zero(graph: dict, region: str | None = "8", boxes: str = "9") -> dict:
    """A copy of a regional-layout template with the chained region's (``region``; None: there is none) and
    every box's weights at 0 (a list curve's list too)."""
    zero = copy.deepcopy(graph)
    if region is not None:
        zero[region]["inputs"].update(weight=0.0, end_weight=0.0, weights="0")
    layout = json.loads(zero[boxes]["inputs"]["regions_json"])
    for box in layout["boxes"]:
        box.update(weight=0.0, end_weight=0.0)
        if "weights" in box:
            box["weights"] = "0"
    zero[boxes]["inputs"]["regions_json"] = json.dumps(layout)
    return zero


def assert_rows_1_on_styled_and_row_0_vanilla(comfy, graph: dict, sampler: str, style_aligned: str, model_from):
    """Row 0 (the style reference) is the graph without the StyleAligned node; every other row differs."""
    styled = sampled(comfy, graph, sampler)
    vanilla = sampled(comfy, without(graph, style_aligned, model_from), sampler)
    assert_close(styled[0], vanilla[0], ulps=SAMPLING, what="reference row 0")
    for row in range(1, styled.shape[0]):
        assert_changed(styled[row], vanilla[row], what=f"row {row} (styled)")


def assert_regions_move_the_image_and_weight_0_is_vanilla(comfy, graph: dict, sampler: str, regional: str,
                                                          model_from, region: str | None = "8", boxes: str = "9"):
    """The regional layout changes the sample (tests/tolerance.py's EFFECT); with every region's weight at 0
    it is the graph without it, bit for bit."""
    vanilla = sampled(comfy, without(graph, regional, model_from), sampler)
    assert_changed(sampled(comfy, graph, sampler), vanilla, what="the regional layout")
    assert_exact(sampled(comfy, every_region_weight_zero(graph, region, boxes), sampler), vanilla,
                 "every region's weight 0")
