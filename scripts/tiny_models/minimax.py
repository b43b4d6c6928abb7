"""A tiny seeded random-weight MiniMax H3 (joint audio + video DiT) of the real architecture (ComfyUI 0.33.0
only: comfy/ldm/minimax).

The model class, its config and its key names are ComfyUI's: ``comfy.ldm.minimax.model.MiniMaxH3Model``
built on the meta device from ``supported_models.MiniMaxH3``, and the config of the saved file comes back
from ``comfy.model_detection.detect_unet_config`` on its own keys (``video_patch_proj`` +
``audio_patch_proj`` -> minimax_h3): width from ``video_patch_proj``, latent channels from the output heads,
head size from ``q_norm``, heads from ``qkv_proj``, FFN / text / time-embedding widths, the depths of the
blocks and the token refiner, and the RoPE table's length from ``rope.inv_freq``. Detection reads every
size from the keys, so the tiny model needs no override: width 64 = 2 heads of 32 (RoPE on the first 24
channels of a head, 3 axes x 4 frequencies, as the real 96 of 128), text width 32 (Qwen3-VL-32B's 5120),
2 blocks and the real 2 refiner blocks. ``rope.inv_freq`` (a buffer real checkpoints carry) is written
as inverse powers of 10000.

The model takes batch 1 only (its packed sequence is 2-D: [tokens, width]). The latent is
EmptyMiniMaxH3LatentAV's NestedTensor (video [1, 24, T, H/16, W/16], audio [1, 32, 2, T_audio]);
:func:`empty_latent` builds it, :func:`random_conditioning` stands in for the Qwen3-VL-32B text encoder
(tokens + the per-token modality tags it returns, optionally a first-frame keyframe as
MiniMaxH3ImageToVideo adds it, or an image reference as MiniMaxH3ReferenceToVideo does).
"""
from __future__ import annotations

import torch

from .dit import DIFFUSION_MODELS, build_detected_dit, detected_config, load_tiny_dit, scaled, verify_detected_dit
from .files import ensure_built

MINIMAX_H3 = "atelier_tiny_minimax_h3.safetensors"
KIND = "MiniMaxH3"
SEED = 3300
VERSION_KEY = ("atelier_minimax_h3_version", "1")  # bump the value when the tiny model changes
TEXT_WIDTH = 32
TINY_H3 = {"image_model": "minimax_h3", "num_layers": 2, "token_refiner_num_layers": 2, "hidden_size": 64,
           "latents_dim": 24, "audio_latents_dim": 32, "attention_head_dim": 32, "num_attention_heads": 2,
           "ffn_hidden_size": 128, "text_dim": TEXT_WIDTH, "timestep_input_dim": 256, "time_embed_hidden_size": 64,
           "time_embed_dim": 32, "rope_inv_freq_len": 4}
VIDEO_CHANNELS, AUDIO_CHANNELS, AUDIO_STEREO = 24, 32, 2
FPS, AUDIO_LATENT_FPS = 24, 40


def available() -> bool:
    """Whether this ComfyUI has MiniMax H3 (0.33.0 does, 0.3.75 does not; call after ``env.bootstrap``)."""
    try:
        import comfy.ldm.minimax.model  # noqa: F401
    except ImportError:
        return False
    return True


def missing(name: str = MINIMAX_H3) -> str | None:
    """Why this ComfyUI cannot build the tiny H3 (None where it can); for make_tiny_models after bootstrap."""
    return None if available() else "this ComfyUI has no MiniMax H3 (comfy/ldm/minimax)"


def _meta_state_dict() -> dict:
    import comfy.supported_models as sm
    config = sm.MiniMaxH3(dict(TINY_H3))
    config.set_inference_dtype(torch.float32, None)
    return config.get_model({}, device=torch.device("meta")).diffusion_model.state_dict()


def _weights(key: str, value: torch.Tensor) -> torch.Tensor:
    if key == "rope.inv_freq":
        return 10000.0 ** (-torch.arange(value.shape[0], dtype=torch.float32) / value.shape[0])
    return scaled(value)


def build_minimax(path, name: str | None = None) -> dict:
    from pathlib import Path
    meta = _meta_state_dict()
    detected = {k: detected_config(meta, {}).unet_config.get(k) for k in TINY_H3}
    if detected != TINY_H3:
        raise ValueError(f"{Path(path).name}: detection gives {detected}, expected {TINY_H3}")
    return build_detected_dit(path, meta, KIND, SEED, VERSION_KEY, {}, weights=_weights)


def verify_minimax(path, full: bool = False) -> dict:
    return verify_detected_dit(path, KIND, VERSION_KEY, full)


def load_minimax(path):
    """A ModelPatcher of the tiny MiniMax H3 (fp32, CPU), as ``comfy.sd.load_diffusion_model`` builds it."""
    return load_tiny_dit(path)


def temporal_shape(frames: int) -> tuple[int, int]:
    """(video latent frames, audio latent frames) of ``frames`` pixel frames, as EmptyMiniMaxH3LatentAV
    computes them for a frame count on its 17k + 5 grid (5 frames -> 2 latent frames: the first pixel frame
    is one latent frame, then 4 per latent frame); ``frames=1`` gives one latent frame (a still) and the
    audio of one frame at 24 fps."""
    if frames == 1:
        return 1, max(1, round(AUDIO_LATENT_FPS / FPS))
    while frames % 17 != 5:
        frames += 1
    latent_t = 2 if frames <= 5 else ((frames - 5) // 17) * 5 + 2
    return latent_t, round(frames / FPS * AUDIO_LATENT_FPS)


def empty_latent(frames: int = 5, size: int = 64):
    """EmptyMiniMaxH3LatentAV's NestedTensor: video [1, 24, T, size/16, size/16], audio [1, 32, 2, T_audio]."""
    import comfy.nested_tensor
    latent_t, audio_t = temporal_shape(frames)
    video = torch.zeros(1, VIDEO_CHANNELS, latent_t, size // 16, size // 16)
    audio = torch.zeros(1, AUDIO_CHANNELS, AUDIO_STEREO, audio_t)
    return comfy.nested_tensor.NestedTensor((video, audio))


def random_conditioning(tokens: int = 8, seed: int = 0, first_frame: tuple[int, int] | None = None,
                        reference_image: tuple[int, int] | None = None) -> list:
    """CONDITIONING standing in for Qwen3-VL-32B: [[context (1, tokens, TEXT_WIDTH), {"minimax_token_tags":
    (tokens,) all 1 = text}]].

    ``first_frame`` = (h, w) of the video latent: also MiniMaxH3ImageToVideo's first-frame keyframe
    (``minimax_keyframes``: a seeded [1, 24, 1, h, w] latent at pixel frame 0, packed as "cond" rows right
    after the text). ``reference_image`` = (h, w): MiniMaxH3ReferenceToVideo's image reference
    (``minimax_refs``: one "ref_img" block between the text and the targets)."""
    gen = torch.Generator().manual_seed(seed)
    extra = {"minimax_token_tags": torch.ones(tokens, dtype=torch.long)}
    if first_frame is not None:
        latent = torch.randn(1, VIDEO_CHANNELS, 1, *first_frame, generator=gen)
        extra["minimax_keyframes"] = [{"resolved_frame_index": 0, "latent": latent}]
    if reference_image is not None:
        h, w = reference_image
        latent = torch.randn(1, VIDEO_CHANNELS, 1, h, w, generator=gen)
        extra["minimax_refs"] = [{"kind": "image", "latent_h": h, "latent_w": w, "latent": latent}]
    return [[torch.randn(1, tokens, TEXT_WIDTH, generator=gen), extra]]


def minimax_artifacts() -> dict:
    """ARTIFACTS entry (subfolder, builder, verifier) of the tiny MiniMax H3; make_tiny_models leaves it out
    where :func:`missing` says this ComfyUI has none (0.3.75)."""
    return {MINIMAX_H3: (DIFFUSION_MODELS, build_minimax, verify_minimax)}


def bench_family():
    """The tiny MiniMax H3 for ``scripts/bench_families.py --family minimax`` (ComfyUI 0.33.0). Batch 1 only, and
    its latent is the NestedTensor of :func:`empty_latent`; the bench's zeros [B, 32, size/8, size/8] become,
    through ``fix_empty_latent_channels``, one video frame at 4x the tokens of ``size`` px (2x per side) plus a
    2-frame audio stream."""
    from scripts.bench_families import Family
    from .env import DEFAULT_BASE
    if not available():
        raise SystemExit("--family minimax: this ComfyUI has no MiniMax H3 (comfy/ldm/minimax); "
                         "use ATELIER_COMFYUI=0.33.0")
    path = ensure_built(DEFAULT_BASE / "models" / DIFFUSION_MODELS / MINIMAX_H3, verify_minimax, build_minimax)
    return Family("MiniMax H3", load_minimax(path), lambda tokens, seed: random_conditioning(tokens, seed),
                  latent_channels=AUDIO_CHANNELS)
