"""The last two raw errors of the seeded server fuzz (ComfyUI 0.33.0), and their siblings, as clear
AtelierErrors naming node, input and fix, in a real ComfyUI (tiny SD1.5; the real tiny SDXL's CLIP where
the fuzz used it):

1. a prompt of 2,000 nested parentheses made ComfyUI's tokenizer (comfy/sd1_clip.py token_weights, one
   recursion per level) raise RecursionError under AtelierBatchPrompts' name; every text input of the
   pack now refuses more than MAX_NESTING levels, and the nodes that tokenize turn a RecursionError of the
   tokenizer into an AtelierError;
2. an SDXL CLIP's conditioning (2048 wide) sampled with an SD1.5 model (768) in StyleAligned's
   reference-image mode failed inside the pack's row insertion with torch's "Sizes of tensors must
   match"; the sampler's conditioning is now checked against the model and the reference at the first
   model call, and where model and conditioning meet in one node (AtelierInvert's prompts, the reference
   trajectory on StyleAligned, regions on AtelierRegionalAttention) at that node's execution.
"""
import dataclasses
import json

import pytest
import torch

from tests.comfy.inversion_helpers import image_latent, invert
from tests.comfy.node_inputs import LinkedValues, input_specs, io_type, valid_inputs
from tests.harness import SDXL, graphs
from tests.harness.inprocess import GraphError
from tests.pack import pack_module
from tests.tolerance import assert_changed

NESTED = "(" * 2000 + "a cat" + ")" * 2000  # the fuzz's prompt
SIZE = 64


def max_nesting() -> int:
    return pack_module("nodes.input_guard").MAX_NESTING


def nested(levels: int, word: str = "a cat") -> str:
    return "(" * levels + word + ")" * levels


def assert_names(error: Exception, node_id: str, input_name: str, *words: str):
    text = str(error)
    assert type(error).__name__ == "AtelierError", f"{type(error).__name__}: {text}"
    assert text.startswith(f"{node_id}: input '{input_name}'"), text
    assert "Fix: " in text, text
    for word in words:
        assert word in text, (word, text)


@pytest.fixture(scope="module")
def linked(comfy):
    comfy.load_nodes()
    return LinkedValues(comfy)


# ---- 1. nested parentheses ------------------------------------------------------------------------

def test_the_fuzz_prompt_in_batch_prompts_is_a_clear_error_in_a_graph(comfy):
    """As the fuzz sent it: a whole API graph, ComfyUI's validation first, then the node."""
    g = graphs.txt2img(steps=1, width=SIZE, height=SIZE, save=False)
    g["10"] = {"class_type": "AtelierBatchPrompts", "inputs": {"clip": ["1", 1], "prompts": NESTED, "style": ""}}
    g["5"]["inputs"]["positive"] = ["10", 0]
    with pytest.raises(GraphError) as caught:
        comfy.run_graph(g)
    text = str(caught.value)
    assert "AtelierBatchPrompts: input 'prompts': the text nests parentheses 2000 levels deep" in text, text
    assert "RecursionError" not in text and "maximum recursion" not in text, text


def string_inputs(comfy):
    for node_id in [n for n in comfy.pack_node_ids() if n.startswith("Atelier")]:
        for spec in input_specs(comfy, node_id):
            if io_type(spec) == "STRING":
                yield node_id, spec.id


def test_every_text_input_refuses_parentheses_nested_too_deep(comfy, linked):
    """Every text input of every node (the prompts of AtelierBatchPrompts, AtelierAestheticMix's
    aesthetic, AtelierSplitPrompt's prompt and vocabulary, AtelierBoxRegions' regions_json, ...)."""
    tried = []
    for node_id, input_name in string_inputs(comfy):
        for text in (NESTED, nested(max_nesting() + 1)):
            kwargs = valid_inputs(comfy, linked, node_id) | {input_name: text}
            with pytest.raises(Exception) as caught:
                comfy.node_class(node_id).execute(**kwargs)
            assert_names(caught.value, node_id, input_name, "nests parentheses")
        tried.append((node_id, input_name))
    assert {("AtelierBatchPrompts", "prompts"), ("AtelierAestheticMix", "aesthetic"),
            ("AtelierSplitPrompt", "prompt"), ("AtelierBoxRegions", "regions_json")} <= set(tried), tried


def test_a_box_prompt_nested_too_deep_names_regions_json(comfy, linked):
    boxes = {"width": 512, "height": 512, "boxes": [{"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.5, "prompt": NESTED}]}
    with pytest.raises(Exception) as caught:
        comfy.node_class("AtelierBoxRegions").execute(linked["CLIP"], json.dumps(boxes))
    assert_names(caught.value, "AtelierBoxRegions", "regions_json", "2000 levels deep")


def test_the_style_closing_what_a_line_opens_is_caught_in_the_joined_prompt(comfy, linked):
    """Neither text nests on its own (nothing closes the line's parentheses, nothing opens the style's);
    the prompt the tokenizer gets, line + ', ' + style, does."""
    with pytest.raises(Exception) as caught:
        comfy.node_class("AtelierBatchPrompts").execute(linked["CLIP"], "(" * 2000 + "a cat", "oil" + ")" * 2000)
    assert_names(caught.value, "AtelierBatchPrompts", "prompts", "prompt 1 (with the style appended)",
                 "2000 levels deep")


def test_weighting_as_deep_as_allowed_and_escaped_parentheses_encode(comfy, linked):
    """The limit refuses nothing ComfyUI's weighting reads sensibly: MAX_NESTING levels encode, and so do
    escaped (literal) parentheses however many."""
    node = comfy.node_class("AtelierBatchPrompts")
    deep = node.execute(linked["CLIP"], nested(max_nesting()) + "\n" + "\\(" * 40 + "a dog" + "\\)" * 40, "")
    cond = deep.result[0][0][0]
    assert cond.shape[0] == 2 and torch.isfinite(cond).all()
    plain = node.execute(linked["CLIP"], "a cat", "").result[0][0][0]
    assert_changed(cond[:1, :plain.shape[1]], plain, what="the nested weighting")


class RecursingClip:
    """A CLIP whose tokenizer hits Python's recursion limit (as ComfyUI's does on a deep call stack)."""

    def __init__(self, clip):
        self.clip = clip

    def tokenize(self, text, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    def encode_from_tokens(self, tokens, **kwargs):
        return self.clip.encode_from_tokens(tokens, **kwargs)


@pytest.mark.parametrize("node_id,input_name", [("AtelierBatchPrompts", "prompts"), ("AtelierAestheticMix", "aesthetic"),
                                                ("AtelierBoxRegions", "regions_json")])
def test_a_recursion_error_of_the_tokenizer_becomes_an_atelier_error(comfy, linked, node_id, input_name):
    kwargs = valid_inputs(comfy, linked, node_id) | {"clip": RecursingClip(linked["CLIP"])}
    with pytest.raises(Exception) as caught:
        comfy.node_class(node_id).execute(**kwargs)
    assert_names(caught.value, node_id, input_name, "recursion depth")


# ---- 2. conditioning of another width ---------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(comfy):
    sd15 = comfy.sd15
    with torch.inference_mode():  # as ComfyUI runs a node (its models may have been loaded so by a graph)
        return invert(comfy, sd15.model, image_latent(sd15, SIZE), steps=2, cfg=2.0, refine=0,
                      positive=comfy.encode(sd15.clip, "hills"), negative=comfy.encode(sd15.clip, ""))[1]


@pytest.fixture(scope="module")
def sdxl_prompts(comfy):
    """The prompts as the fuzz made them: encoded by the tiny SDXL's real CLIP-L + CLIP-G (2048 wide)."""
    clip = comfy.checkpoint(SDXL).clip
    return comfy.encode(clip, "a red house"), comfy.encode(clip, "")


def style_aligned(comfy, model, reference):
    return comfy.node_class("AtelierStyleAligned").execute(
        model, True, True, True, False, False, 1.0, 0.0, "all", 0.0, 0.0, 1.0, reference=reference).result[0]


def test_sdxl_prompts_sampled_in_reference_mode_on_sd15_are_a_clear_error(comfy, reference, sdxl_prompts):
    assert sdxl_prompts[0][0][0].shape[-1] == 2048
    model = style_aligned(comfy, comfy.sd15.model, reference)
    with pytest.raises(Exception) as caught:
        comfy.sample(model, *sdxl_prompts, steps=2, cfg=2.0, width=SIZE, height=SIZE, batch=2)
    assert_names(caught.value, "AtelierStyleAligned", "reference", "2048 wide", "768-wide",
                 "with the CLIP of the model's own checkpoint")
    assert "Sizes of tensors" not in str(caught.value)


def with_conds_of_width(trajectory, width: int):
    conds = {kind: dataclasses.replace(c, c_crossattn=torch.zeros(1, 77, width)) for kind, c in trajectory.conds.items()}
    return dataclasses.replace(trajectory, conds=conds)


def test_a_reference_inverted_with_other_prompts_is_refused_when_the_node_runs(comfy, reference):
    with pytest.raises(Exception) as caught:
        style_aligned(comfy, comfy.sd15.model, with_conds_of_width(reference, 2048))
    assert_names(caught.value, "AtelierStyleAligned", "reference", "prompt the reference was inverted with",
                 "2048 wide", "768-wide")


def test_the_model_call_says_which_side_differs_when_the_reference_is_the_odd_one(comfy, reference):
    """A reference row attached without the node's check (another pack reusing the wrapper): the first
    model call refuses it before torch.cat, naming the reference's width, not the sampler's."""
    import comfy.patcher_extension as ext
    reference_module, keys = pack_module("inversion.reference"), pack_module("attention.core.keys")
    model = style_aligned(comfy, comfy.sd15.model, reference)
    model.remove_wrappers_with_key(ext.WrappersMP.APPLY_MODEL, keys.REFERENCE_KEY)
    model.add_wrapper_with_key(ext.WrappersMP.APPLY_MODEL, keys.REFERENCE_KEY,
                               reference_module.ReferenceRows(with_conds_of_width(reference, 1024),
                                                              node="AtelierStyleAligned"))
    sd15 = comfy.sd15
    with pytest.raises(Exception) as caught:
        comfy.sample(model, comfy.encode(sd15.clip, "a house"), comfy.encode(sd15.clip, ""), steps=1, cfg=2.0,
                     width=SIZE, height=SIZE, batch=1)
    assert_names(caught.value, "AtelierStyleAligned", "reference", "inverted with 1024-wide", "sampler's is 768 wide")


@pytest.mark.parametrize("input_name", ["positive", "negative"])
def test_invert_refuses_prompts_of_another_width_before_any_model_call(comfy, sdxl_prompts, input_name):
    sd15 = comfy.sd15
    prompts = {"positive": comfy.encode(sd15.clip, "hills"), "negative": comfy.encode(sd15.clip, "")}
    prompts[input_name] = sdxl_prompts[0]
    with pytest.raises(Exception) as caught, torch.inference_mode():
        invert(comfy, sd15.model, image_latent(sd15, SIZE), steps=1, **prompts)
    assert_names(caught.value, "AtelierInvert", input_name, "2048 wide", "768-wide")


def test_regional_attention_refuses_a_local_prompt_of_another_width_when_it_runs(comfy, linked, sdxl_prompts):
    regions = comfy.node_class("AtelierRegion").execute(
        sdxl_prompts[0], 0.1, 0.1, 0.5, 0.5, 1.0, "constant", 0.0, 0.5, "1").result[0]
    kwargs = valid_inputs(comfy, linked, "AtelierRegionalAttention") | {"regions": linked["ATELIER_REGIONS"] + regions}
    with pytest.raises(Exception) as caught:
        comfy.node_class("AtelierRegionalAttention").execute(**kwargs)
    assert_names(caught.value, "AtelierRegionalAttention", "regions", "region 2 (from AtelierRegion)",
                 "2048-wide local prompt", "768-wide")


def test_prompts_of_the_right_width_pass_every_new_check(comfy, linked, reference):
    """The checks refuse only what cannot run: the same graph with SD1.5 prompts samples to finite latents."""
    sd15 = comfy.sd15
    model = style_aligned(comfy, sd15.model, reference)
    model = comfy.node_class("AtelierRegionalAttention").execute(
        model, linked["ATELIER_REGIONS"], "all", 0.0, 1.0).result[0]
    out = comfy.sample(model, comfy.encode(sd15.clip, "a house"), comfy.encode(sd15.clip, ""), steps=1, cfg=2.0,
                       width=SIZE, height=SIZE, batch=2)
    assert out.shape[0] == 2 and torch.isfinite(out).all()
