"""Valid inputs for every Atelier node, built from each node's own schema (widgets at their defaults)
and real objects of the tiny SD1.5 test bed for the linked inputs; the input-error and fuzz tiers
start from these and break one input at a time."""
from __future__ import annotations

import torch

from tests.comfy.inversion_helpers import image_latent, invert

SIZE = 64  # pixels: the smallest latent (8 x 8) every node accepts

# Where an input's value comes from when it is linked (not a widget).
LINKED_TYPES = ("MODEL", "CLIP", "CONDITIONING", "LATENT", "MASK", "CLIP_VISION", "CLIP_VISION_OUTPUT",
                "ATELIER_TRAJECTORY", "ATELIER_REGIONS", "ATELIER_IPADAPTER", "SIGMAS")


class LinkedValues:
    """One real value per linked type, made lazily and kept for the session."""

    def __init__(self, comfy):
        self.comfy = comfy
        self._made = {}

    def __getitem__(self, io_type: str):
        if io_type not in self._made:
            self._made[io_type] = getattr(self, "make_" + io_type.lower())()
        return self._made[io_type]

    def make_model(self):
        return self.comfy.sd15.model

    def make_clip(self):
        return self.comfy.sd15.clip

    def make_conditioning(self):
        return self.comfy.encode(self.comfy.sd15.clip, "a red house")

    def make_latent(self):
        return {"samples": image_latent(self.comfy.sd15, size=SIZE)}

    def make_mask(self):
        mask = torch.zeros(1, SIZE, SIZE)
        mask[:, 8:40, 16:48] = 1.0
        return mask

    def make_clip_vision(self):
        import nodes
        from tiny_models.clip_vision import CLIP_VISION
        return nodes.CLIPVisionLoader().load_clip(CLIP_VISION)[0]

    def make_clip_vision_output(self):
        import nodes
        image = torch.linspace(0, 1, 224 * 224 * 3).reshape(1, 224, 224, 3)
        return nodes.CLIPVisionEncode().encode(self["CLIP_VISION"], image, "center")[0]

    def make_atelier_trajectory(self):
        return invert(self.comfy, self.comfy.sd15.model, self["LATENT"]["samples"], steps=1)[1]

    def make_sigmas(self):
        """A one-step schedule of the tiny SD1.5 (what BasicScheduler gives)."""
        from comfy.samplers import calculate_sigmas
        return calculate_sigmas(self["MODEL"].get_model_object("model_sampling"), "normal", 1).cpu()

    def make_atelier_regions(self):
        node = self.comfy.node_class("AtelierRegion")
        return node.execute(self["CONDITIONING"], 0.1, 0.1, 0.5, 0.5, 1.0, "constant", 0.0, 0.5, "1").result[0]

    def make_atelier_ipadapter(self):
        from tiny_models.ip_adapter import SD15_BASE
        return self.comfy.node_class("AtelierIPAdapterLoader").execute(SD15_BASE).result[0]


def io_type(spec) -> str:
    return str(spec.get_io_type())


def widget_default(spec):
    if getattr(spec, "options", None) is not None:
        return spec.default if spec.default is not None else spec.options[0]
    if spec.default is not None:
        return spec.default
    return {"FLOAT": 0.0, "INT": 0, "BOOLEAN": False, "STRING": ""}[io_type(spec)]


def valid_inputs(comfy, linked: LinkedValues, node_id: str, optional: bool = False) -> dict:
    """Keyword arguments that the node accepts: widgets at their defaults, links from the test bed.
    Optional links are left out unless ``optional``."""
    schema = comfy.node_class(node_id).define_schema()
    kwargs = {}
    for spec in schema.inputs:
        if io_type(spec) in LINKED_TYPES:
            if optional or not spec.optional:
                kwargs[spec.id] = linked[io_type(spec)]
        else:
            kwargs[spec.id] = widget_default(spec)
    return kwargs


def input_specs(comfy, node_id: str) -> list:
    return list(comfy.node_class(node_id).define_schema().inputs)
