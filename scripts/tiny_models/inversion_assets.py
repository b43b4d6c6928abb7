"""What the inversion family's tests and workflows need in BASE besides the checkpoints:
the tiny SD1.5 ControlNet (models/controlnet) and the procedural reference image (input/)."""
from __future__ import annotations


def ensure_inversion_assets(base) -> list[str]:
    from .controlnet import ensure_sd15_controlnet
    from .reference_image import ensure_reference_image
    lines = []
    for name, ensure in (("controlnet", ensure_sd15_controlnet), ("reference image", ensure_reference_image)):
        status, info = ensure(base)
        lines.append(f"[tiny-models] {status:5s} {name} {info}")
    return lines
