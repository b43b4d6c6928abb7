"""Thin node definitions, one module per family; the maths lives in attention/ and inversion/."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import aesthetic, creative_synth, inversion, prompts, regional, style_aligned

FAMILIES = (style_aligned, prompts, inversion, creative_synth, regional, aesthetic)


def node_list() -> list[type[io.ComfyNode]]:
    return [node for family in FAMILIES for node in family.NODES]


class AtelierExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_list()
