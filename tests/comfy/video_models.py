"""The tiny video models of scripts/tiny_models (Wan, LTX, MiniMax H3) as the video tests load them: one
ModelPatcher per case, built into the test base if missing or stale, skipped with the reason where this
test bed's ComfyUI lacks the family."""
import importlib.util

import pytest

DIFFUSION_MODELS = "diffusion_models"

# case -> (module, file attribute, ComfyUI config class, diffusion model class)
CASES = {
    "wan21_t2v": ("wan", "WAN21_T2V", "WAN21_T2V", "WanModel"),
    "wan21_i2v": ("wan", "WAN21_I2V", "WAN21_I2V", "WanModel"),
    "wan22_i2v_14b": ("wan", "WAN22_I2V", "WAN21_T2V", "WanModel"),
    "wan22_ti2v_5b": ("wan", "WAN22_TI2V", "WAN22_T2V", "WanModel"),
    "ltxv": ("ltx", "LTXV", "LTXV", "LTXVModel"),
    "ltxav": ("ltx", "LTXAV", "LTXAV", "LTXAVModel"),
    "minimax_h3": ("minimax", "MINIMAX_H3", "MiniMaxH3", "MiniMaxH3Model"),
}
_LOADED: dict = {}


def _skip_reason(case: str):
    if case == "ltxav" and importlib.util.find_spec("comfy.ldm.lightricks.av_model") is None:
        return "LTX-2 (LTXAV, comfy/ldm/lightricks/av_model.py) is in the 0.33.0 test bed, not in this ComfyUI"
    if case == "minimax_h3" and importlib.util.find_spec("comfy.ldm.minimax") is None:
        return "MiniMax H3 (comfy/ldm/minimax) is in the 0.33.0 test bed, not in this ComfyUI"
    return None


def tiny(comfy, case: str):
    """(module, path, ModelPatcher) of a case's tiny model, built into the test base if missing or stale."""
    reason = _skip_reason(case)
    if reason:
        pytest.skip(reason)
    if case not in _LOADED:
        import importlib
        module_name, attr, _, _ = CASES[case]
        module = importlib.import_module(f"tiny_models.{module_name}")
        path = comfy.base_dir / "models" / DIFFUSION_MODELS / getattr(module, attr)
        try:
            getattr(module, f"verify_{module_name}")(path)
        except Exception:  # missing or stale: rebuild (a second)
            getattr(module, f"build_{module_name}")(path)
        _LOADED[case] = (module, path, getattr(module, f"load_{module_name}")(path))
    return _LOADED[case]


def forget():
    """Drop the loaded models (a test module's end: the next module loads its own)."""
    _LOADED.clear()


def streams(latent):
    """A latent's streams: (video, audio) of LTX-2's NestedTensor, else the one tensor."""
    return list(latent.unbind()) if getattr(latent, "is_nested", False) else [latent]


def spy_separate_calls(run):
    """Run ``run()`` recording every call the pack's video override handles: its layer key, q/k/v as the
    model gave them, the prompt's token count, what the model's own attention gives on the prompt's keys
    alone (the same function, the same arguments), and what the override returned."""
    from tests.comfy.dit_helpers import spy_on
    from tests.pack import pack_module
    calls = []

    def record(override, func, args, kwargs, out):
        q, k, v = args[:3]
        text = override.tokens.text
        model_mask = kwargs.get("mask", args[4] if len(args) > 4 else None)  # by name, or (0.3.75) by position
        if model_mask is not None and k.shape[-2] != q.shape[-2]:
            model_mask = model_mask[..., :text]
        heads = kwargs.get("heads", args[3] if len(args) > 3 else None)
        rest = {n: a for n, a in kwargs.items() if n not in ("heads", "mask")}  # transformer_options, precision
        own = func(q, k[:, :text], v[:, :text], heads, mask=model_mask, **rest) if k.shape[-2] != q.shape[-2] else None
        options = kwargs.get("transformer_options") or {}
        calls.append(dict(key=override.family.layer_key(options), q=q, k=k, v=v, heads=heads, text=text, own=own,
                          out=out, cond_or_uncond=list(options.get("cond_or_uncond", [0]))))
    spy_on(pack_module("attention.dispatch.separate_override").SeparateOverride, run, record)
    return calls
