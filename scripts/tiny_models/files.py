"""What every tiny-model builder does with its state dict: save it with the test bed's metadata, check a
file's keys and shapes against the model it should be, and load a tiny text encoder the way ComfyUI's
CLIPLoader loads one (``comfy.sd.CLIP`` + ``load_sd``)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .fill import TINY_VERSION


def save_tiny(path, sd: dict, kind: str, **metadata: str) -> dict:
    """Write ``sd`` to ``path`` (atomically) with {atelier_tiny, kind, **metadata}; the builder's summary."""
    import comfy.utils
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.contiguous() for k, v in sd.items()}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two test runs may build a missing file at once
    comfy.utils.save_torch_file(sd, str(tmp), metadata={"atelier_tiny": TINY_VERSION, "kind": kind, **metadata})
    tmp.replace(path)
    params = sum(v.numel() for v in sd.values())
    logging.info("built %s (%s, %.2f M params)", path, kind, params / 1e6)
    return {"kind": kind, "params": params}


def ensure_built(path, verify, build):
    """``path`` as ``verify`` accepts it: checked, or (missing or stale) rebuilt with ``build`` (a second for
    the tiny models). Returns ``path``."""
    try:
        verify(path)
    except Exception:  # missing, or built by an older builder
        build(path)
    return path


def check_keys(path, sd: dict, want: dict, what: str) -> None:
    """Raise unless ``sd`` holds every key of ``want`` at its shape."""
    if set(want) - set(sd) or any(tuple(sd[k].shape) != tuple(v.shape) for k, v in want.items()):
        raise ValueError(f"{path}: keys or shapes differ from the {what} it should be")


def load_file_keys(path) -> dict:
    """The file's tensors as meta tensors of their shapes (no weights read)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}


def file_metadata(path) -> dict:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def load_tiny_clip(path, clip_class, tokenizer_class, what: str, embedding_directory=None, allowed_missing=()):
    """comfy.sd.CLIP of a tiny text encoder, each file loaded with ``load_sd`` as ComfyUI's CLIPLoader does
    (``path``: one file or several, e.g. Flux's CLIP-L and T5)."""
    import comfy.sd
    import comfy.utils
    paths = path if isinstance(path, (list, tuple)) else [path]
    state_dicts = [comfy.utils.load_torch_file(str(p), safe_load=True) for p in paths]

    class Target:
        clip = clip_class
        tokenizer = tokenizer_class
        params = {}

    clip = comfy.sd.CLIP(Target, embedding_directory=embedding_directory,
                         parameters=sum(comfy.utils.calculate_parameters(sd) for sd in state_dicts))
    for sd in state_dicts:
        missing, _ = clip.load_sd(sd)
        missing = [k for k in missing if not k.endswith(tuple(allowed_missing))]
        if missing:
            raise ValueError(f"{what}: missing weights {missing[:5]}")
    return clip
