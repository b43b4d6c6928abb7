"""Finding reference rows in every batch layout ComfyUI produces, and layer selections."""
import pytest

from tests.pack import pack_module

rows = pack_module("attention.core.rows")
layers = pack_module("attention.core.layers")
errors = pack_module("attention.core.errors")
UNET_BLOCKS = ("input", "middle", "output")


@pytest.mark.parametrize("cond_or_uncond,batch,expect_rows,expect_refs", [
    ([1, 0], 8, 4, [0, 4]),     # cfg > 1: uncond chunk then cond chunk
    ([0], 4, 4, [0]),           # cfg 1: cond only
    ([1], 4, 4, [0]),           # uncond run in its own call
    ([1, 0, 0], 6, 2, [0, 2, 4]),  # an extra area cond chunk
])
def test_reference_rows(cond_or_uncond, batch, expect_rows, expect_refs):
    layout = rows.chunk_layout(batch, cond_or_uncond)
    assert layout.rows == expect_rows
    assert layout.reference_rows() == expect_refs


def test_rows_of_kind():
    layout = rows.chunk_layout(6, [1, 0, 0])
    assert layout.rows_of(1) == [0, 1]
    assert layout.rows_of(0) == [2, 3, 4, 5]


def test_batch_that_does_not_split_is_an_error():
    with pytest.raises(ValueError):
        rows.chunk_layout(5, [1, 0])


SD15_KEYS = [("input", 1, 0), ("input", 2, 0), ("input", 4, 0), ("input", 5, 0), ("input", 7, 0),
             ("input", 8, 0), ("middle", 0, 0)] + [("output", i, 0) for i in range(3, 12)]


@pytest.mark.parametrize("spec,count", [("all", 16), ("input", 6), ("middle", 1), ("output", 9),
                                        ("input.4", 1), ("input, middle", 7), ("output.3.0", 1), ("", 16)])
def test_layer_specs(spec, count):
    selection = layers.LayerSelection(layers.parse_layer_spec(spec, "Node", UNET_BLOCKS))
    assert len(selection.resolve(SD15_KEYS)) == count


@pytest.mark.parametrize("bad", ["inputs", "input.x", "output.1.2.3", "up"])
def test_bad_layer_spec_names_node_and_input(bad):
    with pytest.raises(errors.AtelierError, match="Node: input 'layers'"):
        layers.parse_layer_spec(bad, "Node", UNET_BLOCKS)


@pytest.mark.parametrize("fraction,kept", [(0.0, 16), (1.0, 0), (0.25, 12), (0.5, 8), (0.75, 4)])
def test_unshared_fraction_spreads_like_the_official_handler(fraction, kept):
    mask = layers.spread_mask(16, fraction)
    assert sum(mask) == kept
