"""Attention Atelier: composable attention controls for ComfyUI (StyleAligned, CreativeSynth,
regional attention, aesthetic value mixing, DDIM inversion).

ComfyUI loads this package from custom_nodes/ and calls :func:`comfy_entrypoint` (V3 nodes).
"""
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import AtelierExtension

    return AtelierExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
