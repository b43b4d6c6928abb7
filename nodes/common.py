"""Inputs every Atelier node family shares, so their names and tooltips read the same everywhere."""
from __future__ import annotations

from comfy_api.latest import io

from ..attention import models
from ..attention.core.errors import AtelierError
from ..attention.core.layers import LayerSelection, describe_layers, parse_layer_spec, unmatched_prefixes
from ..attention.core.schedule import Window
from ..attention.dispatch import support

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


def families_running(*features) -> str:
    """'A, B and C': the model families that run every one of ``features`` (a control class's ``feature``
    and its classes, as (feature, classes) pairs), from the same table as the README's."""
    names = [f.name for f in models.FAMILIES if all(support.works(f, feature, classes) for feature, classes in features)]
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]


def model_input(*controls) -> io.Model.Input:
    """The MODEL input of a node making ``controls`` (control classes): its tooltip names the families
    they run on."""
    families = families_running(*((c.feature, (c,)) for c in controls))
    return io.Model.Input("model", tooltip=f"The diffusion model to patch ({families}). It is cloned, never changed.")


def model_output() -> io.Model.Output:
    return io.Model.Output(tooltip="A patched clone of the input model; wire it to the sampler.")


def make_window(node: str, start_percent: float, end_percent: float) -> Window:
    if start_percent > end_percent:
        raise AtelierError(node, "start_percent", f"{start_percent} is after end_percent {end_percent}.",
                           "set start_percent <= end_percent.")
    return Window(start_percent, end_percent)


def make_layers(node: str, layers: str, unshared_fraction: float = 0.0, model=None) -> LayerSelection:
    """The parsed selection; with ``model``, every named block or layer must exist in it."""
    selection = LayerSelection(parse_layer_spec(layers, node, models.block_kinds()), unshared_fraction)
    keys = model_layer_keys(model) if model is not None else None
    missing = unmatched_prefixes(selection.prefixes, keys) if keys else []
    if missing:
        names = ", ".join(".".join(map(str, p)) for p in missing)
        raise AtelierError(node, "layers", f"{names} matches no attention layer of this model.",
                           f"use 'all', a block kind or one of this model's layers: {describe_layers(keys)}.")
    return selection


def model_layer_keys(model):
    """The model's attention layer keys in execution order, or None for a model the pack does not patch
    (the node's own model check then says so)."""
    diffusion_model = model.get_model_object("diffusion_model")
    family = models.family_of(diffusion_model)
    return tuple(family.layer_keys(diffusion_model)) if family is not None else None
