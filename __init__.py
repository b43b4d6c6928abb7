"""Attention Atelier: composable attention controls for ComfyUI (StyleAligned, CreativeSynth,
regional attention, aesthetic value mixing, DDIM inversion).

ComfyUI loads this package from custom_nodes/ and calls :func:`comfy_entrypoint` (V3 nodes).
"""
AtelierExtension = None
if __package__:  # not so where pytest imports this file alone (a checkout folder whose name has a hyphen)
    try:
        from .nodes import AtelierExtension
    except ModuleNotFoundError as missing:  # outside ComfyUI: attention/ and inversion/ import without it
        if missing.name.split(".")[0] not in ("comfy_api", "comfy", "folder_paths"):
            raise

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    return AtelierExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
