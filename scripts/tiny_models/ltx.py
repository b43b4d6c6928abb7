"""Tiny seeded random-weight LTX video models (Lightricks) of the real architectures.

The model classes, configs and key names are ComfyUI's (comfy/ldm/lightricks): ``LTXVModel`` (LTXV 0.9.x,
video only; both test beds) and ``LTXAVModel`` (LTX-2 / 2.3, joint audio + video; ComfyUI 0.33.0 only,
``comfy/ldm/lightricks/av_model.py``), built on the meta device from ``supported_models.LTXV`` /
``LTXAV``. ``detect_unet_config`` names them from ``adaln_single`` (``ltxav`` where
``audio_adaln_single`` exists) and reads the depth from the block keys and ``cross_attention_dim`` from
``attn2.to_k``; everything else comes from the class defaults or (real checkpoints) the file's
``config`` metadata.

Detection pins the full-size constants: 32 heads (``attention_head_dim = attn2.to_k rows // 32``), the
text width (T5-XXL 4096 for LTXV, Gemma 3 12B 3840 for LTX-2) and, for LTXAV, the audio stream's heads /
head size / width and the text connectors' heads / head size. The tiny models (video width 64 = 2 heads of
32; LTXAV audio width 32 = 2 heads of 16; text 32 wide, connectors 2 heads of 16) override exactly those
(``LTXV_OVERRIDES`` / ``LTXAV_OVERRIDES``); the override is written into the file's metadata
(``atelier_dit_overrides``) and ``dit.load_tiny_dit`` applies it. The latent keeps the real 128 channels
(32x spatial, 8x temporal VAE, patch 1), so a 64 px frame is 2 x 2 tokens.

Stand-ins: :func:`random_conditioning` for T5-XXL (LTXV: tokens + the encoder's attention mask; LTXVConditioning's
frame rate) and Gemma 3 (LTXAV: unprocessed ``caption_channels``-wide features, ``unprocessed_ltxav_embeds``,
which the model's own connectors turn into 1024 register-padded tokens per stream); :func:`empty_latent`
for EmptyLTXVLatentVideo (+ LTXVEmptyLatentAudio / LTXVConcatAVLatent for LTXAV: a NestedTensor).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .dit import DIFFUSION_MODELS, build_detected_dit, load_tiny_dit, verify_detected_dit
from .files import ensure_built

LTXV = "atelier_tiny_ltxv.safetensors"
LTXAV = "atelier_tiny_ltxav.safetensors"
VERSION_KEY = ("atelier_ltx_version", "1")  # bump the value when a tiny LTX model changes
TEXT_WIDTH = 32  # T5-XXL 4096 (LTXV), Gemma 3 12B 3840 (LTX-2)
# detection pins 32 heads (head size = to_k rows / 32) and the class defaults below at full size
LTXV_OVERRIDES = {"num_attention_heads": 2, "attention_head_dim": 32, "caption_channels": TEXT_WIDTH}
LTXAV_OVERRIDES = {**LTXV_OVERRIDES, "audio_num_attention_heads": 2, "audio_attention_head_dim": 16,
                   "audio_cross_attention_dim": 32, "connector_num_attention_heads": 2,
                   "connector_attention_head_dim": 16}
# file -> (config class, image_model, seed, overrides)
MODELS = {LTXV: ("LTXV", "ltxv", 990, LTXV_OVERRIDES), LTXAV: ("LTXAV", "ltxav", 2000, LTXAV_OVERRIDES)}
LATENT_CHANNELS, SPATIAL, TEMPORAL = 128, 32, 8
AUDIO_CHANNELS, AUDIO_BINS = 8, 16  # the LTX-2 audio VAE latent: [B, 8, T, 16]


def available(name: str) -> bool:
    """LTXV exists on both test beds, LTXAV (LTX-2) in ComfyUI 0.33.0 only (call after ``env.bootstrap``)."""
    import comfy.supported_models as sm
    return hasattr(sm, MODELS[name][0])


def missing(name: str) -> str | None:
    """Why this ComfyUI cannot build ``name`` (None where it can); for make_tiny_models after bootstrap."""
    return None if available(name) else f"this ComfyUI has no {MODELS[name][0]} (comfy/ldm/lightricks/av_model.py)"


def _unet_config(name: str) -> dict:
    _, image_model, _, overrides = MODELS[name]
    return {"image_model": image_model, "num_layers": 2, "cross_attention_dim": 64, **overrides}


def _meta_state_dict(name: str) -> dict:
    import comfy.supported_models as sm
    config = getattr(sm, MODELS[name][0])(_unet_config(name))
    config.set_inference_dtype(torch.float32, None)
    return config.get_model({}, device=torch.device("meta")).diffusion_model.state_dict()


def build_ltx(path, name: str | None = None) -> dict:
    name = name or Path(path).name
    kind, _, seed, overrides = MODELS[name]
    return build_detected_dit(path, _meta_state_dict(name), kind, seed, VERSION_KEY, overrides)


def verify_ltx(path, full: bool = False) -> dict:
    return verify_detected_dit(path, MODELS[Path(path).name][0], VERSION_KEY, full)


def load_ltx(path):
    """A ModelPatcher of a tiny LTX file (fp32, CPU), as ``comfy.sd.load_diffusion_model`` builds it."""
    return load_tiny_dit(path)


def is_av(model) -> bool:
    return type(model.model.model_config).__name__ == "LTXAV"


def video_latent_shape(frames: int = 9, size: int = 64, batch: int = 1) -> tuple:
    """EmptyLTXVLatentVideo: [B, 128, (frames - 1) // 8 + 1, size / 32, size / 32] (frames = 8k + 1)."""
    return (batch, LATENT_CHANNELS, (frames - 1) // TEMPORAL + 1, size // SPATIAL, size // SPATIAL)


def audio_latent_shape(frames: int = 9, frame_rate: int = 25, batch: int = 1) -> tuple:
    """LTXVEmptyLatentAudio: [B, 8, round(frames / frame_rate * 25) latent frames, 16] (25 latents a second)."""
    return (batch, AUDIO_CHANNELS, max(1, round(frames / frame_rate * 25)), AUDIO_BINS)


def empty_latent(model, frames: int = 9, size: int = 64, batch: int = 1, audio: bool = True):
    """The empty latent the templates sample: the video latent, and for LTXAV (``audio``) LTXVConcatAVLatent's
    NestedTensor (video, audio)."""
    video = torch.zeros(video_latent_shape(frames, size, batch))
    if not (audio and is_av(model)):
        return video
    import comfy.nested_tensor
    return comfy.nested_tensor.NestedTensor((video, torch.zeros(audio_latent_shape(frames, batch=batch))))


def random_conditioning(model, tokens: int = 8, seed: int = 0, padding: int = 2, frame_rate: float = 25.0) -> list:
    """CONDITIONING standing in for the text encoder, after LTXVConditioning (``frame_rate``).

    LTXV (T5-XXL): [[context (1, tokens, caption_channels), {"attention_mask": (1, tokens) with the last
    ``padding`` tokens 0, "frame_rate"}]] (the model turns the mask into an additive (B, 1, 1, tokens) bias
    of its text cross-attention). LTXAV (Gemma 3): [[features (1, tokens, caption_channels),
    {"unprocessed_ltxav_embeds": True, "frame_rate"}]], as ComfyUI's LTX-2 text encoder gives them (no mask:
    the encoder cuts the padding); the model's connectors run once per sampling (extra_conds)."""
    config = model.model.model_config.unet_config
    gen = torch.Generator().manual_seed(seed)
    context = torch.randn(1, tokens, config["caption_channels"], generator=gen)
    if is_av(model):
        return [[context, {"unprocessed_ltxav_embeds": True, "frame_rate": frame_rate}]]
    mask = torch.ones(1, tokens, dtype=torch.long)
    if padding:
        mask[:, -padding:] = 0
    return [[context, {"attention_mask": mask, "frame_rate": frame_rate}]]


def ltx_artifacts() -> dict:
    """ARTIFACTS entries (subfolder, builder, verifier) of LTXV and LTXAV; make_tiny_models leaves out those
    :func:`missing` names for its ComfyUI (LTXAV on 0.3.75)."""
    return {name: (DIFFUSION_MODELS, build_ltx, verify_ltx) for name in MODELS}


def bench_family(name: str = LTXV):
    """The tiny LTXV for ``scripts/bench_families.py --family ltx``: clips [B, 128, frames, size/32, size/32]
    (its VAE's 32x: a quarter of Wan's tokens per frame at the same size); self- and cross-attention are the
    blocks' ``attn1`` / ``attn2`` modules."""
    from scripts.bench_families import Family, unet_minimums
    from .env import DEFAULT_BASE
    path = ensure_built(DEFAULT_BASE / "models" / DIFFUSION_MODELS / name, verify_ltx, build_ltx)
    model = load_ltx(path)
    return Family("LTX-Video", model,
                  lambda tokens, seed: random_conditioning(model, tokens=tokens, seed=seed, padding=0),
                  latent_channels=LATENT_CHANNELS, minimums=unet_minimums, slots=("attn1", "attn2"), video=True,
                  latent=lambda batch, size, frames: torch.zeros(batch, LATENT_CHANNELS, frames, size // SPATIAL,
                                                                 size // SPATIAL))
