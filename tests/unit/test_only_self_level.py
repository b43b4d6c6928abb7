"""unshared_fraction picks exactly the self-attention layers the official StyleAligned leaves unshared
for a given only_self_level, on SD1.5 (16 layers) and SDXL (70 layers).

The reference below is an independent transcription of the official rule (google/style-aligned,
sa_handler.py: _get_switch_vec and init_attention_processors), written with diffusers' own layer
names: the UNet's attn_processors are listed down blocks, up blocks, then the mid block (the order
diffusers registers them), attn1 and attn2 alternate, and self-attention layer j (the j-th attn1) is
left unshared when switch[j] is set. Each diffusers name is then translated to ComfyUI's key
(block kind, block id, transformer index) by the architectures' published block layout."""
import pytest

from tests.pack import pack_module

layers = pack_module("attention.core.layers")
errors = pack_module("attention.core.errors")
UNET_BLOCKS = ("input", "middle", "output")

FRACTIONS = [round(0.05 * i, 2) for i in range(1, 20)] + [0.98, 0.99]  # 21 fractions in 0.05..0.99

# (down block, attentions per block, transformer depth) with cross-attention; (up block, ...); mid depth
SD15 = {"down": [(0, 2, 1), (1, 2, 1), (2, 2, 1)], "up": [(1, 3, 1), (2, 3, 1), (3, 3, 1)], "mid": 1}
SDXL = {"down": [(1, 2, 2), (2, 2, 10)], "up": [(0, 3, 10), (1, 3, 2)], "mid": 10}


def diffusers_processor_names(arch) -> list[str]:
    names = []
    for block, attentions, depth in arch["down"]:
        for a in range(attentions):
            for t in range(depth):
                base = f"down_blocks.{block}.attentions.{a}.transformer_blocks.{t}"
                names += [f"{base}.attn1.processor", f"{base}.attn2.processor"]
    for block, attentions, depth in arch["up"]:
        for a in range(attentions):
            for t in range(depth):
                base = f"up_blocks.{block}.attentions.{a}.transformer_blocks.{t}"
                names += [f"{base}.attn1.processor", f"{base}.attn2.processor"]
    for t in range(arch["mid"]):
        base = f"mid_block.attentions.0.transformer_blocks.{t}"
        names += [f"{base}.attn1.processor", f"{base}.attn2.processor"]
    return names


def comfy_key(name: str) -> tuple:
    """diffusers down_blocks.b.attentions.a -> ComfyUI input block 3b + a + 1; up_blocks.b.attentions.a
    -> output block 3b + a; the mid block -> middle 0 (UNets with 2 resnets per down / 3 per up block)."""
    parts = name.split(".")
    t = int(parts[parts.index("transformer_blocks") + 1])
    if parts[0] == "mid_block":
        return ("middle", 0, t)
    block, attention = int(parts[1]), int(parts[3])
    if parts[0] == "down_blocks":
        return ("input", 3 * block + attention + 1, t)
    return ("output", 3 * block + attention, t)


def official_switch(total: int, level: float) -> list:
    """_get_switch_vec transcribed: True = this self-attention layer keeps the default processor."""
    if level == 0:
        return [False] * total
    if level == 1:
        return [True] * total
    flip = level > 0.5
    if flip:
        level = 1 - level
    switched = int(level * total)
    every = total // switched  # ZeroDivisionError where the official code crashes
    vec = [i % every == 0 for i in range(total)]
    return [not v for v in vec] if flip else vec


def official_shared_keys(arch, level: float) -> set:
    names = diffusers_processor_names(arch)
    total = len([n for n in names if "attn1" in n])
    switch = official_switch(total, level)
    shared = set()
    for i, name in enumerate(names):
        if "attn1" in name and not switch[i // 2]:
            shared.add(comfy_key(name))
    return shared


def execution_order_keys(arch) -> list:
    """ComfyUI's layer keys in execution order: input blocks, the middle block, output blocks."""
    keys = [comfy_key(n) for n in diffusers_processor_names(arch) if "attn1" in n]
    rank = {"input": 0, "middle": 1, "output": 2}
    return sorted(keys, key=lambda k: (rank[k[0]], k[1], k[2]))


@pytest.mark.parametrize("arch,count", [(SD15, 16), (SDXL, 70)], ids=["SD1.5", "SDXL"])
@pytest.mark.parametrize("fraction", FRACTIONS)
def test_shared_layers_equal_the_official_only_self_level(arch, count, fraction):
    keys = execution_order_keys(arch)
    assert len(keys) == count
    try:
        expected = official_shared_keys(arch, fraction)
    except ZeroDivisionError:  # the official code crashes; the limit (see the next test) is used
        expected = set(keys) if fraction < 0.5 else set()
    assert layers.LayerSelection((), fraction).resolve(keys) == expected


@pytest.mark.parametrize("arch,fraction,shared", [
    (SD15, 0.05, 16), (SD15, 0.99, 0), (SD15, 0.97, 0), (SDXL, 0.01, 70), (SDXL, 0.99, 0), (SDXL, 0.995, 0),
], ids=["sd15-0.05", "sd15-0.99", "sd15-0.97", "sdxl-0.01", "sdxl-0.99", "sdxl-0.995"])
def test_where_the_official_code_crashes(arch, fraction, shared):
    """int(level * n) == 0: a fraction below 1/n leaves no layer out, one above 1 - 1/n leaves all out."""
    keys = execution_order_keys(arch)
    with pytest.raises(ZeroDivisionError):
        official_shared_keys(arch, fraction)
    assert len(layers.LayerSelection((), fraction).resolve(keys)) == shared


def test_counting_order_matters_execution_order_would_differ():
    """The review's finding, kept as a check that the two orders really give different sets."""
    keys = execution_order_keys(SD15)
    naive = {k for k, kept in zip(keys, layers.spread_mask(len(keys), 0.25)) if kept}
    assert naive != official_shared_keys(SD15, 0.25) == layers.LayerSelection((), 0.25).resolve(keys)


@pytest.mark.parametrize("bad", ["input.\u00b2", "output.\u0663", "input.12345"])
def test_unicode_digits_and_huge_indices_are_a_clear_error(bad):
    with pytest.raises(errors.AtelierError, match="Node: input 'layers': '.*' is not a layer selection"):
        layers.parse_layer_spec(bad, "Node", UNET_BLOCKS)


def test_unmatched_prefixes_and_layer_names():
    keys = execution_order_keys(SD15)
    assert layers.unmatched_prefixes((("input", 99), ("input", 4), ("output", 3, 1)), keys) == [
        ("input", 99), ("output", 3, 1)]
    names = layers.describe_layers(execution_order_keys(SDXL))
    assert names.startswith("input.4.0-1, input.5.0-1, input.7.0-9, input.8.0-9, middle.0.0-9, output.0.0-9")
    assert layers.describe_layers([("double", 0), ("double", 1), ("single", 0)]) == "double.0-1, single.0"
