"""A seeded random-weight ControlNet for the tiny SD1.5, built from ComfyUI's own ControlNet class.

Keys are the original (lllyasviel) checkpoint names under ``control_model.``, which core
ControlNetLoader detects like a real SD1.5 ControlNet. Zero convolutions get random (non-zero)
weights so the residuals really change the UNet's activations.
"""
from __future__ import annotations

import torch

from .checkpoints import TINY_SD15_UNET
from .fill import TINY_VERSION, SeededFiller

SD15_CONTROLNET = "atelier_tiny_sd15_controlnet.safetensors"
HINT_CHANNELS = 3


def controlnet_state_dict(seed: int = 606, dtype: torch.dtype = torch.float16) -> dict:
    import comfy.cldm.cldm
    config = {k: v for k, v in TINY_SD15_UNET.items() if k not in ("out_channels", "use_temporal_attention",
                                                                    "use_temporal_resblock")}
    with torch.device("meta"):
        net = comfy.cldm.cldm.ControlNet(hint_channels=HINT_CHANNELS, num_heads=8, num_head_channels=-1,
                                         device=torch.device("meta"), **config)
    filled = SeededFiller(seed, dtype).fill(net.state_dict())
    return {f"control_model.{k}": v.contiguous() for k, v in filled.items()}


def build_sd15_controlnet(path) -> dict:
    import comfy.utils
    from pathlib import Path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = controlnet_state_dict()
    tmp = path.with_suffix(".tmp")
    comfy.utils.save_torch_file(sd, str(tmp), metadata={"atelier_tiny": TINY_VERSION, "kind": "controlnet_sd15"})
    tmp.replace(path)
    return {"keys": len(sd), "params": sum(v.numel() for v in sd.values())}


def verify_sd15_controlnet(path, full: bool = False) -> dict:
    """Load it through core's loader (comfy.controlnet.load_controlnet) as ControlNetLoader does."""
    import comfy.controlnet
    net = comfy.controlnet.load_controlnet(str(path))
    if net is None or type(net).__name__ != "ControlNet":
        raise ValueError(f"{path}: core loader gave {type(net).__name__}, expected ControlNet")
    return {"type": type(net).__name__}


def ensure_sd15_controlnet(base) -> tuple[str, dict]:
    """Build BASE/models/controlnet/atelier_tiny_sd15_controlnet.safetensors unless a good one is there."""
    from pathlib import Path
    path = Path(base) / "models" / "controlnet" / SD15_CONTROLNET
    if path.exists():
        try:
            from safetensors import safe_open
            with safe_open(str(path), framework="pt") as f:
                if (f.metadata() or {}).get("atelier_tiny") == TINY_VERSION:
                    return "ok", verify_sd15_controlnet(path)
        except Exception:  # broken: rebuild
            pass
    info = build_sd15_controlnet(path)
    info.update(verify_sd15_controlnet(path))
    return "built", info
