"""Test-bed nodes: loaders for the tiny Flux stand-ins that ComfyUI's own loaders cannot build.

Never shipped: scripts/setup_dev.sh links this folder into each test bed's custom_nodes (next to the
pack), and scripts/tiny_models/template_swap.py rewrites a template's UNETLoader / DualCLIPLoader to
these when a test or `make demo` runs it on the tiny models. Their inputs are the originals', so the
swap changes only the class and the file names.

- TestBedUNETLoader: UNETLoader for the tiny diffusion transformers (Flux detection pins 24
  heads of 128 channels; the tiny Flux overrides them, see tiny_models/dit.py).
- TestBedDualCLIPLoader: DualCLIPLoader for the tiny Flux text encoders (ComfyUI builds T5 at
  XXL size from a fixed config; see tiny_models/flux_text.py).
- TestBedCLIPLoader: CLIPLoader for the tiny Qwen3 text encoder of Z-Image (type lumina2; ComfyUI
  builds Qwen3-4B from a fixed full-size config; see tiny_models/qwen3_text.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

_SCRIPTS = str(Path(__file__).resolve().parents[1])
if _SCRIPTS not in sys.path:
    sys.path.insert(0, _SCRIPTS)

import folder_paths  # noqa: E402

from tiny_models.dit import load_tiny_dit  # noqa: E402
from tiny_models.flux_text import load_tiny_flux_clip  # noqa: E402
from tiny_models.qwen3_text import load_tiny_qwen3_clip  # noqa: E402

CATEGORY = "atelier test bed"


class TestBedUNETLoader:
    DESCRIPTION = "Test bed only: UNETLoader for the tiny seeded diffusion transformers."
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": (folder_paths.get_filename_list("diffusion_models"),),
                             "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],)}}

    def load(self, unet_name, weight_dtype):
        return (load_tiny_dit(folder_paths.get_full_path_or_raise("diffusion_models", unet_name)),)


class TestBedDualCLIPLoader:
    DESCRIPTION = "Test bed only: DualCLIPLoader (type flux) for the tiny Flux text encoders."
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        names = folder_paths.get_filename_list("text_encoders")
        return {"required": {"clip_name1": (names,), "clip_name2": (names,), "type": (["flux"],)},
                "optional": {"device": (["default", "cpu"],)}}

    def load(self, clip_name1, clip_name2, type, device="default"):
        paths = [folder_paths.get_full_path_or_raise("text_encoders", n) for n in (clip_name1, clip_name2)]
        return (load_tiny_flux_clip(paths, folder_paths.get_folder_paths("embeddings")),)


class TestBedCLIPLoader:
    DESCRIPTION = "Test bed only: CLIPLoader (type lumina2) for the tiny Qwen3 text encoder of Z-Image."
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (folder_paths.get_filename_list("text_encoders"),),
                             "type": (["lumina2"],)},
                "optional": {"device": (["default", "cpu"],)}}

    def load(self, clip_name, type, device="default"):
        path = folder_paths.get_full_path_or_raise("text_encoders", clip_name)
        return (load_tiny_qwen3_clip(path, folder_paths.get_folder_paths("embeddings")),)


NODE_CLASS_MAPPINGS = {
    "TestBedCLIPLoader": TestBedCLIPLoader,
    "TestBedUNETLoader": TestBedUNETLoader,
    "TestBedDualCLIPLoader": TestBedDualCLIPLoader,
}
