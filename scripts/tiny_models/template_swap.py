"""The shipped workflows name the public files a user downloads (SD1.5, SDXL, IP-Adapter, CLIP vision,
ControlNet, LoRA) and the pictures a user loads; the tests and `make demo` run them on the tiny
stand-ins in the test bed instead. :func:`for_test_bed` is that one rewrite, in API format:

- every model file a loader names -> the tiny model of the same kind and family (Flux.1's diffusion
  model, text encoders and VAE too; Krea 2's and its Qwen3-VL text encoder; a file two families load under different CLIPLoader types, as
  ``qwen_3_4b`` for Z-Image and FLUX.2 klein, by its type: ``TYPED_TINY_MODELS``); with ``fast`` (the
  default) the SDXL files -> their SD1.5 stand-ins instead (the tiny SDXL samples at ~20 s a step on a
  shared 2-core CPU; node-level SDXL coverage lives in tests/comfy, and one slow e2e test runs an SDXL
  template on the tiny SDXL);
- UNETLoader / DualCLIPLoader / CLIPLoader -> the test-bed loaders of the same inputs (scripts/test_bed_nodes):
  ComfyUI's own cannot build the tiny DiTs (detection pins full-size heads) nor a tiny T5, Qwen3,
  Qwen2.5-VL or Qwen3-VL (the text loaders build them at full size); VAELoader, the samplers and every Atelier node
  stay ComfyUI's;
- every image a LoadImage names -> the test bed's reference or content picture;
- every latent / image size (and a size-aware scheduler's) -> ``size`` px (the tiny models' scale), every ``steps`` -> about a fifth
  (one map for all nodes, so steps that must match between inversion and regeneration still match).
- every video clip length (Wan 2.2's latent) -> at most ``TEST_FRAMES`` frames (3 latent frames).

A name the map does not know raises ``KeyError``: a new template must add its files here.
"""
from __future__ import annotations

import copy
import math

from . import SD15, SD15_LORA, SDXL
from .clip_vision import CLIP_VISION
from .content_image import CONTENT_IMAGE
from .controlnet import SD15_CONTROLNET
from .dit import FLUX
from .flux_text import FLUX_CLIP_L, FLUX_T5, FLUX_VAE
from .flux2 import FLUX2, FLUX2_VAE
from .krea2 import KREA2
from .krea2_text import KREA2_TEXT
from .lumina import Z_IMAGE
from .qwen3_text import KLEIN_TEXT, QWEN3_TEXT
from .qwen_image import QWEN_IMAGE
from .qwen_image_parts import QWEN25VL_TEXT, QWEN_IMAGE_VAE
from .ip_adapter import SD15_BASE as IP_ADAPTER_SD15, SDXL_BASE as IP_ADAPTER_SDXL
from .reference_image import REFERENCE_IMAGE

TINY_MODELS = {
    "v1-5-pruned-emaonly-fp16.safetensors": SD15,
    "sd_xl_base_1.0.safetensors": SDXL,
    "lcm-lora-sdv1-5.safetensors": SD15_LORA,
    "clip_vision_h.safetensors": CLIP_VISION,
    "ip-adapter_sd15.safetensors": IP_ADAPTER_SD15,
    "ip-adapter_sdxl_vit-h.safetensors": IP_ADAPTER_SDXL,
    "control_v11f1e_sd15_tile_fp16.safetensors": SD15_CONTROLNET,
    "flux1-dev.safetensors": FLUX,
    "clip_l.safetensors": FLUX_CLIP_L,
    "t5xxl_fp8_e4m3fn.safetensors": FLUX_T5,
    "ae.safetensors": FLUX_VAE,
    "z_image_turbo_bf16.safetensors": Z_IMAGE,
    "qwen_3_4b.safetensors": QWEN3_TEXT,
    "qwen_image_fp8_e4m3fn.safetensors": QWEN_IMAGE,
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": QWEN25VL_TEXT,
    "qwen_image_vae.safetensors": QWEN_IMAGE_VAE,
    "flux-2-klein-4b.safetensors": FLUX2,
    "flux2-vae.safetensors": FLUX2_VAE,
    "krea2_turbo_fp8_scaled.safetensors": KREA2,
    "qwen3vl_4b_fp8_scaled.safetensors": KREA2_TEXT,
}
# (file name, CLIPLoader type) -> stand-in, where one public file serves two families
TYPED_TINY_MODELS = {("qwen_3_4b.safetensors", "flux2"): KLEIN_TEXT}
# templates a test bed's ComfyUI cannot run: name -> (source file under the ComfyUI tree, text it must
# contain, why)
NEEDS_COMFYUI = {
    "flux2_klein_style_aligned_set": (
        "comfy/text_encoders/flux.py", "def klein_te",
        "FLUX.2 klein (its Qwen3 text encoder under CLIPLoader type flux2) exists in ComfyUI 0.33.0 only; "
        "this test bed's ComfyUI has no klein_te"),
    "krea2_regional_layout": (
        "comfy/text_encoders/krea2.py", "class Krea2TEModel",
        "Krea 2 (its model and its Qwen3-VL text encoder under CLIPLoader type krea2) exists in ComfyUI 0.24 and "
        "later (test bed: 0.33.0) only; this test bed's ComfyUI has no comfy/text_encoders/krea2.py"),
}
TEST_BED_LOADERS = {"UNETLoader": "TestBedUNETLoader", "DualCLIPLoader": "TestBedDualCLIPLoader",
                    "CLIPLoader": "TestBedCLIPLoader"}
SDXL_TO_SD15 = {SDXL: SD15, IP_ADAPTER_SDXL: IP_ADAPTER_SD15}
TEST_IMAGES = {
    "style_reference.png": REFERENCE_IMAGE,
    "content_image.png": CONTENT_IMAGE,
}
MODEL_INPUTS = ("ckpt_name", "lora_name", "clip_name", "control_net_name", "ipadapter_name", "unet_name",
                "clip_name1", "clip_name2", "vae_name")
SIZED_NODES = ("EmptyLatentImage", "EmptySD3LatentImage", "EmptyFlux2LatentImage", "Flux2Scheduler", "ImageScale")
TEST_SIZE = 256
# Wan 2.2 5B (the video templates, both test beds): its files, its latent node sized like an image's, and the
# clip length the test bed samples
from .wan import WAN22_TI2V  # noqa: E402
from .wan22_parts import UMT5_TEXT, WAN22_VAE  # noqa: E402

TINY_MODELS.update({"wan2.2_ti2v_5B_fp16.safetensors": WAN22_TI2V, "umt5_xxl_fp8_e4m3fn_scaled.safetensors": UMT5_TEXT,
                    "wan2.2_vae.safetensors": WAN22_VAE})
VIDEO_NODES = ("Wan22ImageToVideoLatent",)
SIZED_NODES += VIDEO_NODES
TEST_FRAMES = 9


def bed_steps(steps: int) -> int:
    """The step count the test bed samples instead of ``steps`` (monotonic: equal stays equal)."""
    return max(2, math.ceil(int(steps) / 5))


def for_test_bed(prompt: dict, size: int = TEST_SIZE, fast: bool = True) -> dict:
    """A copy of an API-format ``prompt`` that runs on the test bed's tiny models and pictures."""
    models = {k: SDXL_TO_SD15.get(v, v) for k, v in TINY_MODELS.items()} if fast else TINY_MODELS
    out = copy.deepcopy(prompt)
    for node_id, node in out.items():
        inputs = node.get("inputs", {})
        for name in MODEL_INPUTS:
            if isinstance(inputs.get(name), str):
                typed = TYPED_TINY_MODELS.get((inputs[name], inputs.get("type")))
                inputs[name] = typed or _mapped(models, inputs[name], node_id, name)
        node["class_type"] = TEST_BED_LOADERS.get(node.get("class_type"), node.get("class_type"))
        if node.get("class_type") == "LoadImage":
            inputs["image"] = _mapped(TEST_IMAGES, inputs["image"], node_id, "image")
        if node.get("class_type") in SIZED_NODES:
            for name in ("width", "height"):
                if isinstance(inputs.get(name), int):
                    inputs[name] = size
        if node.get("class_type") in VIDEO_NODES and isinstance(inputs.get("length"), int):
            inputs["length"] = min(inputs["length"], TEST_FRAMES)
        if isinstance(inputs.get("steps"), int):
            inputs["steps"] = bed_steps(inputs["steps"])
    return out


def unsupported(name: str, comfy_dir) -> str | None:
    """Why the ComfyUI at ``comfy_dir`` cannot run template ``name`` (None when it can)."""
    from pathlib import Path
    need = NEEDS_COMFYUI.get(name)
    if need is None:
        return None
    source = Path(comfy_dir) / need[0]
    if source.is_file() and need[1] in source.read_text():
        return None
    return need[2]


def _mapped(table: dict, value: str, node_id: str, name: str) -> str:
    if value in table.values():
        return value  # already a test-bed file
    if value not in table:
        raise KeyError(f"node {node_id} input {name!r}: {value!r} has no test-bed stand-in "
                       f"(add it to scripts/tiny_models/template_swap.py)")
    return table[value]

