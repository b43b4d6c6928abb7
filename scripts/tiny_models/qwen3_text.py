"""Tiny stand-in for Z-Image's text encoder, Qwen3-4B (``qwen_3_4b.safetensors``, CLIPLoader type
lumina2).

ComfyUI's CLIPLoader detects Qwen3-4B from the file's keys and builds ``comfy.text_encoders.z_image``'s
``ZImageTEModel`` (``llama.Qwen3_4B``) from a fixed full-size config (2560 wide, 36 layers), which these
machines cannot hold. The stand-in keeps everything else real: ComfyUI's ZImageTEModel and its
Qwen3 transformer class (``llama.Qwen3_4B``, built from a config dict), its ``ZImageTokenizer`` (the
real Qwen2 BPE tokenizer and the chat template), and ``comfy.sd.CLIP`` loading the file with
``load_sd`` as CLIPLoader does. Only the sizes are tiny (hidden ``width``, 3 layers: the encoder reads the
second-to-last layer); ``width`` must
equal the tiny Z-Image's caption width (``cap_feat_dim``). The test-bed node ``TestBedCLIPLoader``
(scripts/test_bed_nodes) builds it.
"""
from __future__ import annotations

import logging

import torch

from .fill import TINY_VERSION, SeededFiller

QWEN3_TEXT = "atelier_tiny_qwen3_4b.safetensors"
SEED = 2601
WIDTH = 32  # = the tiny Z-Image's cap_feat_dim
# ComfyUI's Qwen3_4BConfig at a tiny width (head_dim stays the class constant, 128)
TINY_QWEN3 = {"hidden_size": WIDTH, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
              "num_key_value_heads": 1}


def tiny_qwen3_text_encoder_class(width: int = WIDTH):
    """ComfyUI's ZImageTEModel with its Qwen3 built at a tiny width."""
    import comfy.sd1_clip as sd1_clip
    import comfy.text_encoders.llama
    from comfy.text_encoders import z_image
    config = dict(TINY_QWEN3, hidden_size=width)

    class TinyQwen3Model(z_image.Qwen3_4BModel):
        def __init__(self, device="cpu", layer="hidden", layer_idx=-2, dtype=None, attention_mask=True,
                     model_options={}):
            sd1_clip.SDClipModel.__init__(self, device=device, layer=layer, layer_idx=layer_idx,
                                          textmodel_json_config=dict(config), dtype=dtype,
                                          special_tokens={"pad": 151643}, layer_norm_hidden_state=False,
                                          model_class=comfy.text_encoders.llama.Qwen3_4B,
                                          enable_attention_masks=attention_mask,
                                          return_attention_masks=attention_mask, model_options=model_options)

    class TinyZImageTextEncoder(z_image.ZImageTEModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            sd1_clip.SD1ClipModel.__init__(self, device=device, dtype=dtype, name="qwen3_4b",
                                           clip_model=TinyQwen3Model, model_options=model_options)

    return TinyZImageTextEncoder


def tiny_qwen3_clip_target(width: int = WIDTH):
    from comfy.text_encoders.z_image import ZImageTokenizer

    class Target:
        clip = tiny_qwen3_text_encoder_class(width)
        tokenizer = ZImageTokenizer
        params = {}

    return Target


def _meta_state_dict(width: int = WIDTH) -> dict:
    with torch.device("meta"):
        encoder = tiny_qwen3_text_encoder_class(width)(device=torch.device("meta"), dtype=torch.float32)
    return encoder.qwen3_4b.transformer.state_dict()


def build_qwen3_text(path, name: str | None = None) -> dict:
    from pathlib import Path
    import comfy.utils
    path = Path(path)
    sd = SeededFiller(SEED, torch.float32).fill(_meta_state_dict())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    comfy.utils.save_torch_file({k: v.contiguous() for k, v in sd.items()}, str(tmp),
                                metadata={"atelier_tiny": TINY_VERSION, "kind": QWEN3_TEXT,
                                          "atelier_width": str(WIDTH)})
    tmp.replace(path)
    params = sum(v.numel() for v in sd.values())
    logging.info("built %s (%.2f M params)", path, params / 1e6)
    return {"kind": QWEN3_TEXT, "params": params}


def verify_qwen3_text(path, full: bool = False) -> dict:
    from pathlib import Path
    import comfy.utils
    path = Path(path)
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    want = _meta_state_dict()
    if set(want) - set(sd) or any(tuple(sd[k].shape) != tuple(v.shape) for k, v in want.items()):
        raise ValueError(f"{path}: keys or shapes differ from the tiny Qwen3 text encoder it should be")
    return {"kind": QWEN3_TEXT}


def load_tiny_qwen3_clip(path, embedding_directory=None):
    """comfy.sd.CLIP of the tiny Qwen3 text encoder, the file loaded with ``load_sd`` as CLIPLoader does."""
    import comfy.sd
    import comfy.utils
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    clip = comfy.sd.CLIP(tiny_qwen3_clip_target(), embedding_directory=embedding_directory,
                         parameters=comfy.utils.calculate_parameters(sd))
    missing, _ = clip.load_sd(sd)
    if missing:
        raise ValueError(f"tiny Qwen3 text encoder: missing weights {missing[:5]}")
    return clip


def qwen3_text_artifacts() -> dict:
    return {QWEN3_TEXT: ("text_encoders", build_qwen3_text, verify_qwen3_text)}
