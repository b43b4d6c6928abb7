"""Regional attention nodes: AtelierRegion, AtelierBoxRegions, AtelierRegionalAttention."""
from __future__ import annotations

import json
import math

import torch
from comfy_api.latest import io

from .common import search_aliases

from ..attention.core.errors import AtelierError
from ..attention.dispatch import dispatcher
from ..attention.region_json import MAX_BOXES, parse_keyframe_text, parse_region_json
from ..attention.regional import Region, RegionalControl
from ..attention.weight_curves import CURVE_KINDS, make_curve
from ..inversion.reference import describe_width, text_width
from .common import CATEGORY, layers_input, make_layers, make_window, model_input, model_output, window_inputs
from .input_guard import guarded, tokenize

REGION = "AtelierRegion"
BOXES = "AtelierBoxRegions"
ATTENTION = "AtelierRegionalAttention"

Regions = io.Custom("ATELIER_REGIONS")

REGIONS_TOOLTIP = "Regions made by AtelierRegion / AtelierBoxRegions (chain them to add more)."
DEFAULT_BOXES = {
    "width": 512, "height": 512,
    "boxes": [
        {"x": 0.05, "y": 0.35, "w": 0.4, "h": 0.55, "prompt": "a red house", "weight": 1.0,
         "curve": "cosine", "end_weight": 0.3},
        {"x": 0.55, "y": 0.3, "w": 0.4, "h": 0.6, "prompt": "a green tree", "weight": 1.0,
         "curve": "constant"},
    ],
}


def curve_inputs() -> list:
    return [
        io.Float.Input("weight", default=1.0, min=-2.0, max=5.0, step=0.01,
                       tooltip="Weight c of the local prompt at the first step (the whole run for 'constant'): "
                               "0 leaves the region to the full prompt, 1 replaces it by the local prompt."),
        io.Combo.Input("curve", options=list(CURVE_KINDS), default="constant",
                       tooltip="How the weight changes over the steps: constant, linear or cosine from weight "
                               "to end_weight, step (weight, then end_weight from switch_at), or list."),
        io.Float.Input("end_weight", default=0.0, min=-2.0, max=5.0, step=0.01,
                       tooltip="Weight at the last step for linear/cosine, after switch_at for step."),
        io.Float.Input("switch_at", default=0.5, min=0.0, max=1.0, step=0.01,
                       tooltip="Sampling progress at which the step curve switches from weight to end_weight."),
        io.String.Input("weights", default="1, 1, 0.5, 0", multiline=False,
                        tooltip="For the 'list' curve: one weight per step, comma-separated (with as many "
                                "values as steps, value k is step k's; otherwise value k covers progress k/K to "
                                "(k+1)/K)."),
    ]


def check_box(node: str, x: float, y: float, width: float, height: float, input_name: str = "x") -> tuple:
    numbers = (x, y, width, height)
    if not all(isinstance(n, (int, float)) and math.isfinite(n) for n in numbers):
        raise AtelierError(node, input_name, f"the box {numbers} is not four numbers.",
                           "give x, y, width and height as fractions of the image between 0 and 1.")
    if width <= 0 or height <= 0 or x < 0 or y < 0 or x + width > 1.0 + 1e-6 or y + height > 1.0 + 1e-6:
        raise AtelierError(node, input_name, f"the box x={x}, y={y}, width={width}, height={height} "
                           "is empty or reaches outside the image.",
                           "keep 0 <= x, y and x + width <= 1, y + height <= 1 with width, height > 0.")
    return float(x), float(y), float(width), float(height)


def local_prompt(node: str, conditioning) -> torch.Tensor:
    if not conditioning:
        raise AtelierError(node, "conditioning", "the local prompt is empty.", "wire a CLIPTextEncode output.")
    cond = conditioning[0][0]
    if cond.shape[0] != 1:
        raise AtelierError(node, "conditioning", f"the local prompt has a batch of {cond.shape[0]} prompts.",
                           "give each region a single prompt (one CLIPTextEncode).")
    return cond


def region_mask(node: str, mask: torch.Tensor) -> torch.Tensor:
    """(H, W) for one mask, (F, H, W) for a batch: one mask per frame of a clip, spread over it."""
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim not in (2, 3) or float(mask.max()) <= 0.0:
        raise AtelierError(node, "mask", "the mask is empty (all zero) or not an image-shaped mask.",
                           "paint the region white in the mask, or disconnect it and use the box.")
    return mask.detach().to("cpu", torch.float32).clamp(0.0, 1.0)


class AtelierRegion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=REGION,
            **search_aliases("Atelier region", "Atelier regional prompt"),
            display_name="Region (local prompt, place, weight curve)",
            category=f"{CATEGORY}/regional",
            description=(
                "One object for regional attention: its local prompt, its region (a MASK, or a box in "
                "fractions of the image) and its weight c over the steps. Inside the region the "
                "cross-attention output moves from the full prompt's towards the local prompt's by c: "
                "O = A(Q, full) + M c(p) (A(Q, local) - A(Q, full)). Chain several through 'regions'."),
            inputs=[
                io.Conditioning.Input("conditioning", tooltip="The local prompt of this object (CLIPTextEncode "
                                                              "with the model's CLIP), e.g. 'a red house'."),
                io.Float.Input("x", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Left edge of the box as a fraction of the image width (ignored with a mask)."),
                io.Float.Input("y", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Top edge of the box as a fraction of the image height (ignored with a mask)."),
                io.Float.Input("width", default=0.5, min=0.01, max=1.0, step=0.01,
                               tooltip="Box width as a fraction of the image width (ignored with a mask)."),
                io.Float.Input("height", default=1.0, min=0.01, max=1.0, step=0.01,
                               tooltip="Box height as a fraction of the image height (ignored with a mask)."),
                *curve_inputs(),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional region mask (white = region), stretched to the image; replaces the "
                                      "box. A batch of masks on a video model: one mask per frame, spread over "
                                      "the clip."),
                Regions.Input("regions", optional=True,
                              tooltip="Optional earlier regions; this one is added after them."),
                io.String.Input("keyframes", default="", optional=True,
                                tooltip="Optional, video: where the box is later in the clip, 'at: x, y, width, "
                                        "height' entries separated by ';' (at 0 = the first frame, 1 = the last), "
                                        "e.g. '1: 0.5, 0.2, 0.4, 0.5'. The box above holds at 0 unless an entry "
                                        "says otherwise; linear in between. Empty: the box stays."),
            ],
            outputs=[Regions.Output(display_name="regions", tooltip="The earlier regions plus this one.")],
        )

    @classmethod
    @guarded
    def execute(cls, conditioning, x, y, width, height, weight, curve, end_weight, switch_at, weights,
                mask=None, regions=None, keyframes="") -> io.NodeOutput:
        weight_curve = make_curve(REGION, curve, weight, end_weight, switch_at, weights)
        cond = local_prompt(REGION, conditioning)
        if mask is not None:
            region = Region(cond=cond, curve=weight_curve, mask=region_mask(REGION, mask))
        else:
            box = check_box(REGION, x, y, width, height)
            region = Region(cond=cond, curve=weight_curve, box=box,
                            keyframes=parse_keyframe_text(keyframes, REGION, "keyframes", box))
        return io.NodeOutput(tuple(regions or ()) + (region,))


def parse_boxes(text: str, node: str = BOXES, input_name: str = "regions_json") -> list:
    """The boxes of the editor's JSON, each checked and bounded (attention.region_json)."""
    return parse_region_json(text, node, input_name)


class AtelierBoxRegions(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=BOXES,
            **search_aliases("Atelier box regions", "Atelier region editor"),
            display_name="Box Regions (editor / JSON)",
            category=f"{CATEGORY}/regional",
            description=(
                "Several regions from one JSON text: each box has a local prompt, a place in fractions of "
                "the image and a weight curve. In the graph editor draw, move and resize the boxes on the "
                "node's canvas; in API workflows write the JSON by hand, e.g. {\"boxes\": [{\"x\": 0.1, "
                "\"y\": 0.2, \"w\": 0.4, \"h\": 0.5, \"prompt\": \"a red house\", \"weight\": 1.0, "
                "\"curve\": \"cosine\", \"end_weight\": 0.2}]}. Curves: constant, linear, cosine, step "
                "(switch_at), list (weights)."),
            inputs=[
                io.Clip.Input("clip", tooltip="The text encoder (CLIP) of the checkpoint; encodes each box's prompt."),
                io.String.Input("regions_json", multiline=True, default=json.dumps(DEFAULT_BOXES, indent=1),
                                tooltip="The boxes as JSON: width/height (the editor's aspect) and a list 'boxes' of "
                                        "{x, y, w, h, prompt, weight, curve, end_weight, switch_at, weights}: "
                                        "x, y, w, h and switch_at from 0 to 1, weights from -2 to 5, at most "
                                        f"{MAX_BOXES} boxes; unknown keys are refused. Video: a box's optional "
                                        "'keyframes' [{at, x, y, w, h}] (at 0 = first frame, 1 = last) move it "
                                        "over the clip, linearly in between (the editor's 'moving' toggle)."),
                Regions.Input("regions", optional=True,
                              tooltip="Optional earlier regions; these boxes are added after them."),
            ],
            outputs=[Regions.Output(display_name="regions", tooltip="The earlier regions plus one per box.")],
        )

    @classmethod
    @guarded
    def execute(cls, clip, regions_json, regions=None) -> io.NodeOutput:
        boxes = parse_boxes(regions_json)
        if boxes and clip is None:
            raise AtelierError(BOXES, "clip", "the checkpoint has no text encoder.",
                               "load a checkpoint with CLIP or use a CLIPLoader.")
        made = []
        for box in boxes:
            cond = clip.encode_from_tokens(tokenize(clip, box.prompt, BOXES, "regions_json"), return_pooled=True,
                                           return_dict=True)
            made.append(Region(cond=cond["cond"], curve=box.curve, box=box.rect, source=BOXES, keyframes=box.keyframes))
        return io.NodeOutput(tuple(regions or ()) + tuple(made))


def check_region_widths(model, regions: tuple):
    """Each local prompt must be as wide as the model's text input (known here, before any model call)."""
    width = text_width(model.get_model_object("diffusion_model"))
    for number, region in enumerate(regions, 1):
        got = region.cond.shape[-1]
        if width is not None and got != width:
            where = "its clip input" if region.source == BOXES else "the conditioning wired to it"
            raise AtelierError(ATTENTION, "regions",
                               f"region {number} (from {region.source}) has a {got}-wide local prompt "
                               f"({describe_width(got)}) but this model reads {width}-wide text "
                               f"({describe_width(width)}).",
                               f"encode that region's prompt ({where}) with the CLIP of the model's own checkpoint.")


class AtelierRegionalAttention(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=ATTENTION,
            **search_aliases("Atelier regional attention", "Atelier regional prompting"),
            display_name="Regional Attention (spatial-temporal)",
            category=f"{CATEGORY}/regional",
            description=(
                "Puts objects where they belong: in the cross-attention of the positive (cond) rows, each "
                "region's output moves from the full prompt's towards its local prompt's by the region's "
                "weight at the current step, O = A(Q, full) + sum_i M_i c_i(p) (A(Q, local_i) - A(Q, full)). "
                "The full prompt is the sampler's positive conditioning; the negative rows are untouched. "
                "SD1.5, SDXL, Flux.1 and SD3.5 (on these the local prompts run as extra text streams of the "
                "joint attention); composes with StyleAligned, LoRA and other packs' attention patches."),
            inputs=[
                model_input(RegionalControl),
                Regions.Input("regions", tooltip=REGIONS_TOOLTIP),
                layers_input(),
                *window_inputs(),
            ],
            outputs=[model_output()],
        )

    @classmethod
    @guarded
    def execute(cls, model, regions, layers, start_percent, end_percent) -> io.NodeOutput:
        window = make_window(ATTENTION, start_percent, end_percent)
        selection = make_layers(ATTENTION, layers, model=model)
        live = tuple(r for r in (regions or ()) if not r.curve.always_zero)
        controls = [RegionalControl(regions=live, layers=selection, window=window)] if live else []
        dispatcher.require_supported(model, ATTENTION, controls)  # the family first: its refusal says more
        check_region_widths(model, live)
        return io.NodeOutput(dispatcher.attach(model, *controls, node=ATTENTION))


NODES = [AtelierRegion, AtelierBoxRegions, AtelierRegionalAttention]
CONTROLS = (RegionalControl,)  # what its nodes make (README support table)
