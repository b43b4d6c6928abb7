"""The tiny seeded Flux.1 / SD3.5 and stand-in text conditioning for DiT tests (scripts/tiny_models/dit.py)."""
from __future__ import annotations

import torch

FLUX = "atelier_tiny_flux.safetensors"
SD35 = "atelier_tiny_sd35.safetensors"
_MODELS: dict = {}


def tiny_dit(comfy, name: str):
    """ModelPatcher of a tiny DiT (built into the test base if missing), loaded once per session."""
    if name not in _MODELS:
        from tiny_models.dit import build_dit, load_tiny_dit, verify_dit
        path = comfy.base_dir / "models" / "diffusion_models" / name
        try:
            verify_dit(path)
        except Exception:  # missing or stale: rebuild (a second)
            build_dit(path)
        _MODELS[name] = load_tiny_dit(path)
    return _MODELS[name]


def tiny_flux(comfy):
    return tiny_dit(comfy, FLUX)


def tiny_sd35(comfy):
    return tiny_dit(comfy, SD35)


def conditioning(model, tokens: int = 8, seed: int = 0, guidance: float = 3.5):
    from tiny_models.dit import random_conditioning
    return random_conditioning(model, tokens=tokens, seed=seed, guidance=guidance)


def sample(comfy, model, positive, negative, batch=3, cfg=1.0, steps=3, size=64, seed=0):
    """KSampler semantics on a 16-channel latent of ``size`` x ``size`` pixels."""
    latent = {"samples": torch.zeros([batch, 16, size // 8, size // 8])}
    return comfy.sample(model, positive, negative, latent=latent, batch=batch, cfg=cfg, steps=steps,
                        seed=seed, sampler_name="euler", scheduler="simple")


class QKVRecorder:
    """A foreign ``optimized_attention_override`` (another pack's): records every call's layer and
    q, k, v, and scales the output, so a test sees that it kept running and what it was given."""

    def __init__(self, scale: float = 1.0, keep: bool = False):
        self.scale, self.keep = scale, keep
        self.calls: list = []

    def __deepcopy__(self, memo):  # ModelPatcher.clone() deep-copies model_options; keep one recorder
        return self

    def __call__(self, func, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        entry = {"key": (options.get("block_type"), options.get("block_index")), "mask": kwargs.get("mask")}
        if self.keep:
            entry.update(q=args[0].clone(), k=args[1].clone(), v=args[2].clone())
        self.calls.append(entry)
        out = func(*args, **kwargs)
        return out * self.scale if self.scale != 1.0 else out


def with_override(model, override):
    m = model.clone()
    m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
    return m
