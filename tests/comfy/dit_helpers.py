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


# ---- the pack's DiT controls as the family tests drive them -------------------------------------------
REGION, ATTENTION, MIX = "AtelierRegion", "AtelierRegionalAttention", "AtelierAestheticMix"
CURVE = dict(weight=1.0, curve="constant", end_weight=0.0, switch_at=0.5, weights="1")


def pack(name):
    from tests.pack import pack_module
    return pack_module(name)


def region(comfy, cond, x=0.0, y=0.0, width=0.5, height=1.0, regions=None, **curve):
    """AtelierRegion's REGIONS (``regions``: the chain it extends), the weight curve CURVE unless given."""
    return comfy.node_class(REGION).execute(cond, x, y, width, height, **dict(CURVE, **curve), regions=regions).args[0]


def regional(comfy, model, regions, layers="all"):
    return comfy.node_class(ATTENTION).execute(model, regions, layers, 0.0, 1.0).args[0]


def regional_at_no_layer(model, regions, no_layer):
    """Regional attention whose layer selection (``no_layer``: a key the model does not have) matches no
    layer: its prompt streams are still carried, but no layer blends them in."""
    layers = pack("attention.core.layers")
    control = pack("attention.regional").RegionalControl(regions=tuple(regions), layers=layers.LayerSelection((no_layer,)))
    return pack("attention.dispatch.dispatcher").attach(model, control, node=ATTENTION)


def aesthetic_mix(model, aesthetic, strength):
    """AtelierAestheticMix's control, with an aesthetic embedding standing in for the text encoder's."""
    control = pack("attention.aesthetic_mix").AestheticMixControl(aesthetic=aesthetic, strength=strength)
    return pack("attention.dispatch.dispatcher").attach(model, control, node=MIX)


def spy_on(cls, run, record):
    """Run ``run()`` with ``cls.__call__`` (an attention override of the pack's) wrapped: after each call,
    ``record(override, func, args, kwargs, output)``."""
    original = cls.__call__

    def spy(self, func, *args, **kwargs):
        out = original(self, func, *args, **kwargs)
        record(self, func, args, kwargs, out)
        return out
    cls.__call__ = spy
    try:
        run()
    finally:
        cls.__call__ = original


def spy_calls(run):
    """Run ``run()`` recording every pack override call: (override, q/k/v as the model gave them,
    layer key, output)."""
    calls = []

    def record(override, func, args, kwargs, out):
        options = kwargs["transformer_options"]  # the model rewrites block_index in place: read it now
        calls.append((override, args, (options.get("block_type"), options.get("block_index")), out))
    spy_on(pack("attention.dispatch.dit_override").DiTOverride, run, record)
    return calls


def plain_attention(q, k, v):
    """ComfyUI's own attention on (batch, heads, tokens, dim) q/k/v."""
    from comfy.ldm.modules.attention import optimized_attention
    return optimized_attention(q, k, v, q.shape[1], skip_reshape=True)


def adain(x, ref, eps=1e-5):
    return ((x - x.mean(-2, keepdim=True)) / (x.var(-2, keepdim=True) + eps).sqrt()
            * (ref.var(-2, keepdim=True) + eps).sqrt() + ref.mean(-2, keepdim=True))



def assert_outside_the_region_is_the_models_attention(out, model_call, outside):
    """Regional attention computes the cond rows' joint attention itself, split at the prompt's keys (one
    image-key attention shared by every region): outside every region that is the model's attention within
    one call's rounding of the model's own call; inside the region the blend acts."""
    from tests.tolerance import ONE_CALL, assert_changed, assert_close
    assert_close(out[:, outside], model_call[:, outside], ulps=ONE_CALL, magnitude_of=model_call,
                 what="tokens outside the region vs the model's own call")
    assert_changed(out[:, ~outside], model_call[:, ~outside], what="tokens inside the region")
