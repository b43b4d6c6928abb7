"""A small procedural reference picture (gradient sky, sun, hills) for the style_from_image demo.

Generated at setup into BASE/input (no binary is committed, no third-party image is used).
"""
from __future__ import annotations

import numpy as np

REFERENCE_IMAGE = "atelier_reference.png"
SIZE = 256


def reference_pixels(size: int = SIZE) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    sky = np.stack([0.95 - 0.5 * y, 0.6 - 0.3 * y, 0.35 + 0.5 * y], axis=-1)
    sun = ((x - 0.7) ** 2 + (y - 0.3) ** 2) < 0.012
    sky[sun] = (1.0, 0.85, 0.3)
    for height, freq, colour in ((0.62, 9.0, (0.25, 0.35, 0.55)), (0.75, 5.0, (0.15, 0.3, 0.25))):
        hill = y > height + 0.06 * np.sin(freq * x + 1.3)
        shade = 0.85 + 0.15 * np.sin(40 * x) * np.sin(40 * y)
        sky[hill] = np.asarray(colour, dtype=np.float32) * shade[hill, None]
    return (np.clip(sky, 0, 1) * 255).astype(np.uint8)


def write_input_png(base, name: str, pixels) -> tuple[str, dict]:
    """Write BASE/input/<name> from ``pixels()`` (HxWx3 uint8) unless it is already there."""
    from pathlib import Path
    from PIL import Image
    path = Path(base) / "input" / name
    if path.exists() and path.stat().st_size > 0:
        return "ok", {"bytes": path.stat().st_size}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(pixels()).save(tmp, optimize=True)
    tmp.replace(path)
    return "built", {"bytes": path.stat().st_size}


def ensure_reference_image(base) -> tuple[str, dict]:
    """Write BASE/input/atelier_reference.png unless it is already there."""
    return write_input_png(base, REFERENCE_IMAGE, reference_pixels)
