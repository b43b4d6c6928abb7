"""unshared_fraction on a real ComfyUI model: the layers it leaves unshared are the ones the official
StyleAligned rule picks when the model's self-attention layers are counted in diffusers' order. The
diffusers name of each layer comes from ComfyUI's own key map (comfy.utils.unet_to_diffusers), not
from the pack, and the rule is the independent transcription of tests/unit/test_only_self_level.py."""
import re

import pytest

from tests.pack import pack_module
from tests.unit.test_only_self_level import FRACTIONS, official_switch

LAYER = re.compile(r"^(down_blocks|up_blocks|mid_block)\.(?:(\d+)\.)?attentions\.(\d+)\.transformer_blocks\.(\d+)"
                   r"\.attn1\.to_q\.weight$")
COMFY = re.compile(r"^(input_blocks|middle_block|output_blocks)\.(?:(\d+)\.)?\d+\.transformer_blocks\.(\d+)\.attn1")


def diffusers_order(model) -> list:
    """(diffusers name, ComfyUI key) of every self-attention layer, in diffusers' attn_processors order:
    down blocks, up blocks, then the mid block; numerically within each."""
    import comfy.utils
    key_map = comfy.utils.unet_to_diffusers(model.model.model_config.unet_config)
    layers = []
    for name, comfy_name in key_map.items():
        found = LAYER.match(name)
        if not found:
            continue
        kind, block, attention, t = found.groups()
        where = COMFY.match(comfy_name)
        key = ({"input_blocks": "input", "middle_block": "middle", "output_blocks": "output"}[where.group(1)],
               int(where.group(2) or 0), int(where.group(3)))
        rank = {"down_blocks": 0, "up_blocks": 1, "mid_block": 2}[kind]
        layers.append(((rank, int(block or 0), int(attention), int(t)), key))
    return [key for _, key in sorted(layers)]


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_unshared_layers_match_the_official_rule_on_the_tiny_sd15(comfy, fraction):
    model = comfy.sd15.model
    dispatcher, layers = pack_module("attention.dispatch.dispatcher"), pack_module("attention.core.layers")
    execution = list(dispatcher.layer_keys(model.get_model_object("diffusion_model")))
    ordered = diffusers_order(model)
    assert sorted(ordered) == sorted(execution) and ordered != execution
    try:
        switch = official_switch(len(ordered), fraction)
        expected = {key for key, off in zip(ordered, switch) if not off}
    except ZeroDivisionError:  # the official code crashes; the pack's documented limit
        expected = set(execution) if fraction < 0.5 else set()
    assert layers.LayerSelection((), fraction).resolve(execution) == expected
