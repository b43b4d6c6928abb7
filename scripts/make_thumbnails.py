"""Template thumbnails (workflows/<name>.jpg, shown by Browse Templates): a schematic of what each
workflow does (inputs -> result, drawn with PIL, no third-party images) and, along the bottom, the
models it needs (read from the template's properties.models). Re-run after changing a template:

    .venv/bin/python scripts/make_thumbnails.py
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
W, H = 320, 240
BG, FG, DIM = (32, 36, 44), (236, 236, 236), (150, 156, 168)
WARM = [(244, 162, 89), (231, 111, 81), (252, 214, 112), (120, 60, 80)]
COOL = [(86, 140, 200), (60, 90, 140), (170, 210, 235), (40, 50, 80)]
SHORT = {"sd_xl_base_1.0.safetensors": "SDXL base 1.0", "v1-5-pruned-emaonly-fp16.safetensors": "SD1.5",
         "ip-adapter_sdxl_vit-h.safetensors": "IP-Adapter SDXL ViT-H", "ip-adapter_sd15.safetensors": "IP-Adapter SD1.5",
         "clip_vision_h.safetensors": "CLIP vision H", "control_v11f1e_sd15_tile_fp16.safetensors": "ControlNet tile",
         "lcm-lora-sdv1-5.safetensors": "LCM-LoRA", "flux1-dev.safetensors": "FLUX.1 dev",
         "clip_l.safetensors": "CLIP-L", "t5xxl_fp8_e4m3fn.safetensors": "T5-XXL fp8", "ae.safetensors": "Flux VAE",
         "z_image_turbo_bf16.safetensors": "Z-Image Turbo", "qwen_3_4b.safetensors": "Qwen3-4B",
         "qwen_image_fp8_e4m3fn.safetensors": "Qwen-Image", "qwen_2.5_vl_7b_fp8_scaled.safetensors": "Qwen2.5-VL 7B",
         "qwen_image_vae.safetensors": "Qwen-Image VAE", "flux-2-klein-4b.safetensors": "FLUX.2 klein 4B",
         "flux2-vae.safetensors": "FLUX.2 VAE", "krea2_turbo_fp8_scaled.safetensors": "Krea 2 Turbo",
         "qwen3vl_4b_fp8_scaled.safetensors": "Qwen3-VL 4B"}


def font(size: int):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1 has one size
        return ImageFont.load_default()


def tile(d: ImageDraw.ImageDraw, x: int, y: int, s: int, palette, motif: str, seed: int = 0):
    """A tiny picture: sky/ground in the palette, one motif."""
    sky, ground, accent, dark = palette[2], palette[1], palette[0], palette[3]
    d.rectangle([x, y, x + s, y + s], fill=sky)
    d.rectangle([x, y + s * 2 // 3, x + s, y + s], fill=ground)
    if motif == "house":
        d.rectangle([x + s * 0.2, y + s * 0.45, x + s * 0.55, y + s * 0.75], fill=accent)
        d.polygon([(x + s * 0.15, y + s * 0.47), (x + s * 0.375, y + s * 0.25), (x + s * 0.6, y + s * 0.47)], fill=dark)
    elif motif == "tree":
        d.rectangle([x + s * 0.47, y + s * 0.5, x + s * 0.53, y + s * 0.75], fill=dark)
        d.ellipse([x + s * 0.3, y + s * 0.2, x + s * 0.7, y + s * 0.58], fill=accent)
    elif motif == "sun":
        d.ellipse([x + s * 0.55, y + s * 0.12, x + s * 0.85, y + s * 0.42], fill=accent)
        d.polygon([(x, y + s * 0.7), (x + s * 0.4, y + s * 0.45), (x + s * 0.8, y + s * 0.7)], fill=dark)
    elif motif == "boat":
        d.polygon([(x + s * 0.2, y + s * 0.62), (x + s * 0.8, y + s * 0.62), (x + s * 0.65, y + s * 0.75),
                   (x + s * 0.35, y + s * 0.75)], fill=dark)
        d.polygon([(x + s * 0.5, y + s * 0.2), (x + s * 0.5, y + s * 0.6), (x + s * 0.75, y + s * 0.6)], fill=accent)
    elif motif == "noise":
        rng = random.Random(seed)
        step = max(2, s // 16)
        for i in range(0, s, step):
            for j in range(0, s, step):
                v = rng.randint(40, 220)
                d.rectangle([x + i, y + j, x + i + step, y + j + step], fill=(v, v, v))
    d.rectangle([x, y, x + s, y + s], outline=FG, width=2)


def arrow(d, x0, y, x1, label: str = ""):
    d.line([x0, y, x1 - 6, y], fill=FG, width=3)
    d.polygon([(x1, y), (x1 - 10, y - 6), (x1 - 10, y + 6)], fill=FG)
    if label:
        d.text(((x0 + x1) // 2, y - 16), label, fill=DIM, font=font(11), anchor="mm")


def pipeline(d, left: list, mid: str, right: list):
    """Input tiles on the left, an arrow through the Atelier step, result tiles on the right."""
    s = 64 if len(left) < 3 else 48
    y0 = 36
    for i, (palette, motif, caption) in enumerate(left):
        y = y0 + i * (s + 22)
        tile(d, 14, y, s, palette, motif, seed=i)
        d.text((14 + s // 2, y + s + 9), caption, fill=DIM, font=font(11), anchor="mm")
    arrow(d, 14 + s + 12, 36 + s // 2 + (len(left) - 1) * (s + 22) // 2, 200, mid)
    rs = 64 if len(right) == 1 else 48
    for i, (palette, motif, caption) in enumerate(right):
        x = (222 if len(right) == 1 else 208) + (i % 2) * (rs + 8)
        y = 36 + (i // 2) * (rs + 22)
        tile(d, x, y, rs, palette, motif, seed=10 + i)
        if caption:
            d.text((x + rs // 2, y + rs + 9), caption, fill=DIM, font=font(11), anchor="mm")


def regions(d):
    x, y, s = 20, 34, 150
    d.rectangle([x, y, x + s * 4 // 3, y + s], fill=(40, 44, 54), outline=FG, width=2)
    for (bx, by, bw, bh), color, label in [((0.04, 0.4, 0.44, 0.55), WARM[1], "house"),
                                            ((0.56, 0.3, 0.4, 0.65), (80, 170, 100), "tree"),
                                            ((0.3, 0.02, 0.45, 0.25), COOL[0], "cloud")]:
        box = [x + bx * s * 4 // 3, y + by * s, x + (bx + bw) * s * 4 // 3, y + (by + bh) * s]
        d.rectangle(box, outline=color, width=3)
        d.text((box[0] + 4, box[1] + 3), label, fill=color, font=font(12))
    px, py, pw, ph = 230, 60, 80, 70  # weight over steps
    d.line([px, py, px, py + ph, px + pw, py + ph], fill=DIM, width=2)
    pts = [(px + i, py + ph - ph * (0.9 - 0.5 * i / pw)) for i in range(pw)]
    d.line(pts, fill=WARM[1], width=3)
    d.text((px + pw // 2, py + ph + 10), "weight / steps", fill=DIM, font=font(11), anchor="mm")


def composite(d):
    labels = ["LoRA", "ControlNet", "StyleAligned", "Image prompt", "Regions", "Aesthetic"]
    for i, label in enumerate(labels):
        x, y = 16 + (i % 3) * 100, 40 + (i // 3) * 70
        d.rounded_rectangle([x, y, x + 88, y + 52], radius=8, fill=(52, 60, 78), outline=COOL[2], width=2)
        d.text((x + 44, y + 26), label, fill=FG, font=font(12), anchor="mm")
    arrow(d, 120, 176, 200, "")
    d.text((160, 192), "one KSampler", fill=DIM, font=font(11), anchor="mm")


SCENES = {
    "style_aligned_set": lambda d: pipeline(d, [([(200, 200, 200)] * 3 + [(90, 90, 90)], "house", "prompt 1"),
                                                ([(200, 200, 200)] * 3 + [(90, 90, 90)], "boat", "prompt 2")],
                                            "one style", [(WARM, "house", "house"), (WARM, "boat", "boat"),
                                                          (WARM, "tree", "tree"), (WARM, "sun", "sun")]),
    "style_from_image": lambda d: pipeline(d, [(COOL, "sun", "your style")], "invert + share",
                                           [(COOL, "house", "prompt 1"), (COOL, "tree", "prompt 2")]),
    "aesthetic_mix": lambda d: pipeline(d, [(DIMP := [(180, 180, 180), (110, 110, 110), (210, 210, 210),
                                                      (60, 60, 60)], "sun", "content")],
                                        "+ golden hour", [(WARM, "sun", "same scene, new look")]),
    "regional_layout": regions,
    "invert_and_reconstruct": lambda d: pipeline(d, [(COOL, "house", "your image")], "invert",
                                                 [(COOL, "noise", "x_T"), (COOL, "house", "back")]),
    "artistic_synthesis": lambda d: pipeline(d, [(WARM, "sun", "artwork"), (COOL, "house", "content")],
                                             "style + content", [(WARM, "house", "content, painted")]),
    "artistic_editing": lambda d: pipeline(d, [(WARM, "sun", "artwork")], "\"snowy night\"",
                                           [([(250, 250, 250), (200, 210, 230), (90, 100, 140), (30, 30, 60)],
                                             "sun", "edited")]),
    "all_in_one": composite,
}


def film_strip(d, x: int, y: int, s: int, frames: int = 3):
    """A strip of ``frames`` frames of side ``s`` with sprocket holes above and below."""
    d.rectangle([x - 4, y - 10, x + frames * (s + 6) - 2, y + s + 10], fill=(16, 16, 20))
    for i in range(frames * 3):
        hx = x + i * (s + 6) // 3
        d.rectangle([hx, y - 7, hx + 5, y - 3], fill=DIM)
        d.rectangle([hx, y + s + 3, hx + 5, y + s + 7], fill=DIM)


def video_regions(d):
    """Three frames of a clip: the boat's box moves left to right along its keyframes, the sun's box stays."""
    s, y = 88, 40
    film_strip(d, 14, y, s)
    for i in range(3):
        x = 14 + i * (s + 6)
        tile(d, x, y, s, COOL, "sun")
        bx, by = x + int(s * (0.02 + 0.33 * i)), y + int(s * 0.45)
        d.polygon([(bx + 4, by + 22), (bx + 24, by + 22), (bx + 20, by + 28), (bx + 8, by + 28)], fill=WARM[3])
        d.polygon([(bx + 14, by + 4), (bx + 14, by + 21), (bx + 24, by + 21)], fill=(250, 250, 250))
        d.rectangle([bx, by, bx + int(s * 0.3), by + int(s * 0.35)], outline=WARM[1], width=3)
        d.rectangle([x + int(s * 0.6), y + 3, x + int(s * 0.9), y + int(s * 0.33)], outline=WARM[2], width=2)
        d.text((x + s // 2, y + s + 20), ("first", "middle", "last")[i], fill=DIM, font=font(11), anchor="mm")
    arrow(d, 30, 186, 290, "the boat's keyframes")


def video_clips(d):
    """Prompts -> several clips (film strips) in one style."""
    for i, (motif, caption) in enumerate((("sun", "prompt 1"), ("boat", "prompt 2"), ("tree", "prompt 3"))):
        y = 38 + i * 56
        d.text((16, y + 9), caption, fill=DIM, font=font(11))
        arrow(d, 74, y + 15, 112, "")
        film_strip(d, 124, y, 30, frames=4)
        for j in range(4):
            tile(d, 124 + j * 36, y, 30, WARM, motif, seed=j)
    d.line([278, 30, 284, 30, 284, 190, 278, 190], fill=FG, width=2)  # a bracket over the clips: one style
    d.text((302, 104), "one", fill=FG, font=font(12), anchor="mm")
    d.text((302, 120), "style", fill=FG, font=font(12), anchor="mm")


SCENES.update(wan_regional_layout=video_regions, wan_style_aligned_clips=video_clips)  # the Wan 2.2 video templates
SHORT.update({"wan2.2_ti2v_5B_fp16.safetensors": "Wan 2.2 TI2V 5B", "umt5_xxl_fp8_e4m3fn_scaled.safetensors": "UMT5-XXL",
              "wan2.2_vae.safetensors": "Wan 2.2 VAE"})


def scene(name: str):
    """A template's scene; a model family's variant of a template (``<family>_style_aligned_set``,
    ``<family>_regional_layout``) draws the scene of the template it varies."""
    if name in SCENES:
        return SCENES[name]
    return next(SCENES[base] for base in SCENES if name.endswith("_" + base))


def needed_models(template: Path) -> list[str]:
    names = []
    for node in json.loads(template.read_text())["nodes"]:
        for model in node.get("properties", {}).get("models", []):
            label = SHORT.get(model["name"], model["name"])
            if label not in names:
                names.append(label)
    return names


def card(template: Path) -> Image.Image:
    img = Image.new("RGB", (W, H), BG)
    d = ImageDraw.Draw(img)
    d.text((12, 10), template.stem.replace("_", " "), fill=FG, font=font(16))
    scene(template.stem)(d)
    models = needed_models(template)
    d.rectangle([0, H - 40, W, H], fill=(22, 24, 30))
    d.text((10, H - 36), "needs: " + ", ".join(models[:2]), fill=FG, font=font(12))
    if len(models) > 2:
        d.text((10, H - 19), "       " + ", ".join(models[2:]), fill=FG, font=font(12))
    return img


def main():
    for template in sorted(WORKFLOWS.glob("*.json")):
        out = template.with_suffix(".jpg")
        card(template).save(out, quality=82, optimize=True)
        print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
