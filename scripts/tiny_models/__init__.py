"""Seeded random-weight models with real ComfyUI key names, for tests and demos (never shipped).

Add new builders (ControlNet, IP-Adapter, CLIP vision, ...) as modules here and register them in
``ARTIFACTS``: (relative path under BASE/models, builder(path) -> info dict, verifier(path) -> info dict).
Call :func:`tiny_models.env.bootstrap` before using anything that imports comfy.
"""
from __future__ import annotations

from .env import DEFAULT_BASE, DEFAULT_COMFY, REPO_ROOT, bootstrap, ensure_base_dirs  # noqa: F401

SD15 = "atelier_tiny_sd15.safetensors"
SD15_KLVAE = "atelier_tiny_sd15_klvae.safetensors"
SDXL = "atelier_tiny_sdxl.safetensors"
SD15_LORA = "atelier_tiny_sd15_lora.safetensors"


def _ckpt_builder(path):
    from .checkpoints import build_checkpoint
    return build_checkpoint(path)


def _ckpt_verifier(expected_kind):
    def verify(path, full: bool = False):
        from .checkpoints import detect_checkpoint, load_checkpoint
        kind = detect_checkpoint(path)
        if kind != expected_kind:
            raise ValueError(f"{path}: detected as {kind}, expected {expected_kind}")
        if full:
            model, clip, vae = load_checkpoint(path)
            got = type(model.model.model_config).__name__
            if got != expected_kind or clip is None or vae is None:
                raise ValueError(f"{path}: load_checkpoint_guess_config gave {got}, clip={clip}, vae={vae}")
        return {"kind": kind}
    return verify


def _lora_builder(path):
    from .lora import build_sd15_lora
    return build_sd15_lora(path)


def _lora_verifier(path, full: bool = False):
    from .verify import verify_sd15_lora
    return verify_sd15_lora(path, full=full)


# name -> (subfolder of BASE/models, builder, verifier)
ARTIFACTS = {
    SD15: ("checkpoints", _ckpt_builder, _ckpt_verifier("SD15")),
    SD15_KLVAE: ("checkpoints", _ckpt_builder, _ckpt_verifier("SD15")),
    SDXL: ("checkpoints", _ckpt_builder, _ckpt_verifier("SDXL")),
    SD15_LORA: ("loras", _lora_builder, _lora_verifier),
}


def model_path(name: str, base=DEFAULT_BASE):
    from pathlib import Path
    return Path(base) / "models" / ARTIFACTS[name][0] / name
