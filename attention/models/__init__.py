"""Model families, one adapter module each (see ``attention/core/family.py`` for the interface).

To add a family: write ``attention/models/<family>.py`` with a ``FAMILY`` instance of a
:class:`~attention.core.family.ModelFamily` subclass and list it in :data:`FAMILIES` (more specific
classes before the classes they subclass); give the test bed a tiny model of it. Nothing else names
families: the README's support table, the nodes' tooltips and the layer-selection words come from here.
"""
from __future__ import annotations

from . import chroma, flux, flux2, krea2, lumina, ltx, minimax, qwen_image, sd3, unet, wan

FAMILIES = (unet.FAMILY, flux.FAMILY, sd3.FAMILY, qwen_image.FAMILY, krea2.FAMILY, lumina.FAMILY, flux2.FAMILY,
            chroma.FAMILY, wan.FAMILY, ltx.LTX_VIDEO, ltx.LTX2, minimax.FAMILY)


def family_of(diffusion_model):
    """The adapter of the family ``diffusion_model`` belongs to, or None (not supported)."""
    for family in FAMILIES:
        if family.matches(diffusion_model):
            return family
    return None


def transformer_family_of(diffusion_model):
    """The adapter of a supported transformer (joint or separate attention: anything but a UNet), or None."""
    family = family_of(diffusion_model)
    return family if family is not None and family.kind != "unet" else None


def supported_names(kind: str | None = None) -> str:
    """'A, B and C': the supported families' names (only those of one ``kind``: "unet", "joint", ...)."""
    names = [f.name for f in FAMILIES if kind is None or f.kind == kind]
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]


def block_kinds() -> tuple:
    """Every word a supported family's layer keys begin with (``input``, ``double``, ``layer``, ...)."""
    return tuple(dict.fromkeys(kind for family in FAMILIES for kind in family.block_kinds))
