"""A tiny stand-in for Krea 2's text encoder, Qwen3-VL-4B (``qwen3vl_4b_fp8_scaled.safetensors``, CLIPLoader
type krea2; ComfyUI >= 0.24 only, so the 0.33.0 test bed).

ComfyUI's CLIPLoader detects Qwen3-VL-4B from the file's keys and builds ``comfy.text_encoders.krea2``'s
``Krea2TEModel`` over ``Krea2Qwen3VLClipModel`` (``qwen3vl.Qwen3VL``: a 2560-wide, 36-layer language model and a
1024-wide, 24-layer vision tower) from fixed full-size configs, which these machines cannot hold. The stand-in
keeps everything else real: ComfyUI's Krea2TEModel (its cut of the system and user-opening template tokens and
its flattening of the layer taps ``(B, taps, T, width) -> (B, T, taps * width)``), its Qwen3-VL language model
(``Llama2_`` from the ``Qwen3VL_4BConfig`` dataclass: QK-norm, interleaved multimodal RoPE, grouped key/value
heads), its vision tower class (``Qwen3VLVisionModel`` with its DeepStack mergers), its ``Krea2Tokenizer`` (the
real Qwen2 BPE and Krea 2's chat template) and ``comfy.sd.CLIP`` loading the file with ``load_sd`` as CLIPLoader
does. Only the sizes are tiny: the language model ``WIDTH`` = the tiny Krea 2's ``txtdim`` (80) with ``TAPS``
= its ``txtlayers`` (12) hidden states stacked, so the conditioning is ``txtlayers * txtdim`` = 960 wide, what
the tiny Krea 2's text adapter reads (scripts/tiny_models/krea2.py). ComfyUI taps hidden states 2, 5, ..., 35
of 36 layers (the input of every third layer, never the final norm's output); the stand-in has 13 layers and
taps the input of layers 1 ... 12. ``Qwen3VL.__init__`` builds its vision tower from the full-size table, so the
stand-in's ``__init__`` repeats its lines with a tiny tower. The test-bed node ``TestBedCLIPLoader``
(scripts/test_bed_nodes) builds it, picked by the file's metadata kind.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .files import check_keys, load_tiny_clip, save_tiny
from .fill import SeededFiller
from .krea2 import TINY_KREA2

KREA2_TEXT = "atelier_tiny_krea2_qwen3vl_4b.safetensors"
SEED = 2202
WIDTH, TAPS = TINY_KREA2["txtdim"], TINY_KREA2["txtlayers"]
TAP_LAYERS = list(range(1, TAPS + 1))  # hidden_states[k]: the input of layer k (ComfyUI: 2, 5, ..., 35)
# ComfyUI's Qwen3VL_4BConfig at a tiny width (head_dim 128 and the RoPE sections stay the class's)
TINY_QWEN3VL = {"hidden_size": WIDTH, "intermediate_size": 2 * WIDTH, "num_hidden_layers": TAPS + 1,
                "num_attention_heads": 2, "num_key_value_heads": 1}
TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "depth": 2, "deepstack_visual_indexes": [0, 1],
               "num_heads": 2}


def available() -> bool:
    """Whether this ComfyUI has Krea 2 and its text encoder (0.33.0 does, 0.3.75 does not)."""
    try:
        import comfy.text_encoders.krea2  # noqa: F401
    except ImportError:
        return False
    from . import krea2
    return krea2.available()


def missing(name: str = KREA2_TEXT) -> str | None:
    """Why this ComfyUI cannot build the tiny Krea 2 or this stand-in (None where it can); for make_tiny_models
    after bootstrap."""
    return None if available() else "Krea 2 exists in ComfyUI >= 0.24 only (comfy/ldm/krea2, comfy/text_encoders/krea2.py)"


def tiny_krea2_text_encoder_class():
    """ComfyUI's Krea2TEModel with its Qwen3-VL built at a tiny width."""
    import comfy.sd1_clip as sd1_clip
    from comfy.text_encoders import krea2, llama, qwen3vl

    class TinyQwen3VL(qwen3vl.Qwen3VL):
        model_type = "qwen3vl_4b"

        def __init__(self, config_dict, dtype, device, operations):
            torch.nn.Module.__init__(self)
            config = llama.Qwen3VL_4BConfig(**config_dict)
            self.num_layers = config.num_hidden_layers
            self.model = llama.Llama2_(config, device=device, dtype=dtype, ops=operations)
            vision = {**qwen3vl.QWEN3VL_VISION_COMMON, **TINY_VISION, "out_hidden_size": config.hidden_size}
            self.visual = qwen3vl.Qwen3VLVisionModel(vision, device=device, dtype=dtype, ops=operations)
            self.dtype = dtype

    class TinyKrea2ClipModel(krea2.Krea2Qwen3VLClipModel):
        def __init__(self, device="cpu", dtype=None, attention_mask=True, model_options={}):
            sd1_clip.SDClipModel.__init__(self, device=device, layer=list(TAP_LAYERS), layer_idx=None,
                                          textmodel_json_config=dict(TINY_QWEN3VL), dtype=dtype,
                                          special_tokens={"pad": 151643}, layer_norm_hidden_state=False,
                                          model_class=TinyQwen3VL, enable_attention_masks=attention_mask,
                                          return_attention_masks=attention_mask, model_options=model_options)

    class TinyKrea2TextEncoder(krea2.Krea2TEModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            sd1_clip.SD1ClipModel.__init__(self, device=device, dtype=dtype, name="qwen3vl_4b",
                                           clip_model=TinyKrea2ClipModel, model_options=model_options)

    return TinyKrea2TextEncoder


def _meta_state_dict() -> dict:
    with torch.device("meta"):
        encoder = tiny_krea2_text_encoder_class()(device=torch.device("meta"), dtype=torch.float32)
    return encoder.qwen3vl_4b.transformer.state_dict()


def build_krea2_text(path, name: str | None = None) -> dict:
    sd = SeededFiller(SEED, torch.float32).fill(_meta_state_dict())
    return save_tiny(path, sd, KREA2_TEXT, atelier_width=str(WIDTH), atelier_taps=str(TAPS))


def verify_krea2_text(path, full: bool = False) -> dict:
    import comfy.utils
    path = Path(path)
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    check_keys(path, sd, _meta_state_dict(), "tiny Krea 2 text encoder")
    if full:
        clip = load_tiny_krea2_clip(path)
        context = clip.encode_from_tokens(clip.tokenize("a red lighthouse"))
        if context.shape[-1] != TAPS * WIDTH:
            raise ValueError(f"{path}: conditioning {tuple(context.shape)}, expected width {TAPS * WIDTH}")
    return {"kind": path.name}


def load_tiny_krea2_clip(path, embedding_directory=None):
    """comfy.sd.CLIP of the tiny Krea 2 text encoder, the file loaded with ``load_sd`` as CLIPLoader does."""
    from comfy.text_encoders.krea2 import Krea2Tokenizer
    return load_tiny_clip(path, tiny_krea2_text_encoder_class(), Krea2Tokenizer, "tiny Krea 2 text encoder",
                          embedding_directory)


def krea2_text_artifacts() -> dict:
    """ARTIFACTS entry (subfolder, builder, verifier) of the tiny Krea 2 text encoder; make_tiny_models leaves
    it out where this ComfyUI has no Krea 2 (``missing``)."""
    return {KREA2_TEXT: ("text_encoders", build_krea2_text, verify_krea2_text)}
