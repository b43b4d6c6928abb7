"""A small procedural content picture (a house and a tree) for the CreativeSynth workflows: the
semantic image that AtelierImagePrompt brings into the artwork. Written into BASE/input at setup."""
from __future__ import annotations

import numpy as np

from .reference_image import write_input_png

CONTENT_IMAGE = "atelier_content.png"
SIZE = 256


def content_pixels(size: int = SIZE) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    img = np.stack([0.55 + 0.3 * y, 0.7 + 0.2 * y, 0.9 - 0.1 * y], axis=-1)  # pale sky
    img[y > 0.72] = (0.3, 0.55, 0.25)  # lawn
    wall = (x > 0.2) & (x < 0.55) & (y > 0.45) & (y < 0.78)
    img[wall] = (0.85, 0.8, 0.7)
    roof = (y > 0.25) & (y <= 0.45) & (np.abs(x - 0.375) < (y - 0.25) * 1.0)
    img[roof] = (0.7, 0.15, 0.1)
    door = (x > 0.33) & (x < 0.42) & (y > 0.6) & (y < 0.78)
    img[door] = (0.35, 0.2, 0.1)
    trunk = (x > 0.72) & (x < 0.76) & (y > 0.55) & (y < 0.78)
    img[trunk] = (0.4, 0.25, 0.1)
    crown = (x - 0.74) ** 2 + (y - 0.45) ** 2 < 0.016
    img[crown] = (0.15, 0.45, 0.15)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def ensure_content_image(base) -> tuple[str, dict]:
    """Write BASE/input/atelier_content.png unless it is already there."""
    return write_input_png(base, CONTENT_IMAGE, content_pixels)
