"""Tiny stand-ins for what a Qwen-Image workflow loads besides the diffusion model: its text encoder
Qwen2.5-VL 7B (``qwen_2.5_vl_7b_fp8_scaled.safetensors``, CLIPLoader type qwen_image) and its VAE
(``qwen_image_vae.safetensors``, the Wan 2.1 VAE, VAELoader).

Text encoder: ComfyUI's CLIPLoader builds ``comfy.text_encoders.qwen_image``'s ``QwenImageTEModel``
(``llama.Qwen25_7BVLI``: a 3584-wide, 28-layer language model and a 1280-wide, 32-layer vision tower)
from fixed full-size configs, which these machines cannot hold. The stand-in keeps everything else
real: ComfyUI's QwenImageTEModel (its template-token cut and attention mask), its Qwen2.5-VL
language model class (``Llama2_`` from the ``Qwen25_7BVLI_Config`` dataclass, its multimodal RoPE),
its ``QwenImageTokenizer`` (the real Qwen2 BPE and Qwen-Image's chat template) and ``comfy.sd.CLIP``
loading the file with ``load_sd`` as CLIPLoader does. Only the sizes are tiny: language model width 32
(= the tiny Qwen-Image's ``joint_attention_dim``), 2 layers; the vision tower ComfyUI's own
``Qwen2VLVisionTransformer`` at width 32, 2 layers (``Qwen25_7BVLI.__init__`` hard-codes its width, so
the stand-in's ``__init__`` repeats those three lines at tiny sizes). The same on ComfyUI 0.3.75 and
0.33.0. The test-bed node ``TestBedCLIPLoader`` (scripts/test_bed_nodes) builds it.

VAE: ComfyUI's own ``WanVAE`` (Wan 2.1: 16 latent channels, 8x spatial) at base width 8; ComfyUI's
VAELoader detects it and reads the width from the file's keys, so no test-bed loader is needed.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .files import check_keys, load_tiny_clip, save_tiny
from .fill import SeededFiller

QWEN25VL_TEXT = "atelier_tiny_qwen25_vl_7b.safetensors"
QWEN_IMAGE_VAE = "atelier_tiny_qwen_image_vae.safetensors"
SEEDS = {QWEN25VL_TEXT: 2511, QWEN_IMAGE_VAE: 2512}
WIDTH = 32  # = the tiny Qwen-Image's joint_attention_dim (tiny_models/qwen_image.py TEXT_WIDTH)
# ComfyUI's Qwen25_7BVLI_Config at a tiny width (head_dim and the RoPE sections stay the class's)
TINY_QWEN25VL = {"hidden_size": WIDTH, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "num_key_value_heads": 1}
TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "num_layers": 2}
VAE_DIM = 8  # the Wan 2.1 VAE's base width (96 in the real one)
WAN21_VAE = {"dim": VAE_DIM, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
             "temperal_downsample": [False, True, True], "dropout": 0.0}  # sd.py's Wan 2.1 ddconfig


def tiny_qwen_image_text_encoder_class():
    """ComfyUI's QwenImageTEModel with its Qwen2.5-VL built at a tiny width."""
    import comfy.sd1_clip as sd1_clip
    from comfy.text_encoders import llama, qwen_image, qwen_vl

    class TinyQwen25VLI(llama.Qwen25_7BVLI):
        def __init__(self, config_dict, dtype, device, operations):
            torch.nn.Module.__init__(self)
            config = llama.Qwen25_7BVLI_Config(**config_dict)
            self.num_layers = config.num_hidden_layers
            self.model = llama.Llama2_(config, device=device, dtype=dtype, ops=operations)
            self.visual = qwen_vl.Qwen2VLVisionTransformer(output_hidden_size=config.hidden_size, device=device,
                                                           dtype=dtype, ops=operations, **TINY_VISION)
            self.dtype = dtype

    class TinyQwen25VLIModel(qwen_image.Qwen25_7BVLIModel):
        def __init__(self, device="cpu", layer="last", layer_idx=None, dtype=None, attention_mask=True,
                     model_options={}):
            sd1_clip.SDClipModel.__init__(self, device=device, layer=layer, layer_idx=layer_idx,
                                          textmodel_json_config=dict(TINY_QWEN25VL), dtype=dtype,
                                          special_tokens={"pad": 151643}, layer_norm_hidden_state=False,
                                          model_class=TinyQwen25VLI, enable_attention_masks=attention_mask,
                                          return_attention_masks=attention_mask, model_options=model_options)

    class TinyQwenImageTextEncoder(qwen_image.QwenImageTEModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            sd1_clip.SD1ClipModel.__init__(self, device=device, dtype=dtype, name="qwen25_7b",
                                           clip_model=TinyQwen25VLIModel, model_options=model_options)

    return TinyQwenImageTextEncoder


def _meta_state_dict(name: str) -> dict:
    with torch.device("meta"):
        if name == QWEN25VL_TEXT:
            encoder = tiny_qwen_image_text_encoder_class()(device=torch.device("meta"), dtype=torch.float32)
            return encoder.qwen25_7b.transformer.state_dict()
        import comfy.ldm.wan.vae
        return comfy.ldm.wan.vae.WanVAE(**WAN21_VAE).state_dict()


def build_qwen_image_part(path, name: str | None = None) -> dict:
    name = name or Path(path).name
    sd = SeededFiller(SEEDS[name], torch.float32).fill(_meta_state_dict(name))
    if name == QWEN_IMAGE_VAE:  # RMS-norm scales (shaped like convs) at 1, as a trained VAE's are near
        sd = {k: torch.ones_like(v) if k.endswith("gamma") else v for k, v in sd.items()}
    return save_tiny(path, sd, name)


def verify_qwen_image_part(path, full: bool = False) -> dict:
    import comfy.utils
    path = Path(path)
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    check_keys(path, sd, _meta_state_dict(path.name), "tiny Qwen-Image part")
    if full and path.name == QWEN_IMAGE_VAE:
        import comfy.sd
        vae = comfy.sd.VAE(sd=sd)
        if vae.latent_channels != 16 or vae.latent_dim != 3:
            raise ValueError(f"{path}: ComfyUI's VAE sees {vae.latent_channels} channels, {vae.latent_dim}D latents")
    return {"kind": path.name}


def load_tiny_qwen_image_clip(path, embedding_directory=None):
    """comfy.sd.CLIP of the tiny Qwen2.5-VL text encoder, the file loaded with ``load_sd`` as CLIPLoader does."""
    from comfy.text_encoders.qwen_image import QwenImageTokenizer
    return load_tiny_clip(path, tiny_qwen_image_text_encoder_class(), QwenImageTokenizer,
                          "tiny Qwen2.5-VL text encoder", embedding_directory)


def qwen_image_part_artifacts() -> dict:
    """ARTIFACTS entries (subfolder, builder, verifier) of the tiny Qwen-Image text encoder and VAE."""
    return {QWEN25VL_TEXT: ("text_encoders", build_qwen_image_part, verify_qwen_image_part),
            QWEN_IMAGE_VAE: ("vae", build_qwen_image_part, verify_qwen_image_part)}
