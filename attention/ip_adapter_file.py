"""Standard IP-Adapter .safetensors files: what kind each is, and its weights ready to use.

A file holds ``image_proj.*`` (the image projection model) and ``ip_adapter.{n}.to_k_ip.weight`` /
``to_v_ip.weight``: the key and value projections of the image branch of every cross-attention layer,
numbered n = 1, 3, 5, ... in diffusers' processor order (attn1 takes the even numbers). Supported:

- base: ``image_proj.proj`` + ``image_proj.norm`` (linear projection of CLIP ``image_embeds``);
- plus: ``image_proj.latents`` + Resampler layers (CLIP penultimate hidden states);

for any context width (768: SD1.5, 2048: SDXL). Everything else (FaceID with its LoRA keys and
MLP or Perceiver projections, full-face MLP projections, files that are no IP-Adapter) is refused
with a message saying what was found.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .core.errors import AtelierError
from .ip_adapter_projection import RESAMPLER_HEAD_DIM, LinearImageProjection, Resampler

FAMILIES = {768: "SD1.5", 1024: "SD2.x", 2048: "SDXL"}
LAYER_KEY = re.compile(r"^(\d+)\.(to_k_ip|to_v_ip)\.weight$")
BASE_KEYS = {"proj.weight", "proj.bias", "norm.weight", "norm.bias"}
FIX_FILE = ("choose a base or plus IP-Adapter for SD1.5 or SDXL (e.g. ip-adapter_sd15.safetensors, "
            "ip-adapter-plus_sdxl_vit-h.safetensors) in models/ipadapter.")


def adapter_family(context_dim: int) -> str:
    return FAMILIES.get(context_dim, f"a model with context width {context_dim}")


@dataclass(frozen=True, eq=False)
class ImageAdapter:
    """A loaded IP-Adapter. Immutable and shared by reference (never deep-copied by clones)."""

    name: str
    variant: str  # "base" or "plus"
    context_dim: int  # width of the UNet's cross-attention context (768 SD1.5, 2048 SDXL)
    feature: str  # which CLIP_VISION_OUTPUT entry the projection reads
    feature_dim: int
    projection: torch.nn.Module  # float32, eval mode
    to_k: tuple  # per adapter layer, in file order: (inner_dim, context_dim) weight
    to_v: tuple

    @property
    def family(self) -> str:
        return adapter_family(self.context_dim)

    @property
    def tokens(self) -> int:
        return self.projection.tokens

    @property
    def layer_count(self) -> int:
        return len(self.to_k)

    def describe(self) -> str:
        return (f"{self.family} {self.variant} IP-Adapter ({self.tokens} image tokens from CLIP {self.feature} "
                f"of width {self.feature_dim}, {self.layer_count} cross-attention layers)")

    @torch.no_grad()
    def image_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Image prompt tokens (B, tokens, context_dim), float32, from CLIP features of B images."""
        return self.projection(features.detach().to("cpu", torch.float32))

    @torch.no_grad()
    def negative_tokens(self, features: torch.Tensor, zero_image_features: torch.Tensor = None) -> torch.Tensor:
        """IP-Adapter's unconditional image tokens (1, tokens, context_dim).

        Base adapters: the projection of all-zero image_embeds, as the original. Plus adapters: the
        original projects the CLIP hidden states of an all-zero pixel_values image; pass those as
        ``zero_image_features`` to get exactly that, otherwise all-zero hidden states are projected
        (an approximation: the hidden states of a zero image are not zero)."""
        if self.variant == "plus" and zero_image_features is not None:
            return self.image_tokens(zero_image_features[:1])
        return self.image_tokens(torch.zeros_like(features[:1]))

    def __deepcopy__(self, memo):
        return self


def _split(state: dict) -> tuple[dict, dict]:
    proj = {k[len("image_proj."):]: v for k, v in state.items() if k.startswith("image_proj.")}
    layers = {k[len("ip_adapter."):]: v for k, v in state.items() if k.startswith("ip_adapter.")}
    return proj, layers


def _examples(keys, count: int = 4) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - count} more" if len(keys) > count else ""
    return ", ".join(keys[:count]) + more


def _layer_weights(layers: dict, error) -> tuple[tuple, tuple]:
    unknown = [k for k in layers if not LAYER_KEY.match(k)]
    if unknown:
        kind = " (LoRA keys: a FaceID adapter)" if any("lora" in k for k in unknown) else ""
        raise error(f"its ip_adapter layers hold keys this node does not read{kind}: "
                    f"{_examples('ip_adapter.' + k for k in unknown)}.")
    numbers = sorted({int(LAYER_KEY.match(k).group(1)) for k in layers})
    missing = [n for n in numbers if f"{n}.to_k_ip.weight" not in layers or f"{n}.to_v_ip.weight" not in layers]
    if missing:
        raise error(f"layer(s) {missing[:4]} have to_k_ip without to_v_ip or the reverse.")
    return (tuple(layers[f"{n}.to_k_ip.weight"] for n in numbers),
            tuple(layers[f"{n}.to_v_ip.weight"] for n in numbers))


def _projection(proj: dict, error) -> tuple[torch.nn.Module, str, str]:
    if "latents" in proj:
        width, queries = proj["latents"].shape[-1], proj["latents"].shape[-2]
        depth = len({k.split(".")[1] for k in proj if k.startswith("layers.") and k.endswith(".0.to_q.weight")})
        heads = proj["layers.0.0.to_q.weight"].shape[0] // RESAMPLER_HEAD_DIM if depth else 1
        ff_mult = proj["layers.0.1.1.weight"].shape[0] // width if depth else 4
        model = Resampler(embed_dim=proj["proj_in.weight"].shape[1], width=width,
                          context_dim=proj["proj_out.weight"].shape[0], queries=queries, depth=depth,
                          heads=heads, ff_mult=ff_mult)
        return model, "plus", "penultimate_hidden_states"
    if set(proj) == BASE_KEYS:
        context_dim = proj["norm.weight"].shape[0]
        embed_dim, out = proj["proj.weight"].shape[1], proj["proj.weight"].shape[0]
        return LinearImageProjection(embed_dim, context_dim, out // context_dim), "base", "image_embeds"
    if any(k.startswith("perceiver_resampler.") for k in proj):
        found = "a FaceID Plus projection (perceiver_resampler.*)"
    elif "proj.0.weight" in proj:
        found = "an MLP projection (proj.0/proj.2: a FaceID or full-face adapter)"
    else:
        found = f"image_proj keys {_examples(proj)}"
    raise error(f"it has {found}; only base (image_proj.proj + norm) and plus (image_proj.latents, "
                "Resampler) adapters are supported.")


def read_adapter(state: dict, name: str, node: str, input_name: str = "ipadapter_name") -> ImageAdapter:
    """An :class:`ImageAdapter` from a file's state dict; AtelierError naming what was found otherwise."""
    def error(problem):
        return AtelierError(node, input_name, f"'{name}' is not a supported IP-Adapter: {problem}", FIX_FILE)

    proj, layers = _split(state)
    if not proj or not layers:
        raise error(f"it has no {'image_proj.*' if not proj else 'ip_adapter.*'} keys (found "
                    f"{_examples(state)}).")
    to_k, to_v = _layer_weights(layers, error)
    model, variant, feature = _projection(proj, error)
    try:
        model.load_state_dict({k: v.float() for k, v in proj.items()}, strict=True)
    except RuntimeError as e:
        raise error(f"its image_proj weights do not form a {variant} projection ({str(e).splitlines()[0]}).")
    context_dim = to_k[0].shape[1]
    tokens_width = model.norm_out.weight.shape[0] if variant == "plus" else model.norm.weight.shape[0]
    if tokens_width != context_dim or any(w.shape[1] != context_dim for w in to_k + to_v):
        raise error(f"its projection makes tokens of width {tokens_width} but its layers read width {context_dim}.")
    feature_dim = (model.proj_in.in_features if variant == "plus" else model.proj.in_features)
    return ImageAdapter(name=name, variant=variant, context_dim=context_dim, feature=feature,
                        feature_dim=feature_dim, projection=model.train(False).requires_grad_(False),
                        to_k=to_k, to_v=to_v)


def load_adapter(path: str, name: str, node: str, input_name: str = "ipadapter_name") -> ImageAdapter:
    if not path.lower().endswith(".safetensors"):
        raise AtelierError(node, input_name, f"'{name}' is not a .safetensors file.",
                           "convert the adapter to .safetensors; other formats are never loaded.")
    import safetensors.torch
    return read_adapter(safetensors.torch.load_file(path, device="cpu"), name, node, input_name)
