"""Surgery on the all_in_one API graph: take a node out by wiring around it, reorder the patch chain."""
from __future__ import annotations

import copy
import json

from tests.harness.paths import WORKFLOWS_API_DIR
from tiny_models.template_swap import for_test_bed

PATH = WORKFLOWS_API_DIR / "all_in_one.json"
KSAMPLER = "22"
# every control the graph composes: node id -> what it is
CONTROLS = {"2": "LoRA", "20": "ControlNet", "10": "StyleAligned (reference image)", "15": "Image prompt",
            "17": "Regional attention", "18": "Aesthetic mix"}
# the Atelier MODEL patches, in graph order (first = outermost on the control stack)
PATCH_CHAIN = ("10", "15", "17", "18")


def load() -> dict:
    """The shipped graph on the test bed's tiny models and pictures (256 px)."""
    return for_test_bed(json.loads(PATH.read_text()))


def links_of(node: dict) -> dict:
    return {name: value for name, value in node["inputs"].items()
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)}


def pass_through(graph: dict, node_id: str, return_names: tuple) -> dict:
    """For each output slot of a node, the input link it passes on: the input of the same name
    (LoraLoader: MODEL -> model, CLIP -> clip; ControlNetApplyAdvanced: positive, negative)."""
    linked = {name.lower(): value for name, value in links_of(graph[node_id]).items()}
    mapping = {}
    for slot, name in enumerate(return_names):
        if name.lower() not in linked:
            raise ValueError(f"cannot wire around node {node_id}: output {name} has no input of that name")
        mapping[slot] = linked[name.lower()]
    return mapping


def without(graph: dict, node_id: str, node_class) -> dict:
    """The graph with ``node_id`` removed and every consumer of its outputs wired to what it received."""
    names = tuple(getattr(node_class, "RETURN_NAMES", None) or node_class.RETURN_TYPES)
    mapping = pass_through(graph, node_id, names)
    out = copy.deepcopy(graph)
    del out[node_id]
    for node in out.values():
        for name, (src, slot) in links_of(node).items():
            if src == node_id:
                node["inputs"][name] = list(mapping[slot])
    return out


def with_chain_order(graph: dict, order: tuple, consumer: str = KSAMPLER) -> dict:
    """The graph with the MODEL-patch nodes ``order`` chained in that order (first fed by what fed
    the chain before), the last one feeding ``consumer``."""
    out = copy.deepcopy(graph)
    head = graph[PATCH_CHAIN[0]]["inputs"]["model"]
    previous = list(head)
    for node_id in order:
        out[node_id]["inputs"]["model"] = previous
        previous = [node_id, 0]
    out[consumer]["inputs"]["model"] = previous
    return out


def without_atelier_nodes(graph: dict) -> dict:
    """The same graph with every Atelier model patch taken out (LoRA and ControlNet kept)."""
    out = copy.deepcopy(graph)
    head = out[PATCH_CHAIN[0]]["inputs"]["model"]
    for node_id in PATCH_CHAIN:
        del out[node_id]
    out[KSAMPLER]["inputs"]["model"] = list(head)
    return out
