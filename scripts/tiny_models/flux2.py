"""Tiny seeded random-weight FLUX.2 (klein layout) of the real architecture: ComfyUI's Flux class with
``global_modulation`` (comfy/ldm/flux/model.py), its key names and config from ComfyUI's own detection
(``detect_unet_config`` reads ``double_stream_modulation_img`` -> flux2, the latent channels from
``img_in``, the text width from ``txt_in``, the depths from the block keys, no ``guidance_in`` as klein;
``supported_models.Flux2``, ``model_base.Flux2``: prompt padded at the front to 512 tokens, 128-channel
latent, patch size 1).

Detection pins FLUX.2's 48 heads of 128 channels (RoPE axes 4 x 32; 0.33 derives the heads from the
width / 128). The tiny model overrides exactly ``num_heads`` and ``axes_dim`` (2 heads of 32, axes
4 x 8, width 64); the override is written into the file's metadata (``atelier_dit_overrides``) and
``dit.load_tiny_dit`` applies it. Everything else is ComfyUI's on both ComfyUI versions.

Text: :func:`random_conditioning` stands in for Qwen3 (klein) / Mistral Small (dev): 48-wide tokens
(the real encoders stack 3 hidden layers: 7680 / 12288 / 15360), no pooled output.
:func:`with_reference_latents` adds what ReferenceLatent adds for an edit (``reference_latents``).
The klein template's text encoder stand-in is tiny_models/qwen3_text.py's ``KLEIN_TEXT`` (3 x 16 = 48).

VAE (``FLUX2_VAE``, for ``flux2-vae.safetensors``): the real FLUX.2 VAE's layout (an AutoencoderKL of 32
channels with the batch-norm latent ComfyUI's VAELoader detects from ``bn.running_mean``: 128 latent
channels in 2 x 2 patches, 16 px per latent position). ComfyUI 0.33.0 reads the decoder's width from
the keys, so the decoder is small (base width 32, the least GroupNorm(32) takes); the encoder keeps the width VAELoader builds it at
(128; ~34 M parameters, stored fp16, unused by text-to-image). ComfyUI 0.3.75 builds the decoder at full
width too, so the file loads on 0.33.0 only, as klein runs there only; the keys are laid out from
ComfyUI's Encoder / Decoder classes, which both versions have, so the shared models folder builds it
from either.
"""
from __future__ import annotations

import dataclasses

import torch

from .dit import DIFFUSION_MODELS, build_detected_dit, load_tiny_dit, to_file_keys, verify_detected_dit
from .files import check_keys, ensure_built, save_tiny
from .fill import SeededFiller

FLUX2 = "atelier_tiny_flux2.safetensors"
FLUX2_VAE = "atelier_tiny_flux2_vae.safetensors"
VAE_SEED = 2203
KIND = "Flux2"
SEED = 2201
VERSION_KEY = ("atelier_flux2_version", "1")  # bump the value when the tiny model changes
WIDTH = 64
TEXT_WIDTH = 48
LATENT_CHANNELS = 128  # latent_formats.Flux2
DOWNSCALE = 16  # the FLUX.2 VAE: 16 x 16 pixels per latent position (EmptyFlux2LatentImage)
# detection pins 48 heads x 128 channels (axes 4 x 32)
TINY_OVERRIDES = {"num_heads": 2, "axes_dim": [8, 8, 8, 8]}


def _unet_config() -> dict:
    """The unet_config detection gives a FLUX.2 klein of these shapes (real FLUX.2 constants)."""
    from comfy.ldm.flux.model import FluxParams
    config = {"image_model": "flux2", "in_channels": LATENT_CHANNELS, "out_channels": LATENT_CHANNELS,
              "vec_in_dim": None, "context_in_dim": TEXT_WIDTH, "hidden_size": WIDTH, "mlp_ratio": 3.0,
              "depth": 2, "depth_single_blocks": 2, "theta": 2000, "patch_size": 1, "qkv_bias": False,
              "guidance_embed": False, "global_modulation": True, "mlp_silu_act": True, "ops_bias": False,
              "default_ref_method": "index", "ref_index_scale": 10.0, **TINY_OVERRIDES}
    if "txt_ids_dims" in {f.name for f in dataclasses.fields(FluxParams)}:  # 0.33: RoPE axis of text positions
        config["txt_ids_dims"] = [3]
    return config


def _meta_state_dict() -> dict:
    """Key names and shapes of the tiny model, from ComfyUI's own class on the meta device."""
    import comfy.supported_models as sm
    config = sm.Flux2(_unet_config())
    config.set_inference_dtype(torch.float32, None)
    return to_file_keys(config.get_model({}, device=torch.device("meta")).diffusion_model.state_dict())


def build_flux2(path, name: str | None = None) -> dict:
    return build_detected_dit(path, _meta_state_dict(), KIND, SEED, VERSION_KEY, TINY_OVERRIDES)


def verify_flux2(path, full: bool = False) -> dict:
    return verify_detected_dit(path, KIND, VERSION_KEY, full)


def random_conditioning(tokens: int = 8, seed: int = 0) -> list:
    """CONDITIONING standing in for FLUX.2's text encoder: [[context (1, tokens, TEXT_WIDTH), {"pooled_output": None}]] (as the encoder gives: no pooled vector)."""
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, TEXT_WIDTH, generator=gen), {"pooled_output": None}]]


def with_reference_latents(conditioning: list, latents: list) -> list:
    """``conditioning`` with ``reference_latents`` appended, as ComfyUI's ReferenceLatent node does
    (each latent [1, 128, h, w] in latent units)."""
    out = []
    for context, extra in conditioning:
        extra = dict(extra)
        extra["reference_latents"] = list(extra.get("reference_latents", [])) + list(latents)
        out.append([context, extra])
    return out


VAE_DECODER_CH = 32  # the smallest GroupNorm(32) allows
# sd.py's default AutoencoderKL ddconfig at FLUX.2's 32 channels
FLUX2_VAE_DDCONFIG = {"double_z": True, "z_channels": 32, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                      "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def _vae_meta_state_dict() -> dict:
    """Keys and shapes of the tiny FLUX.2 VAE, from ComfyUI's Encoder / Decoder classes on the meta device."""
    from comfy.ldm.modules.diffusionmodules.model import Decoder, Encoder
    z = FLUX2_VAE_DDCONFIG["z_channels"]
    with torch.device("meta"):
        sd = {f"encoder.{k}": v for k, v in Encoder(**FLUX2_VAE_DDCONFIG).state_dict().items()}
        sd.update({f"decoder.{k}": v for k, v in Decoder(**dict(FLUX2_VAE_DDCONFIG, ch=VAE_DECODER_CH)).state_dict().items()})
        sd.update({"quant_conv.weight": torch.empty(2 * z, 2 * z, 1, 1), "quant_conv.bias": torch.empty(2 * z),
                   "post_quant_conv.weight": torch.empty(z, z, 1, 1), "post_quant_conv.bias": torch.empty(z),
                   "bn.running_mean": torch.empty(4 * z), "bn.running_var": torch.empty(4 * z),
                   "bn.num_batches_tracked": torch.empty((), dtype=torch.long)})
    return sd


def build_flux2_vae(path, name: str | None = None) -> dict:
    sd = SeededFiller(VAE_SEED, torch.float16).fill(_vae_meta_state_dict())
    sd["bn.running_mean"] = torch.zeros_like(sd["bn.running_mean"])  # running_var stays 1
    return save_tiny(path, sd, FLUX2_VAE)


def verify_flux2_vae(path, full: bool = False) -> dict:
    import comfy.utils
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    check_keys(path, sd, _vae_meta_state_dict(), "tiny FLUX.2 VAE")
    from .qwen3_text import klein_available
    if full and klein_available():  # 0.33.0 reads the decoder's width from the keys; 0.3.75 cannot load it
        import comfy.sd
        vae = comfy.sd.VAE(sd=sd)
        if vae.latent_channels != LATENT_CHANNELS or vae.upscale_ratio != DOWNSCALE:
            raise ValueError(f"{path}: ComfyUI's VAE sees {vae.latent_channels} channels at {vae.upscale_ratio}x")
    return {"kind": FLUX2_VAE}


def flux2_artifacts() -> dict:
    """ARTIFACTS entry (subfolder, builder, verifier) of the tiny FLUX.2."""
    return {FLUX2: (DIFFUSION_MODELS, build_flux2, verify_flux2)}


def flux2_vae_artifacts() -> dict:
    """ARTIFACTS entry of the tiny FLUX.2 VAE (the klein template's)."""
    return {FLUX2_VAE: ("vae", build_flux2_vae, verify_flux2_vae)}


def bench_family():
    """The tiny FLUX.2 for ``scripts/bench_families.py --family flux2`` (its latent: 128 channels; at --size
    256 the bench's 32 x 32 positions stand for a 512 px FLUX.2 image, next to 512 padded prompt tokens)."""
    from scripts.bench_families import Family
    from .env import DEFAULT_BASE
    path = ensure_built(DEFAULT_BASE / "models" / DIFFUSION_MODELS / FLUX2, verify_flux2, build_flux2)
    return Family("FLUX.2", load_tiny_dit(path), lambda tokens, seed: random_conditioning(tokens, seed),
                  latent_channels=LATENT_CHANNELS)
