"""Inputs every Atelier node family shares, so their names and tooltips read the same everywhere."""
from __future__ import annotations

from comfy_api.latest import io

from ..attention.layers import LayerSelection, parse_layer_spec
from ..attention.schedule import Window

CATEGORY = "Atelier"


def search_aliases(*aliases: str) -> dict:
    """The io.Schema keyword that lets the node search find a node by "Atelier" plus its function
    ("Atelier DDIM" -> AtelierInvert): ``search_aliases`` where this ComfyUI's V3 Schema has that field
    (0.33+), nothing where it does not (0.3.75). Display names stay plain."""
    fields = getattr(io.Schema, "__dataclass_fields__", {})
    return {"search_aliases": list(aliases)} if "search_aliases" in fields else {}

LAYERS_TOOLTIP = ("Which attention layers this node acts on: 'all', a block kind ('input', 'middle', "
                  "'output'), a block ('input.4') or one layer ('output.2.7'), comma-separated.")


def window_inputs() -> list:
    return [
        io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                       tooltip="Sampling progress (0 = first step) at which the effect starts."),
        io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                       tooltip="Sampling progress (1 = last step) at which the effect stops."),
    ]


def layers_input(default: str = "all") -> io.String.Input:
    return io.String.Input("layers", default=default, tooltip=LAYERS_TOOLTIP)


def model_input(tooltip: str = "The diffusion model (SD1.5 or SDXL) to patch. It is cloned, never changed.") -> io.Model.Input:
    return io.Model.Input("model", tooltip=tooltip)


def model_output() -> io.Model.Output:
    return io.Model.Output(tooltip="A patched clone of the input model; wire it to the sampler.")


def make_window(node: str, start_percent: float, end_percent: float) -> Window:
    from ..attention.errors import AtelierError
    if start_percent > end_percent:
        raise AtelierError(node, "start_percent", f"{start_percent} is after end_percent {end_percent}.",
                           "set start_percent <= end_percent.")
    return Window(start_percent, end_percent)


def make_layers(node: str, layers: str, unshared_fraction: float = 0.0) -> LayerSelection:
    return LayerSelection(parse_layer_spec(layers, node), unshared_fraction)
