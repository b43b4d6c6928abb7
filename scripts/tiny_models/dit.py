"""Tiny seeded random-weight diffusion transformers (Flux.1, SD3.5) of the real architectures.

The model class, its config and its key names are ComfyUI's: the config comes from
``comfy.model_detection.detect_unet_config`` run on the file's own keys and shapes (so ComfyUI infers
the width from ``img_in``, the depths from the block keys and, on versions that have it, fills
``txt_ids_dims``), and ``model_config_from_unet_config`` picks ``supported_models.Flux``.

One thing cannot come from detection: it pins Flux's 24 heads of 128 channels (axes_dim
[16, 56, 56]), which forces a width of 3072 (about 500 M parameters for a single block pair). The
tiny model keeps ComfyUI's detection for everything else and overrides only ``num_heads`` and
``axes_dim``; the override is written into the file's metadata (``atelier_dit_overrides``) and
:func:`load_tiny_dit` applies it. ComfyUI's own UNETLoader would therefore mis-detect this file:
tests load it with :func:`load_tiny_dit`, which otherwise follows ``comfy.sd.load_diffusion_model``.

SD3.5 (MMDiT) needs no override: ComfyUI derives its width (64 * depth) and heads (depth) from the
patch embedding, so the tiny SD3.5 (depth 2: width 128, 2 heads; RMS q/k norm as SD3.5; an MMDiT-X
image-only attention in block 0 as SD3.5 Medium) loads through ComfyUI's own detection unchanged.

Text encoders (T5-XXL, CLIP-L/G) are replaced in tests by :func:`random_conditioning`: a CONDITIONING
of the shapes the model takes (context_in_dim-wide tokens, a vec_in_dim pooled output).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .files import file_metadata, load_file_keys, save_tiny
from .fill import LINEAR_STD, SeededFiller

FLUX = "atelier_tiny_flux.safetensors"
SD35 = "atelier_tiny_sd35.safetensors"
DIFFUSION_MODELS = "diffusion_models"

# Real Flux.1-dev layout (double then single blocks, guidance embedding) at a tiny width.
TINY_FLUX = {
    "hidden_size": 64, "in_channels": 16, "context_in_dim": 32, "vec_in_dim": 16,
    "depth": 2, "depth_single_blocks": 2, "mlp_ratio": 4.0, "guidance_embed": True,
}
# Detection pins 24 heads x 128 channels; 2 heads x 32 (RoPE axes 4 + 14 + 14) at width 64.
TINY_FLUX_OVERRIDES = {"num_heads": 2, "axes_dim": [4, 14, 14]}
SEEDS = {FLUX: 2101, SD35: 3501}
# SD3.5 at depth 2 (width 128, 2 heads), tiny text widths (T5/CLIP stand-ins), 32 x 32 latent positions
TINY_SD35 = {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 2, "input_size": None,
             "adm_in_channels": 32, "num_patches": 1024, "pos_embed_max_size": 32,
             "pos_embed_scaling_factor": None, "qk_norm": "rms", "x_block_self_attn_layers": [0],
             "context_embedder_config": {"target": "torch.nn.Linear",
                                         "params": {"in_features": 32, "out_features": 128}}}
FLUX_VERSION = "2"  # metadata atelier_dit_version; bump when a tiny DiT changes


def _flux_unet_config() -> dict:
    """The unet_config detection would give a Flux of TINY_FLUX's shapes (real Flux constants)."""
    return {"image_model": "flux", "in_channels": TINY_FLUX["in_channels"], "out_channels": 16,
            "vec_in_dim": TINY_FLUX["vec_in_dim"], "context_in_dim": TINY_FLUX["context_in_dim"],
            "hidden_size": TINY_FLUX["hidden_size"], "mlp_ratio": TINY_FLUX["mlp_ratio"],
            "depth": TINY_FLUX["depth"], "depth_single_blocks": TINY_FLUX["depth_single_blocks"],
            "theta": 10000, "patch_size": 2, "qkv_bias": True, "guidance_embed": TINY_FLUX["guidance_embed"],
            **TINY_FLUX_OVERRIDES}


def to_file_keys(state_dict: dict) -> dict:
    """ComfyUI's RMSNorm names (``*_norm.weight``) back to the checkpoint names (``*_norm.scale``)
    that detection and ``Flux.process_unet_state_dict`` expect."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith(("query_norm.weight", "key_norm.weight")):
            key = key[: -len(".weight")] + ".scale"
        out[key] = value
    return out


def detected_config(state_dict: dict, overrides: dict):
    """ComfyUI's model config for a diffusion-model state dict, with ``overrides`` on the detected
    unet_config (detection itself fills what this ComfyUI version needs, e.g. txt_ids_dims)."""
    import comfy.model_detection as md
    dit_config = md.detect_unet_config(state_dict, "")
    if dit_config is None:
        raise ValueError("ComfyUI does not recognise the diffusion model")
    dit_config.update(overrides)
    config = md.model_config_from_unet_config(dit_config, state_dict)
    if config is None:
        raise ValueError(f"no ComfyUI model config matches {dit_config}")
    return config


def _meta_flux_state_dict() -> dict:
    """Key names and shapes of the tiny Flux, from ComfyUI's Flux class on the meta device."""
    import comfy.supported_models as sm
    config = sm.Flux(_flux_unet_config())
    config.set_inference_dtype(torch.float32, None)
    base = config.get_model({}, device=torch.device("meta"))
    return to_file_keys(base.diffusion_model.state_dict())


def scaled(weight: torch.Tensor) -> torch.Tensor:
    """Linear weights at std 1/sqrt(fan_in) instead of the filler's 0.02: at width 64 the latter
    leaves adaLN gates near 0, so attention would barely reach the output."""
    if weight.ndim != 2:
        return weight
    return weight * (weight.shape[1] ** -0.5 / LINEAR_STD)


def _meta_sd35_state_dict() -> dict:
    import comfy.supported_models as sm
    config = sm.SD3(dict(TINY_SD35))
    config.set_inference_dtype(torch.float32, None)
    return config.get_model({}, device=torch.device("meta")).diffusion_model.state_dict()


# file name -> (kind, meta state dict, overrides on detection)
MODELS = {FLUX: ("Flux", _meta_flux_state_dict, TINY_FLUX_OVERRIDES), SD35: ("SD3", _meta_sd35_state_dict, {})}


def build_detected_dit(path, meta: dict, kind: str, seed: int, version: tuple[str, str], overrides: dict,
                       weights=lambda key, weight: scaled(weight)) -> dict:
    """Fill ``meta`` (a family's key names and shapes) with seeded weights, check that ComfyUI's detection
    (with ``overrides``) takes the keys for ``kind``, and save the file with ``version`` = (metadata key,
    value) and the overrides. ``weights(key, tensor)`` adjusts each filled tensor."""
    got = type(detected_config(meta, overrides)).__name__
    if got != kind:
        raise ValueError(f"{Path(path).name}: detected as {got}, expected {kind}")
    sd = {k: weights(k, v) for k, v in SeededFiller(seed, torch.float32).fill(meta).items()}
    return save_tiny(path, sd, kind, **{version[0]: version[1]}, atelier_dit_overrides=json.dumps(overrides))


def verify_detected_dit(path, kind: str, version: tuple[str, str], full: bool = False) -> dict:
    """The file is this test bed's ``version`` of ``kind`` and detects as it; ``full`` loads it."""
    metadata = file_metadata(path)
    if metadata.get(version[0]) != version[1]:
        raise ValueError(f"{path}: tiny {kind} version {metadata.get(version[0])}, expected {version[1]}")
    got = type(detected_config(load_file_keys(path), json.loads(metadata.get("atelier_dit_overrides", "{}")))).__name__
    if got != kind:
        raise ValueError(f"{path}: detected as {got}, expected {kind}")
    if full:
        loaded = type(load_tiny_dit(path).model.model_config).__name__
        if loaded != kind:
            raise ValueError(f"{path}: loaded as {loaded}")
    return {"kind": got}


def build_dit(path, name: str | None = None) -> dict:
    name = name or Path(path).name
    kind, make_meta, overrides = MODELS[name]
    return build_detected_dit(path, make_meta(), kind, SEEDS[name], ("atelier_dit_version", FLUX_VERSION), overrides)


def load_tiny_dit(path):
    """A ModelPatcher of a tiny DiT file, built like ``comfy.sd.load_diffusion_model`` (fp32, CPU)."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.utils
    sd, metadata = comfy.utils.load_torch_file(str(path), safe_load=True, return_metadata=True)
    overrides = json.loads((metadata or {}).get("atelier_dit_overrides", "{}"))
    config = detected_config(sd, overrides)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model(sd, "")
    model = model.to(mm.unet_offload_device())
    model.load_model_weights(sd, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def verify_dit(path, full: bool = False) -> dict:
    return verify_detected_dit(path, MODELS[Path(path).name][0], ("atelier_dit_version", FLUX_VERSION), full)


def random_conditioning(model, tokens: int = 8, seed: int = 0, guidance: float | None = 3.5) -> list:
    """CONDITIONING standing in for a text encoder: [[context (1, tokens, context_in_dim),
    {"pooled_output": (1, vec_in_dim), "guidance": g}]] with seeded normal values."""
    unet_config = model.model.model_config.unet_config
    if "context_in_dim" in unet_config:  # Flux
        width, pooled = unet_config["context_in_dim"], unet_config["vec_in_dim"]
    else:  # SD3 (MMDiT)
        width = unet_config["context_embedder_config"]["params"]["in_features"]
        pooled = unet_config["adm_in_channels"]
    gen = torch.Generator().manual_seed(seed)
    context = torch.randn(1, tokens, width, generator=gen)
    extra = {"pooled_output": torch.randn(1, pooled, generator=gen)}
    if guidance is not None:
        extra["guidance"] = guidance
    return [[context, extra]]


def dit_artifacts() -> dict:
    """ARTIFACTS entries (subfolder, builder, verifier) of the tiny diffusion transformers."""
    return {FLUX: (DIFFUSION_MODELS, build_dit, verify_dit), SD35: (DIFFUSION_MODELS, build_dit, verify_dit)}
