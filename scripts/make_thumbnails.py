"""Template thumbnails (workflows/<name>.jpg, shown by Browse Templates): a small title card per
template, drawn procedurally (no third-party images). Re-run after adding a template."""
from __future__ import annotations

import colorsys
import hashlib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
SIZE = 256


def card(name: str) -> Image.Image:
    hue = int(hashlib.sha1(name.encode()).hexdigest()[:4], 16) / 0xFFFF
    img = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(img)
    for y in range(SIZE):  # vertical gradient in the template's own hue
        r, g, b = colorsys.hsv_to_rgb(hue, 0.55, 0.35 + 0.45 * y / SIZE)
        draw.line([(0, y), (SIZE, y)], fill=(int(r * 255), int(g * 255), int(b * 255)))
    for i in range(4):  # four "images in one style"
        x0 = 24 + (i % 2) * 108
        y0 = 24 + (i // 2) * 90
        draw.rounded_rectangle([x0, y0, x0 + 100, y0 + 80], radius=10, outline=(255, 255, 255), width=3)
    font = ImageFont.load_default()
    draw.text((24, 212), "Attention Atelier", fill=(255, 255, 255), font=font)
    draw.text((24, 228), name.replace("_", " "), fill=(255, 255, 255), font=font)
    return img


def main():
    for template in sorted(WORKFLOWS.glob("*.json")):
        out = template.with_suffix(".jpg")
        card(template.stem).save(out, quality=80, optimize=True)
        print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
