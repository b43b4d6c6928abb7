"""Every input of every Atelier node refuses what it cannot use with an AtelierError that names the
node, the input and a fix (never a raw Python error, never silently): non-finite numbers, values of
the wrong JSON type, combo values outside the options, literals where a link belongs, lone
surrogates in text. Node by node through execute (as ComfyUI calls it), and the review's cases
through whole graphs, where ComfyUI's own validation runs first."""
import math

import pytest

from tests.comfy.node_inputs import LinkedValues, input_specs, io_type, valid_inputs
from tests.harness import graphs
from tests.harness.inprocess import GraphError
from tests.pack import pack_module

NOT_FINITE = (math.nan, math.inf, -math.inf)
BAD_BY_TYPE = {
    "FLOAT": NOT_FINITE + ("abc", "0.5", [1, 2], True, {"a": 1}, 1e300),
    "INT": (2.5, "3", math.nan, math.inf, [1, 2], False, 10 ** 12),
    "BOOLEAN": ("yes", 1, 0.0, [True], {"x": True}),
    "STRING": (5, 2.5, ["a"], {"text": "a"}, True, "a\ud800b", "\udfff"),
    "COMBO": ("bogus", 3, 2.5, True, ["constant"], {"v": 1}),
}
LINKED_BAD = ("a string", 7, 2.5, [1], {"samples": "x"}, True)


@pytest.fixture(scope="module")
def linked(comfy):
    comfy.load_nodes()
    return LinkedValues(comfy)


def pack_nodes(comfy):
    return [n for n in comfy.pack_node_ids() if n.startswith("Atelier")]


def cases(comfy):
    for node_id in pack_nodes(comfy):
        for spec in input_specs(comfy, node_id):
            kind = "COMBO" if getattr(spec, "options", None) is not None else io_type(spec)
            for bad in BAD_BY_TYPE.get(kind, LINKED_BAD):
                yield node_id, spec, bad
            if not spec.optional and kind != "CLIP":
                yield node_id, spec, None


def assert_names(error: Exception, node_id: str, input_name: str):
    text = str(error)
    assert type(error).__name__ == "AtelierError", f"{type(error).__name__}: {text}"
    assert text.startswith(f"{node_id}: input '{input_name}'"), text
    assert "Fix: " in text, text


def test_every_input_of_every_node_refuses_bad_values_by_name(comfy, linked):
    tried = 0
    for node_id, spec, bad in cases(comfy):
        kwargs = valid_inputs(comfy, linked, node_id)
        kwargs[spec.id] = bad
        with pytest.raises(Exception) as caught:
            comfy.node_class(node_id).execute(**kwargs)
        assert_names(caught.value, node_id, spec.id)
        tried += 1
    assert tried > 300


CHEAP = {"AtelierInvert": {"steps": 1, "refine_iterations": 0}}  # the defaults run 60 model calls


def test_every_node_accepts_its_defaults(comfy, linked):
    for node_id in pack_nodes(comfy):
        for optional in (False, True):
            kwargs = valid_inputs(comfy, linked, node_id, optional) | CHEAP.get(node_id, {})
            output = comfy.node_class(node_id).execute(**kwargs)
            assert output.result is not None, node_id


def test_floats_outside_the_schema_range_are_refused_in_process(comfy, linked):
    """ComfyUI's validation checks min/max only for graphs; a direct execute must not slip past."""
    kwargs = valid_inputs(comfy, linked, "AtelierStyleAligned")
    kwargs["unshared_fraction"] = 1.5
    with pytest.raises(Exception) as caught:
        comfy.node_class("AtelierStyleAligned").execute(**kwargs)
    assert_names(caught.value, "AtelierStyleAligned", "unshared_fraction")
    assert "outside 0.0..1.0" in str(caught.value)


def test_whole_floats_and_ints_are_accepted_as_numbers(comfy, linked):
    kwargs = valid_inputs(comfy, linked, "AtelierInvert")
    kwargs.update(cfg=1, steps=1.0, refine_iterations=0)
    comfy.node_class("AtelierInvert").execute(**kwargs)


# ---- the review's cases, through whole graphs (ComfyUI validation, then the node) ------------------

def style_aligned_graph(**overrides) -> dict:
    g = graphs.txt2img(steps=1, width=64, height=64, batch=2, save=False)
    inputs = {"model": ["1", 0], "share_attention": True, "adain_queries": True, "adain_keys": True,
              "adain_values": False, "share_group_norm": False, "shared_score_scale": 1.0,
              "shared_score_shift": 0.0, "layers": "all", "unshared_fraction": 0.0, "start_percent": 0.0,
              "end_percent": 1.0}
    inputs.update(overrides)
    g["10"] = {"class_type": "AtelierStyleAligned", "inputs": inputs}
    g["5"]["inputs"]["model"] = ["10", 0]
    return g


def invert_graph(**overrides) -> dict:
    g = graphs.txt2img(steps=1, width=64, height=64, save=False)
    inputs = {"model": ["1", 0], "latent": ["4", 0], "steps": 1, "cfg": 1.0, "scheduler": "normal",
              "refine_iterations": 0}
    inputs.update(overrides)
    g["10"] = {"class_type": "AtelierInvert", "inputs": inputs}
    g["5"]["inputs"]["latent_image"] = ["10", 0]
    return g


def refusal(comfy, graph) -> str:
    """The text ComfyUI reports for a refused graph (validation or execution)."""
    with pytest.raises(GraphError) as caught:
        comfy.run_graph(graph)
    return str(caught.value)


@pytest.mark.parametrize("name,value", [("end_percent", math.nan), ("unshared_fraction", math.nan),
                                        ("shared_score_scale", math.nan), ("shared_score_shift", math.nan)])
def test_style_aligned_graph_refuses_nan_that_passes_comfyui_min_max(comfy, name, value):
    text = refusal(comfy, style_aligned_graph(**{name: value}))
    assert f"AtelierStyleAligned: input '{name}'" in text, text


def test_style_aligned_graph_refuses_a_literal_where_the_model_link_belongs(comfy):
    text = refusal(comfy, style_aligned_graph(model="model.safetensors"))
    assert "AtelierStyleAligned: input 'model'" in text or "invalid prompt" in text, text
    assert "get_model_object" not in text, text


@pytest.mark.parametrize("name,value", [("scheduler", "bogus"), ("scheduler", 3), ("cfg", math.nan)])
def test_invert_graph_refuses_bad_values(comfy, name, value):
    text = refusal(comfy, invert_graph(**{name: value}))
    assert ("AtelierInvert: input '%s'" % name) in text or "invalid prompt" in text, text
    assert "error invalid scheduler" not in text, text


def test_ip_adapter_loader_refuses_a_number_as_file_name(comfy):
    with pytest.raises(Exception) as caught:
        comfy.node_class("AtelierIPAdapterLoader").execute(7)
    assert_names(caught.value, "AtelierIPAdapterLoader", "ipadapter_name")


# ---- layers that the model lacks ------------------------------------------------------------------

LAYER_NODES = ("AtelierStyleAligned", "AtelierAestheticMix", "AtelierImagePrompt", "AtelierArtBN",
               "AtelierRegionalAttention")


@pytest.mark.parametrize("node_id", LAYER_NODES)
@pytest.mark.parametrize("layers", ["input.99", "input.0", "input.4, output.3.5"])
def test_a_layer_selection_the_model_lacks_is_refused_with_its_layer_names(comfy, linked, node_id, layers):
    kwargs = valid_inputs(comfy, linked, node_id) | {"layers": layers}
    with pytest.raises(Exception) as caught:
        comfy.node_class(node_id).execute(**kwargs)
    assert_names(caught.value, node_id, "layers")
    text = str(caught.value)
    assert "matches no attention layer of this model" in text
    keys = pack_module("attention.dispatch.dispatcher").layer_keys(comfy.sd15.model.get_model_object("diffusion_model"))
    assert "one of this model's layers: " + ", ".join(".".join(map(str, k)) for k in keys) in text


def test_a_superscript_digit_is_a_clear_layers_error(comfy, linked):
    kwargs = valid_inputs(comfy, linked, "AtelierStyleAligned") | {"layers": "input.\u00b2"}
    with pytest.raises(Exception) as caught:
        comfy.node_class("AtelierStyleAligned").execute(**kwargs)
    assert_names(caught.value, "AtelierStyleAligned", "layers")
    assert "is not a layer selection" in str(caught.value)

