"""Tiny seeded random-weight Wan video models (Wan 2.1 / 2.2) of the real architectures, on both test beds.

The model class, its config and its key names are ComfyUI's: ``comfy.ldm.wan.model.WanModel`` built on
the meta device from ``supported_models``, and the config of the saved file comes back from
``comfy.model_detection.detect_unet_config`` on its own keys and shapes (width from ``head.modulation``,
the FFN width and depth from the block keys, the input channels from ``patch_embedding``, the output
channels from ``head.head``, t2v / i2v from ``img_emb``). Four layouts, each what detection names:

=========================  ===========  ======================================  =====================
file                       class        layout                                  real checkpoints
=========================  ===========  ======================================  =====================
atelier_tiny_wan21_t2v     WAN21_T2V    in 16 / out 16, text cross-attention    Wan 2.1 t2v 1.3B/14B,
                                                                                Wan 2.2 t2v 14B (high
                                                                                and low noise experts)
atelier_tiny_wan21_i2v     WAN21_I2V    in 36 (16 noise + 4 mask + 16 image),   Wan 2.1 i2v 480p/720p
                                        ``img_emb`` (CLIP-vision tokens, a      14B, FLF2V
                                        second cross-attention per block)
atelier_tiny_wan22_i2v     WAN21_T2V    in 36, no ``img_emb`` (t2v keys: the    Wan 2.2 i2v 14B (high
                                        image comes only through the concat)    and low noise)
atelier_tiny_wan22_ti2v    WAN22_T2V    in 48 / out 48 (Wan 2.2 VAE, 16x),      Wan 2.2 ti2v 5B
                                        per-frame timesteps from the noise mask
=========================  ===========  ======================================  =====================

Detection pins what it cannot read from the keys at full size: ``num_heads = dim // 128`` (heads of
128 channels) and the UMT5-XXL text width 4096 (``WanModel``'s default ``text_dim``; detection leaves
it unset). The tiny models (width 64) override exactly those (``TINY_OVERRIDES``: 2 heads of 32, RoPE
axes 12 + 10 + 10 as ``WanModel`` derives them, text width 32); the override is written into the file's
metadata (``atelier_dit_overrides``) and ``dit.load_tiny_dit`` applies it. The i2v model keeps the
CLIP-vision width 1280 (``MLPProj(1280, dim)`` is hard-coded), hence its larger file.

Stand-ins: :func:`random_conditioning` for UMT5-XXL (and, for the i2v layouts, what WanImageToVideo adds:
``concat_latent_image`` + ``concat_mask`` and, for Wan 2.1 i2v, a CLIP-vision output of 257 tokens x
1280); :func:`empty_latent` for EmptyHunyuanLatentVideo / Wan22ImageToVideoLatent.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .dit import DIFFUSION_MODELS, build_detected_dit, detected_config, load_tiny_dit, verify_detected_dit
from .files import ensure_built

WAN21_T2V = "atelier_tiny_wan21_t2v.safetensors"
WAN21_I2V = "atelier_tiny_wan21_i2v.safetensors"
WAN22_I2V = "atelier_tiny_wan22_i2v.safetensors"
WAN22_TI2V = "atelier_tiny_wan22_ti2v.safetensors"
VERSION_KEY = ("atelier_wan_version", "1")  # bump the value when a tiny Wan changes
WIDTH = 64
TEXT_WIDTH = 32  # UMT5-XXL's 4096
CLIP_VISION_TOKENS, CLIP_VISION_WIDTH = 257, 1280  # clip_vision_h penultimate hidden states
# detection pins heads of 128 (dim // 128) and WanModel's default text width 4096
TINY_OVERRIDES = {"num_heads": 2, "text_dim": TEXT_WIDTH}
# file -> (ComfyUI's config class detection picks, seed, model_type, in_dim, out_dim)
MODELS = {
    WAN21_T2V: ("WAN21_T2V", 2121, "t2v", 16, 16),
    WAN21_I2V: ("WAN21_I2V", 2122, "i2v", 36, 16),
    WAN22_I2V: ("WAN21_T2V", 2221, "t2v", 36, 16),
    WAN22_TI2V: ("WAN22_T2V", 2222, "t2v", 48, 48),
}
LATENT = {16: (16, 8), 48: (48, 16)}  # output channels -> (latent channels, spatial downscale)


def _unet_config(name: str) -> dict:
    _, _, model_type, in_dim, out_dim = MODELS[name]
    return {"image_model": "wan2.1", "model_type": model_type, "dim": WIDTH, "ffn_dim": 2 * WIDTH, "num_layers": 2,
            "in_dim": in_dim, "out_dim": out_dim, "patch_size": (1, 2, 2), "freq_dim": 256, "window_size": (-1, -1),
            "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6, **TINY_OVERRIDES}


def _meta_state_dict(name: str) -> dict:
    """Key names and shapes of a tiny Wan, from ComfyUI's own classes on the meta device."""
    import comfy.supported_models as sm
    config = getattr(sm, MODELS[name][0])(_unet_config(name))
    config.set_inference_dtype(torch.float32, None)
    return config.get_model({}, device=torch.device("meta")).diffusion_model.state_dict()


def build_wan(path, name: str | None = None) -> dict:
    name = name or Path(path).name
    meta = _meta_state_dict(name)
    detected = detected_config(meta, TINY_OVERRIDES).unet_config
    want = _unet_config(name)
    if any(detected.get(k) != want[k] for k in ("model_type", "in_dim", "out_dim", "dim", "num_layers")):
        raise ValueError(f"{Path(path).name}: detection gives {detected}, expected {want}")
    return build_detected_dit(path, meta, MODELS[name][0], MODELS[name][1], VERSION_KEY, TINY_OVERRIDES)


def verify_wan(path, full: bool = False) -> dict:
    return verify_detected_dit(path, MODELS[Path(path).name][0], VERSION_KEY, full)


def load_wan(path):
    """A ModelPatcher of a tiny Wan file (fp32, CPU), as ``comfy.sd.load_diffusion_model`` builds it."""
    return load_tiny_dit(path)


def latent_shape(model, frames: int = 5, size: int = 64, batch: int = 1) -> tuple:
    """The latent EmptyHunyuanLatentVideo (Wan 2.1 VAE) / Wan22ImageToVideoLatent (Wan 2.2 VAE) make for
    ``frames`` pixel frames at ``size`` px: [B, C, (frames - 1) // 4 + 1, size / s, size / s]."""
    channels, scale = LATENT[model.model.diffusion_model.out_dim]
    return (batch, channels, (frames - 1) // 4 + 1, size // scale, size // scale)


def empty_latent(model, frames: int = 5, size: int = 64, batch: int = 1) -> torch.Tensor:
    return torch.zeros(latent_shape(model, frames, size, batch))


def random_conditioning(model, tokens: int = 8, seed: int = 0, image_latent: torch.Tensor | None = None) -> list:
    """CONDITIONING standing in for UMT5-XXL: [[context (1, tokens, text_dim), extra]].

    ``image_latent`` (the i2v layouts' latent, [B, 16, T, h, w]): also what WanImageToVideo adds for a start
    image: ``concat_latent_image`` (seeded, every latent frame, as the VAE encodes the start frame followed
    by grey frames) and ``concat_mask`` (0 on the first latent frame = kept, 1 elsewhere) and, where the model
    has ``img_emb`` (Wan 2.1 i2v), ``clip_vision_output`` with 257 x 1280 penultimate hidden states (its
    second cross-attention reads them as ``clip_fea``)."""
    diffusion_model = model.model.diffusion_model
    gen = torch.Generator().manual_seed(seed)
    extra = {}
    if image_latent is not None:
        if diffusion_model.in_dim == diffusion_model.out_dim:
            raise ValueError("this Wan takes no image conditioning "
                             "(t2v, or Wan 2.2 ti2v: the image goes into the latent + noise_mask, see ti2v_latent)")
        b, c, t, h, w = image_latent.shape
        mask = torch.ones(1, 1, t, h, w)
        mask[:, :, :1] = 0.0
        extra.update(concat_latent_image=torch.randn(1, 16, t, h, w, generator=gen), concat_mask=mask)
        if diffusion_model.img_emb is not None:
            import comfy.clip_vision
            output = comfy.clip_vision.Output()
            output["penultimate_hidden_states"] = torch.randn(1, CLIP_VISION_TOKENS, CLIP_VISION_WIDTH, generator=gen)
            extra["clip_vision_output"] = output
    context = torch.randn(1, tokens, diffusion_model.text_dim, generator=gen)
    return [[context, extra]]


def ti2v_latent(model, frames: int = 5, size: int = 64, batch: int = 1, seed: int = 0) -> dict:
    """What Wan22ImageToVideoLatent gives the 5B ti2v for a start image: {"samples": the latent with a seeded
    first latent frame, "noise_mask": 0 on that frame, 1 elsewhere} (its first frame is kept, the model gets
    per-frame timesteps from the mask)."""
    shape = latent_shape(model, frames, size, batch)
    samples = torch.zeros(shape)
    samples[:, :, :1] = torch.randn(shape[0], shape[1], 1, *shape[3:], generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(shape[0], 1, *shape[2:])
    mask[:, :, :1] = 0.0
    return {"samples": samples, "noise_mask": mask}


def wan_artifacts() -> dict:
    """ARTIFACTS entries (subfolder, builder, verifier) of the tiny Wan models (both test beds)."""
    return {name: (DIFFUSION_MODELS, build_wan, verify_wan) for name in MODELS}


def bench_family(name: str = WAN21_T2V):
    """The tiny Wan 2.1 t2v for ``scripts/bench_families.py --family wan``: clips [B, 16, frames, size/8, size/8];
    self- and cross-attention are the blocks' ``self_attn`` / ``cross_attn`` modules."""
    from scripts.bench_families import Family, unet_minimums
    from .env import DEFAULT_BASE
    path = ensure_built(DEFAULT_BASE / "models" / DIFFUSION_MODELS / name, verify_wan, build_wan)
    model = load_wan(path)
    channels, scale = LATENT[model.model.diffusion_model.out_dim]
    return Family("Wan 2.1", model, lambda tokens, seed: random_conditioning(model, tokens=tokens, seed=seed),
                  latent_channels=channels, minimums=unet_minimums, slots=("self_attn", "cross_attn"), video=True,
                  latent=lambda batch, size, frames: torch.zeros(batch, channels, frames, size // scale, size // scale))
