"""Tiny SD1.5 / SDXL checkpoints built from ComfyUI's own classes (meta device) with seeded weights.

Key names come from ComfyUI: the UNet is ``model_config.get_model(..., device="meta")``, the text
encoders are the model config's clip target, the VAE is TAESD or the KL AutoencoderKL, and the file is
assembled with ``BaseModel.state_dict_for_saving`` (process_*_state_dict_for_saving).
"""
from __future__ import annotations

import logging

import torch

from .fill import TINY_VERSION, SeededFiller

COMMON_UNET = {
    "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4,
    "use_spatial_transformer": True, "legacy": False, "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
# Detected as SD15 (detection pins context_dim 768, model_channels 320, conv proj_in, no adm).
TINY_SD15_UNET = dict(COMMON_UNET, **{
    "adm_in_channels": None, "model_channels": 320, "num_res_blocks": [1, 1], "channel_mult": [1, 1],
    "transformer_depth": [1, 1], "transformer_depth_middle": 1, "transformer_depth_output": [1, 1, 1, 1],
    "use_linear_in_transformer": False, "context_dim": 768,
})
# Detected as SDXL (needs transformer_depth [0,0,2,2,10,10] and a sequential adm of 2816).
TINY_SDXL_UNET = dict(COMMON_UNET, **{
    "num_classes": "sequential", "adm_in_channels": 2816, "model_channels": 320, "num_res_blocks": [2, 2, 2],
    "channel_mult": [1, 1, 1], "transformer_depth": [0, 0, 2, 2, 10, 10], "transformer_depth_middle": 10,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "use_linear_in_transformer": True,
    "context_dim": 2048,
})
KL_VAE_CONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
                 "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}

# name -> (model config class name, unet config, vae kind, seed)
CHECKPOINTS = {
    "atelier_tiny_sd15.safetensors": ("SD15", TINY_SD15_UNET, "taesd", 1501),
    "atelier_tiny_sd15_klvae.safetensors": ("SD15", TINY_SD15_UNET, "kl", 1501),
    "atelier_tiny_sdxl.safetensors": ("SDXL", TINY_SDXL_UNET, "taesd", 1001),
}


def model_config_for(kind: str, unet_config: dict):
    import comfy.supported_models as sm
    cfg = getattr(sm, kind)(dict(unet_config))
    cfg.set_inference_dtype(torch.float16, None)
    return cfg


def meta_base_model(kind: str, unet_config: dict):
    """ComfyUI BaseModel (SD15 / SDXL) with its diffusion model on the meta device."""
    cfg = model_config_for(kind, unet_config)
    return cfg.get_model({}, device=torch.device("meta"))


def meta_clip(model_config):
    target = model_config.clip_target()
    return target.clip(device=torch.device("meta"), dtype=torch.float16, **target.params)


def meta_vae(vae: str) -> torch.nn.Module:
    with torch.device("meta"):
        if vae == "taesd":
            import comfy.taesd.taesd
            return comfy.taesd.taesd.TAESD(latent_channels=4)
        import comfy.ldm.models.autoencoder as ae
        return ae.AutoencoderKL(ddconfig=KL_VAE_CONFIG, embed_dim=4)


def checkpoint_state_dict(kind: str, unet_config: dict, vae: str = "taesd", seed: int = 0,
                          dtype: torch.dtype = torch.float16) -> dict:
    """Full checkpoint state dict (UNet + text encoder(s) + VAE) with real key names."""
    model = meta_base_model(kind, unet_config)
    clip = meta_clip(model.model_config)
    filler = SeededFiller(seed, dtype)
    vae_sd = filler.fill(meta_vae(vae).state_dict())
    clip_sd = filler.fill(clip.state_dict())
    unet_meta = model.diffusion_model.state_dict()
    unet_sd = filler.fill(unet_meta)
    # state_dict_for_saving reads diffusion_model.state_dict(): swap in the filled tensors.
    model.diffusion_model.load_state_dict(unet_sd, assign=True)
    sd = model.state_dict_for_saving(clip_sd, vae_sd, None)
    return {k: (v.contiguous() if isinstance(v, torch.Tensor) else v) for k, v in sd.items()}


def build_checkpoint(path, name: str | None = None) -> dict:
    """Build one of CHECKPOINTS (by file name) and save it to ``path``. Returns the state dict's key count."""
    import comfy.utils
    from pathlib import Path
    path = Path(path)
    kind, unet_config, vae, seed = CHECKPOINTS[name or path.name]
    sd = checkpoint_state_dict(kind, unet_config, vae, seed)
    tmp = path.with_suffix(".tmp")
    comfy.utils.save_torch_file(sd, str(tmp), metadata={"atelier_tiny": TINY_VERSION, "kind": kind, "vae": vae})
    tmp.replace(path)
    n_params = sum(v.numel() for v in sd.values())
    logging.info("built %s (%s, %.1f M params)", path, kind, n_params / 1e6)
    return {"kind": kind, "vae": vae, "params": n_params}


def detect_checkpoint(path) -> str | None:
    """Model config class name ComfyUI detects for a checkpoint, from shapes only (fast, no weights read)."""
    from safetensors import safe_open
    import comfy.model_detection
    with safe_open(str(path), framework="pt") as f:
        sd = {}
        for k in f.keys():
            if k.startswith("model.diffusion_model."):
                sl = f.get_slice(k)
                sd[k] = torch.empty(sl.get_shape(), dtype=torch.float16, device="meta")
    cfg = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
    return None if cfg is None else type(cfg).__name__


def load_checkpoint(path):
    """Load through ComfyUI exactly like CheckpointLoaderSimple: (ModelPatcher, CLIP, VAE)."""
    import comfy.sd
    import folder_paths
    out = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True,
                                                embedding_directory=folder_paths.get_folder_paths("embeddings"))
    return out[:3]
