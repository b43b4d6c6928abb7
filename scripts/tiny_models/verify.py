"""Checks that built artifacts load through ComfyUI the way users load them."""
from __future__ import annotations

import logging
from pathlib import Path


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def lora_key_report(path) -> dict:
    """Header-only check: every LoRA module name maps to a tiny SD1.5 weight of matching shape."""
    from safetensors import safe_open
    from .lora import sd15_lora_targets
    targets = sd15_lora_targets()
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
    prefixes = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in keys}
    unknown = sorted(p for p in prefixes if p not in targets)
    bad = sorted(p for p in prefixes if p in targets and (
        shapes.get(f"{p}.lora_up.weight", (0,))[0] != targets[p][1][0]
        or shapes.get(f"{p}.lora_down.weight", (0, 0))[1] != targets[p][1][1]))
    return {"modules": len(prefixes), "unknown": unknown, "bad_shape": bad}


def verify_sd15_lora(path, full: bool = False, ckpt: Path | None = None) -> dict:
    rep = lora_key_report(path)
    if rep["unknown"] or rep["bad_shape"]:
        raise ValueError(f"{path}: unknown LoRA modules {rep['unknown'][:5]}, bad shapes {rep['bad_shape'][:5]}")
    if full:
        import comfy.sd
        import comfy.utils
        from .checkpoints import load_checkpoint
        from . import SD15, model_path
        model, clip, _ = load_checkpoint(ckpt or model_path(SD15, Path(path).parents[2]))
        cap = _Capture()
        logging.getLogger().addHandler(cap)
        try:
            m2, c2 = comfy.sd.load_lora_for_models(model, clip, comfy.utils.load_torch_file(str(path), safe_load=True), 1.0, 1.0)
        finally:
            logging.getLogger().removeHandler(cap)
        not_loaded = [m for m in cap.messages if "lora key not loaded" in m or "NOT LOADED" in m]
        if not_loaded:
            raise ValueError(f"{path}: {not_loaded[:5]}")
        patched = len(m2.patches) + len(c2.patcher.patches)
        if patched != rep["modules"]:
            raise ValueError(f"{path}: {patched} weights patched, {rep['modules']} LoRA modules")
        rep["patched"] = patched
    return rep
