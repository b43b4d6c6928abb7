"""Test-bed nodes: loaders for the tiny Flux stand-ins that ComfyUI's own loaders cannot build.

Never shipped: scripts/setup_dev.sh links this folder into each test bed's custom_nodes (next to the
pack), and scripts/tiny_models/template_swap.py rewrites a template's UNETLoader / DualCLIPLoader to
these when a test or `make demo` runs it on the tiny models. Their inputs are the originals', so the
swap changes only the class and the file names.

- TestBedUNETLoader: UNETLoader for the tiny diffusion transformers (Flux detection pins 24
  heads of 128 channels; the tiny Flux overrides them, see tiny_models/dit.py).
- TestBedDualCLIPLoader: DualCLIPLoader for the tiny Flux text encoders (ComfyUI builds T5 at
  XXL size from a fixed config; see tiny_models/flux_text.py).
- TestBedCLIPLoader: CLIPLoader for the tiny single-file text encoders ComfyUI builds from fixed
  full-size configs: Qwen3-4B of Z-Image (type lumina2) and of FLUX.2 klein (type flux2; see
  tiny_models/qwen3_text.py), Qwen2.5-VL 7B of Qwen-Image (type qwen_image; tiny_models/qwen_image_parts.py),
  Qwen3-VL-4B of Krea 2 (type krea2; tiny_models/krea2_text.py).
  The stand-in is picked by the file's metadata ``kind``, as ComfyUI picks the encoder by its keys.
  Also UMT5-XXL of Wan (type wan; tiny_models/wan22_parts.py: the tokenizer from the file, as the real one).
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
from tiny_models.krea2_text import KREA2_TEXT, load_tiny_krea2_clip  # noqa: E402
from tiny_models.qwen3_text import KLEIN_TEXT, QWEN3_TEXT, load_tiny_klein_clip, load_tiny_qwen3_clip  # noqa: E402
from tiny_models.qwen_image_parts import QWEN25VL_TEXT, load_tiny_qwen_image_clip  # noqa: E402
from tiny_models.wan22_parts import UMT5_TEXT, load_tiny_wan_clip  # noqa: E402

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


# metadata kind of a tiny text encoder -> (the CLIPLoader type it stands in for, its loader)
TINY_TEXT_ENCODERS = {QWEN3_TEXT: ("lumina2", load_tiny_qwen3_clip), KLEIN_TEXT: ("flux2", load_tiny_klein_clip),
                      QWEN25VL_TEXT: ("qwen_image", load_tiny_qwen_image_clip),
                      KREA2_TEXT: ("krea2", load_tiny_krea2_clip)}


TINY_TEXT_ENCODERS[UMT5_TEXT] = ("wan", load_tiny_wan_clip)  # UMT5-XXL of Wan (tiny_models/wan22_parts.py)


def file_kind(path) -> str:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get("kind", "")


class TestBedCLIPLoader:
    DESCRIPTION = ("Test bed only: CLIPLoader for the tiny text encoders of Z-Image (lumina2), Qwen-Image "
                   "(qwen_image), FLUX.2 klein (flux2) and Krea 2 (krea2).")
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (folder_paths.get_filename_list("text_encoders"),),
                             "type": ([kind for kind, _ in TINY_TEXT_ENCODERS.values()],)},  # lumina2 first: saved graphs keep it
                "optional": {"device": (["default", "cpu"],)}}

    def load(self, clip_name, type, device="default"):
        path = folder_paths.get_full_path_or_raise("text_encoders", clip_name)
        kind = file_kind(path)
        if kind not in TINY_TEXT_ENCODERS:
            raise ValueError(f"{clip_name}: not a tiny test-bed text encoder (metadata kind {kind!r})")
        wanted, loader = TINY_TEXT_ENCODERS[kind]
        if type != wanted:
            raise ValueError(f"{clip_name} stands in for CLIPLoader type {wanted}, not {type}")
        return (loader(path, folder_paths.get_folder_paths("embeddings")),)


NODE_CLASS_MAPPINGS = {
    "TestBedCLIPLoader": TestBedCLIPLoader,
    "TestBedUNETLoader": TestBedUNETLoader,
    "TestBedDualCLIPLoader": TestBedDualCLIPLoader,
}
