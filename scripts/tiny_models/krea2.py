"""A tiny seeded random-weight Krea 2 (K2) of the real architecture (ComfyUI >= 0.24 only).

The model class, its config and its key names are ComfyUI's: ``comfy.ldm.krea2.model.SingleStreamDiT``
built on the meta device from ``supported_models.Krea2``, and the config of the saved file comes back
from ``comfy.model_detection.detect_unet_config`` on its own keys and shapes (width from ``first``, the
depth from the block keys, heads and grouped key/value heads from ``wq`` / ``wk`` at detection's head
size of 128, the text adapter's tapped layers and width from ``txtfusion``). No override is needed:
a width of 256 gives 2 heads of 128 with 1 key/value head (grouped-query attention, as the real 48/12),
and a text width of 80 keeps the text adapter's fixed 20 heads whole (4 channels each).

ComfyUI's Krea 2 text encoder is Qwen3-VL-4B (a 12-layer tap, conditioning ``(B, T, 12 * 2560)``),
far too large here: tests use :func:`random_conditioning`, seeded tokens of the model's context width
(``txtlayers * txtdim`` = 12 * 80).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .dit import DIFFUSION_MODELS, build_detected_dit, detected_config, load_tiny_dit, scaled, verify_detected_dit
from .files import ensure_built

KREA2 = "atelier_tiny_krea2.safetensors"
SEED = 2201
VERSION_KEY = ("atelier_krea2_version", "2")  # bump the value when the tiny model changes
# Real K2 layout (single-stream blocks, GQA, 12-layer text tap, 16 latent channels, patch 2) at tiny widths
TINY_KREA2 = {"image_model": "krea2", "features": 256, "channels": 16, "patch": 2, "layers": 2,
              "heads": 2, "kvheads": 1, "txtlayers": 12, "txtdim": 80}


def available() -> bool:
    try:
        import comfy.ldm.krea2.model  # noqa: F401
    except ImportError:
        return False
    return True


def _meta_state_dict() -> dict:
    import comfy.supported_models as sm
    config = sm.Krea2(dict(TINY_KREA2))
    config.set_inference_dtype(torch.float32, None)
    return config.get_model({}, device=torch.device("meta")).diffusion_model.state_dict()


def neutral(key: str, value: torch.Tensor) -> torch.Tensor:
    """K2 stores its RMSNorm weights and block modulation offsets zero-centred (weight = 1 + scale,
    modulation = t-embedding + lin): the filler's 1 for 1-D tensors would double every norm and open
    every gate wide, making a random model too rough to invert in a few steps; 0 is the neutral value."""
    if key.endswith(".scale") or key.endswith("mod.lin"):
        return torch.zeros_like(value)
    return value


def build_krea2(path, name: str | None = None) -> dict:
    meta = _meta_state_dict()
    detected = {k: detected_config(meta, {}).unet_config.get(k) for k in TINY_KREA2}
    if detected != TINY_KREA2:
        raise ValueError(f"{Path(path).name}: detection gives {detected}, expected {TINY_KREA2}")
    return build_detected_dit(path, meta, "Krea2", SEED, VERSION_KEY, {}, weights=lambda k, v: neutral(k, scaled(v)))


def verify_krea2(path, full: bool = False) -> dict:
    return verify_detected_dit(path, "Krea2", VERSION_KEY, full)


def load_krea2(path):
    """A ModelPatcher of the tiny Krea 2 (fp32, CPU), as ``comfy.sd.load_diffusion_model`` builds it."""
    return load_tiny_dit(path)


def random_conditioning(model, tokens: int = 8, seed: int = 0) -> list:
    """CONDITIONING standing in for the Qwen3-VL tap: [[context (1, tokens, txtlayers * txtdim), {}]]."""
    unet_config = model.model.model_config.unet_config
    width = unet_config["txtlayers"] * unet_config["txtdim"]
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, width, generator=gen), {}]]


def krea2_artifacts() -> dict:
    """ARTIFACTS entry (subfolder, builder, verifier) of the tiny Krea 2 (only where ComfyUI has it)."""
    return {KREA2: (DIFFUSION_MODELS, build_krea2, verify_krea2)} if available() else {}


def bench_family():
    """The tiny Krea 2 for ``scripts/bench_families.py --family krea2`` (ComfyUI >= 0.24: run it with
    ATELIER_COMFYUI=0.33.0)."""
    from scripts.bench_families import Family
    from .env import DEFAULT_BASE
    if not available():
        raise SystemExit("--family krea2: this ComfyUI has no Krea 2 (comfy/ldm/krea2); use ATELIER_COMFYUI=0.33.0")
    path = ensure_built(DEFAULT_BASE / "models" / DIFFUSION_MODELS / KREA2, verify_krea2, build_krea2)
    model = load_krea2(path)
    return Family("Krea 2", model, lambda tokens, seed: random_conditioning(model, tokens=tokens, seed=seed))
