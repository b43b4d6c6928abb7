"""Small API-format graphs built from core nodes, for tests to extend (add your nodes by id)."""
from __future__ import annotations

from .paths import SD15


def txt2img(ckpt: str = SD15, prompt: str = "a watercolor fox", negative: str = "blurry", seed: int = 0,
            steps: int = 4, cfg: float = 7.0, width: int = 256, height: int = 256, batch: int = 1,
            sampler_name: str = "euler", scheduler: str = "normal", save: bool = True) -> dict:
    """Checkpoint(1) -> CLIPTextEncode(2 +, 3 -) -> EmptyLatentImage(4) -> KSampler(5) -> VAEDecode(6) -> SaveImage(7).

    The MODEL feeding the sampler is ["1", 0]: to insert a patch node, add it and point
    ``g["5"]["inputs"]["model"]`` at it. Without ``save`` the graph ends at node 6 (PreviewImage).
    """
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "seed": seed, "steps": steps, "cfg": cfg,
                                                   "sampler_name": sampler_name, "scheduler": scheduler, "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage" if save else "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    if save:
        g["7"]["inputs"]["filename_prefix"] = "atelier_test"
    return g
