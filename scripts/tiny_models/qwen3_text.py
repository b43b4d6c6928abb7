"""Tiny stand-ins for Qwen3-4B (``qwen_3_4b.safetensors``), the text encoder of Z-Image (CLIPLoader type
lumina2) and of FLUX.2 klein 4B (CLIPLoader type flux2).

ComfyUI's CLIPLoader detects Qwen3-4B from the file's keys and builds ``comfy.text_encoders.z_image``'s
``ZImageTEModel`` (``llama.Qwen3_4B``) from a fixed full-size config (2560 wide, 36 layers), which these
machines cannot hold. The stand-in keeps everything else real: ComfyUI's ZImageTEModel and its
Qwen3 transformer class (``llama.Qwen3_4B``, built from a config dict), its ``ZImageTokenizer`` (the
real Qwen2 BPE tokenizer and the chat template), and ``comfy.sd.CLIP`` loading the file with
``load_sd`` as CLIPLoader does. Only the sizes are tiny (hidden ``width``, 3 layers: the encoder reads the
second-to-last layer); ``width`` must
equal the tiny Z-Image's caption width (``cap_feat_dim``). The test-bed node ``TestBedCLIPLoader``
(scripts/test_bed_nodes) builds it.

FLUX.2 klein (ComfyUI 0.33.0; 0.3.75 has no klein): ComfyUI's ``Flux2TEModel`` over its klein
``Qwen3_4BModel``, which stacks three hidden layers (9, 18, 27 of 36) into one 3 x 2560-wide token.
The stand-in (``KLEIN_TEXT``) is the same Qwen3 at width 16 with 3 layers, all three stacked (3 x 16 =
48 = the tiny FLUX.2's ``context_in_dim``), with ComfyUI's ``KleinTokenizer`` (the real Qwen2 BPE,
padded to 512 tokens, and klein's chat template). Its file holds the same keys as the Z-Image stand-in's,
so it builds on both ComfyUI versions; only loading it needs klein's classes. Which stand-in a file is
reads from its metadata ``kind``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .files import check_keys, load_tiny_clip, save_tiny
from .fill import SeededFiller

QWEN3_TEXT = "atelier_tiny_qwen3_4b.safetensors"
SEED = 2601
WIDTH = 32  # = the tiny Z-Image's cap_feat_dim
# ComfyUI's Qwen3_4BConfig at a tiny width (head_dim stays the class constant, 128)
TINY_QWEN3 = {"hidden_size": WIDTH, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
              "num_key_value_heads": 1}


def _tiny_qwen3_model(base_class, width: int, layer, layer_idx):
    """ComfyUI's Qwen3 text model class ``base_class`` (Z-Image's or klein's) built at ``width``: the same
    SDClipModel over ``llama.Qwen3_4B``, with the layer(s) that encoder reads."""
    import comfy.sd1_clip as sd1_clip
    import comfy.text_encoders.llama
    config = dict(TINY_QWEN3, hidden_size=width)

    class TinyQwen3Model(base_class):
        def __init__(self, device="cpu", layer=layer, layer_idx=layer_idx, dtype=None, attention_mask=True,
                     model_options={}):
            sd1_clip.SDClipModel.__init__(self, device=device, layer=layer, layer_idx=layer_idx,
                                          textmodel_json_config=dict(config), dtype=dtype,
                                          special_tokens={"pad": 151643}, layer_norm_hidden_state=False,
                                          model_class=comfy.text_encoders.llama.Qwen3_4B,
                                          enable_attention_masks=attention_mask,
                                          return_attention_masks=attention_mask, model_options=model_options)

    return TinyQwen3Model


def tiny_qwen3_text_encoder_class(width: int = WIDTH):
    """ComfyUI's ZImageTEModel with its Qwen3 built at a tiny width."""
    import comfy.sd1_clip as sd1_clip
    from comfy.text_encoders import z_image
    qwen3 = _tiny_qwen3_model(z_image.Qwen3_4BModel, width, "hidden", -2)

    class TinyZImageTextEncoder(z_image.ZImageTEModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            sd1_clip.SD1ClipModel.__init__(self, device=device, dtype=dtype, name="qwen3_4b",
                                           clip_model=qwen3, model_options=model_options)

    return TinyZImageTextEncoder


KLEIN_TEXT = "atelier_tiny_qwen3_4b_klein.safetensors"
KLEIN_SEED = 2602
KLEIN_WIDTH = 16  # x 3 stacked layers = 48 = the tiny FLUX.2's context_in_dim
KLEIN_LAYERS = [0, 1, 2]  # the hidden layers klein stacks (ComfyUI's [9, 18, 27] of 36)


def tiny_klein_text_encoder_class(width: int = KLEIN_WIDTH):
    """ComfyUI's klein text encoder (Flux2TEModel over its Qwen3_4BModel) with Qwen3 at a tiny width."""
    from comfy.text_encoders import flux
    qwen3 = _tiny_qwen3_model(flux.Qwen3_4BModel, width, list(KLEIN_LAYERS), None)

    class TinyKleinTextEncoder(flux.Flux2TEModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, dtype=dtype, name="qwen3_4b", model_options=model_options,
                             clip_model=qwen3)

    return TinyKleinTextEncoder


def klein_available() -> bool:
    """Whether this ComfyUI has FLUX.2 klein's text encoder (0.33.0 does, 0.3.75 does not)."""
    import comfy.text_encoders.flux as flux
    return hasattr(flux, "klein_te") and hasattr(flux, "KleinTokenizer")


def _meta_state_dict(width: int = WIDTH) -> dict:
    with torch.device("meta"):
        encoder = tiny_qwen3_text_encoder_class(width)(device=torch.device("meta"), dtype=torch.float32)
    return encoder.qwen3_4b.transformer.state_dict()


# kind (file name) -> (seed, width) of each Qwen3 stand-in
VARIANTS = {QWEN3_TEXT: (SEED, WIDTH), KLEIN_TEXT: (KLEIN_SEED, KLEIN_WIDTH)}


def build_qwen3_text(path, name: str | None = None) -> dict:
    kind = name or Path(path).name
    seed, width = VARIANTS[kind]
    return save_tiny(path, SeededFiller(seed, torch.float32).fill(_meta_state_dict(width)), kind,
                     atelier_width=str(width))


def verify_qwen3_text(path, full: bool = False) -> dict:
    import comfy.utils
    path = Path(path)
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    check_keys(path, sd, _meta_state_dict(VARIANTS[path.name][1]), "tiny Qwen3 text encoder")
    return {"kind": path.name}


def load_tiny_qwen3_clip(path, embedding_directory=None):
    """comfy.sd.CLIP of the tiny Qwen3 text encoder, the file loaded with ``load_sd`` as CLIPLoader does."""
    from comfy.text_encoders.z_image import ZImageTokenizer
    return load_tiny_clip(path, tiny_qwen3_text_encoder_class(), ZImageTokenizer, "tiny Qwen3 text encoder",
                          embedding_directory)


def load_tiny_klein_clip(path, embedding_directory=None):
    """comfy.sd.CLIP of the tiny klein text encoder (ComfyUI 0.33.0), loaded with ``load_sd`` as
    CLIPLoader does."""
    from comfy.text_encoders.flux import KleinTokenizer
    return load_tiny_clip(path, tiny_klein_text_encoder_class(), KleinTokenizer, "tiny klein text encoder",
                          embedding_directory)


def qwen3_text_artifacts() -> dict:
    return {QWEN3_TEXT: ("text_encoders", build_qwen3_text, verify_qwen3_text),
            KLEIN_TEXT: ("text_encoders", build_qwen3_text, verify_qwen3_text)}
