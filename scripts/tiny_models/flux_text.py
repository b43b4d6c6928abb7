"""Tiny stand-ins for what a Flux.1 workflow loads besides the diffusion model: its two text encoders
(CLIP-L + T5-XXL, loaded by DualCLIPLoader) and its VAE (ae.safetensors, loaded by VAELoader).

Text encoders: ComfyUI's DualCLIPLoader always builds T5 at XXL size (4.7 B parameters) from its fixed
config, which these machines cannot hold. The stand-in keeps everything else real: ComfyUI's
``FluxClipModel`` (its token routing and outputs), its ``FluxTokenizer`` (the real CLIP BPE and T5
SentencePiece tokenizers, T5 padded to 256 tokens), ComfyUI's CLIP text transformer and T5 classes, and
``comfy.sd.CLIP`` loading the two files with ``load_sd`` as DualCLIPLoader does. Only the widths are
tiny: T5 of width 32 (= the tiny Flux's context_in_dim) and CLIP-L of width 16 (its pooled output =
the tiny Flux's vec_in_dim). The test-bed node ``TestBedDualCLIPLoader``
(scripts/test_bed_nodes) builds it.

VAE: a TAESD of 16 latent channels (TAEF1's architecture, with Flux's latent scale/shift) in one
file; ComfyUI's own VAELoader detects and loads it from ``models/vae``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .files import check_keys, load_tiny_clip, save_tiny
from .fill import SeededFiller

FLUX_CLIP_L = "atelier_tiny_flux_clip_l.safetensors"
FLUX_T5 = "atelier_tiny_flux_t5.safetensors"
FLUX_VAE = "atelier_tiny_flux_vae.safetensors"
SEEDS = {FLUX_CLIP_L: 2201, FLUX_T5: 2202, FLUX_VAE: 2203}

# ComfyUI's sd1_clip_config.json (CLIP-L) at width 16; the vocabulary stays the real tokenizer's.
TINY_CLIP_L = {
    "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
    "eos_token_id": 49407, "hidden_act": "quick_gelu", "hidden_size": 16, "initializer_factor": 1.0,
    "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 2,
    "num_hidden_layers": 2, "pad_token_id": 1, "projection_dim": 16, "vocab_size": 49408,
}
# ComfyUI's t5_config_xxl.json at width 32, 2 layers; the vocabulary stays the real tokenizer's.
TINY_T5 = {
    "d_ff": 64, "d_kv": 8, "d_model": 32, "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1,
    "dense_act_fn": "gelu_pytorch_tanh", "initializer_factor": 1.0, "is_encoder_decoder": True,
    "is_gated_act": True, "layer_norm_epsilon": 1e-06, "model_type": "t5", "num_decoder_layers": 2,
    "num_heads": 4, "num_layers": 2, "output_past": True, "pad_token_id": 0,
    "relative_attention_num_buckets": 32, "tie_word_embeddings": False, "vocab_size": 32128,
}
# Flux's latent format (comfy.latent_formats.Flux), as ComfyUI's VAELoader sets it for TAEF1
FLUX_VAE_SCALE, FLUX_VAE_SHIFT = 0.3611, 0.1159


def tiny_flux_text_encoders_class():
    """ComfyUI's FluxClipModel with its two encoders built at the tiny widths."""
    import comfy.sd1_clip as sd1_clip
    import comfy.text_encoders.t5
    from comfy.text_encoders.flux import FluxClipModel

    class TinyFluxTextEncoders(FluxClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            torch.nn.Module.__init__(self)
            self.clip_l = sd1_clip.SDClipModel(device=device, dtype=dtype, return_projected_pooled=False,
                                               textmodel_json_config=dict(TINY_CLIP_L), model_options=model_options)
            self.t5xxl = sd1_clip.SDClipModel(device=device, dtype=dtype, textmodel_json_config=dict(TINY_T5),
                                              special_tokens={"end": 1, "pad": 0},
                                              model_class=comfy.text_encoders.t5.T5,
                                              model_options={**model_options, "model_name": "t5xxl"})
            self.dtypes = {dtype}

    return TinyFluxTextEncoders


def load_tiny_flux_clip(paths, embedding_directory=None):
    """comfy.sd.CLIP of the tiny Flux text encoders, each file loaded with ``load_sd`` as ComfyUI's
    load_text_encoder_state_dicts does (the model picks CLIP-L or T5 by the file's keys)."""
    from comfy.text_encoders.flux import FluxTokenizer
    return load_tiny_clip(list(paths), tiny_flux_text_encoders_class(), FluxTokenizer, "tiny Flux text encoder",
                          embedding_directory, allowed_missing=("logit_scale", "text_projection.weight"))


def _meta_encoders():
    with torch.device("meta"):
        return tiny_flux_text_encoders_class()(device=torch.device("meta"), dtype=torch.float32)


def _meta_state_dict(name: str) -> dict:
    encoders = _meta_encoders()
    if name == FLUX_CLIP_L:
        return encoders.clip_l.transformer.state_dict()
    if name == FLUX_T5:
        return encoders.t5xxl.transformer.state_dict()
    import comfy.taesd.taesd
    with torch.device("meta"):
        return comfy.taesd.taesd.TAESD(latent_channels=16).state_dict()


def build_flux_part(path, name: str | None = None) -> dict:
    name = name or Path(path).name
    sd = SeededFiller(SEEDS[name], torch.float32).fill(_meta_state_dict(name))
    if name == FLUX_VAE:
        sd["vae_scale"], sd["vae_shift"] = torch.tensor(FLUX_VAE_SCALE), torch.tensor(FLUX_VAE_SHIFT)
    return save_tiny(path, sd, name)


def verify_flux_part(path, full: bool = False) -> dict:
    import comfy.utils
    path = Path(path)
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    check_keys(path, sd, _meta_state_dict(path.name), "tiny Flux part")
    if full and path.name == FLUX_VAE:
        import comfy.sd
        vae = comfy.sd.VAE(sd=sd)
        if vae.latent_channels != 16:
            raise ValueError(f"{path}: ComfyUI's VAE sees {vae.latent_channels} latent channels, not 16")
    return {"kind": path.name}


def flux_part_artifacts() -> dict:
    """ARTIFACTS entries (subfolder, builder, verifier) of the tiny Flux text encoders and VAE."""
    return {FLUX_CLIP_L: ("text_encoders", build_flux_part, verify_flux_part),
            FLUX_T5: ("text_encoders", build_flux_part, verify_flux_part),
            FLUX_VAE: ("vae", build_flux_part, verify_flux_part)}
