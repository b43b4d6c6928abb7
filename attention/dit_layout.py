"""What the dispatcher knows about a diffusion transformer: its family, layer keys and token layout.

Flux.1 (and models of its class: schnell, dev fine-tunes, Kontext) runs ``double`` blocks (separate
text and image streams, one joint attention) then ``single`` blocks (one stream, one attention); its
forward writes ``block_type`` ("double" / "single") and ``block_index`` into the transformer_options
every attention call receives. Layer keys are ``("double", i)`` and ``("single", i)``, named
``double.3`` / ``single.10`` in layer selections.

SD3.x (MMDiT) runs ``joint`` blocks only and writes no block index: the dispatcher marks each
block's transformer_options through a ``patches_replace["dit"]`` block replace (:data:`JOINT_KEY`),
which then calls the block (or the replace another pack had there). Layer keys are ``("joint", i)``,
named ``joint.5``. SD3.5 Medium's extra image-only attention (MMDiT-X) is left alone.

Every joint attention call sees the tokens of one row in the order ``[text | image | extra]``:
``text`` is the context (T5 tokens for Flux), ``image`` the patchified latent (ceil(H/p) * ceil(W/p)
tokens, row-major), ``extra`` whatever a model appends after the image (Kontext reference latents).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

try:  # guarded: the maths in this package imports without ComfyUI
    from comfy.ldm.flux.model import Flux as FluxModel
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    FluxModel = MMDiT = None

FLUX = "Flux"
SD3 = "SD3"
JOINT_KEY = "attention_atelier.joint_block"  # set in a joint block's transformer_options by our block replace


def family(diffusion_model):
    """The DiT family the dispatcher supports for this diffusion model, or None."""
    if FluxModel is not None and isinstance(diffusion_model, FluxModel):
        if getattr(diffusion_model, "params", None) is not None and getattr(diffusion_model.params, "global_modulation", False):
            return None  # Flux.2: another block layout
        return FLUX
    if MMDiT is not None and isinstance(diffusion_model, MMDiT):
        return SD3
    return None


def layer_keys(diffusion_model) -> tuple:
    """Every attention layer key of a supported DiT, in execution order."""
    if family(diffusion_model) == SD3:
        return tuple(("joint", i) for i in range(len(diffusion_model.joint_blocks)))
    return (tuple(("double", i) for i in range(len(diffusion_model.double_blocks)))
            + tuple(("single", i) for i in range(len(diffusion_model.single_blocks))))


def layer_key(transformer_options: dict):
    """The layer key of the attention call in progress (Flux writes its block, our SD3 block replace
    marks it), or None."""
    joint = transformer_options.get(JOINT_KEY)
    if joint is not None:
        return "joint", joint
    kind, index = transformer_options.get("block_type"), transformer_options.get("block_index")
    if kind in ("double", "single") and isinstance(index, int):
        return kind, index
    return None


def context_width(diffusion_model) -> int:
    """Channels of the model's text input (T5's 4096 for real Flux / SD3)."""
    if family(diffusion_model) == SD3:
        return diffusion_model.context_embedder.in_features
    return diffusion_model.params.context_in_dim


@dataclass(frozen=True)
class TokenLayout:
    """Where the tokens of one row sit in a joint attention call:
    ``[text | stream_1 | ... | stream_n | image | extra]``.

    ``text`` is the sampler's prompt; the streams are extra prompts the pack appended to the context
    for this evaluation (regional local prompts, an aesthetic prompt), each carried through the
    model's text stream like the prompt, and kept apart from it in every attention call."""

    text: int  # number of prompt tokens, first in the sequence
    image: int  # number of image tokens
    grid: tuple  # (h, w) of the image tokens, row-major
    streams: tuple = ()  # token count of each appended stream, in order
    stream_keys: tuple = ()  # what each stream belongs to (id of a region or control)

    @property
    def text_total(self) -> int:
        return self.text + sum(self.streams)

    @property
    def image_slice(self) -> slice:
        return slice(self.text_total, self.text_total + self.image)

    def matches(self, tokens: int) -> bool:
        """True when a call of ``tokens`` tokens holds at least [text | streams | image]."""
        return tokens >= self.text_total + self.image

    @property
    def main(self) -> "TokenLayout":
        """The layout once the streams are taken out: [text | image | extra]."""
        return TokenLayout(self.text, self.image, self.grid)

    def stream_slices(self) -> list:
        slices, start = [], self.text
        for length in self.streams:
            slices.append(slice(start, start + length))
            start += length
        return slices

    def split(self, x):
        """(…, tokens, C) -> (main tokens [text | image | extra], [stream tokens, ...]) along dim -2."""
        if not self.streams:
            return x, []
        main = torch.cat([x[..., :self.text, :], x[..., self.text_total:, :]], dim=-2)
        return main, [x[..., s, :] for s in self.stream_slices()]

    def assemble(self, main_out, stream_outs):
        """Outputs (batch, tokens, C) back in the call's token order."""
        if not self.streams:
            return main_out
        return torch.cat([main_out[:, :self.text], *stream_outs, main_out[:, self.text:]], dim=1)


def token_layout(diffusion_model, x, context, streams=(), stream_keys=()) -> TokenLayout:
    """The token layout of a model evaluation with latent ``x`` (B, C, H, W) and the sampler's
    ``context``; ``streams`` are the token counts of contexts appended after it."""
    patch = diffusion_model.patch_size
    h, w = -(-x.shape[-2] // patch), -(-x.shape[-1] // patch)  # both pad the latent to whole patches
    text = int(context.shape[1]) + int(getattr(diffusion_model, "register_length", 0) or 0)
    return TokenLayout(text=text, image=h * w, grid=(h, w), streams=tuple(streams), stream_keys=tuple(stream_keys))
