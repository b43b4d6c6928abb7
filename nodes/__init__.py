"""Thin node definitions, one module per method family; the maths lives in attention/ and inversion/.

A node module has ``NODES`` (its node classes) and, where its nodes make attention controls, ``CONTROLS``
(those control classes: the README's support table and the nodes' tooltips are built from them). Adding
a method: attention/<method>.py, nodes/<method>.py and its entry in :data:`FAMILIES`.
"""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import aesthetic, creative_synth, inversion, prompts, regional, style_aligned

FAMILIES = (style_aligned, prompts, inversion, creative_synth, regional, aesthetic)


def node_list() -> list[type[io.ComfyNode]]:
    return [node for family in FAMILIES for node in family.NODES]


def controls() -> tuple:
    """Every control class the pack's nodes make, in the order of the README's support table."""
    return tuple(control for family in FAMILIES for control in getattr(family, "CONTROLS", ()))


class AtelierExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_list()
