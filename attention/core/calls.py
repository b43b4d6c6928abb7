"""What a control is told about the attention call it acts on and the model evaluation around it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from .chain import default_attention
from .rows import ChunkLayout, chunk_layout
from .schedule import percent_at
from .tokens import TokenLayout


@dataclass(frozen=True)
class RunInfo:
    """What the dispatcher learned about the current model evaluation."""

    model_sampling: object
    sigma: float
    layer_keys: tuple  # every attention layer key of the model, in execution order
    sample_sigmas: Optional[torch.Tensor] = field(default=None, compare=False)
    # the model being run, object patches applied: controls that need a layer's own projections
    diffusion_model: object = field(default=None, compare=False, repr=False)
    family: object = field(default=None, compare=False, repr=False)  # its adapter (attention/models/)
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    def memo(self, name: str, compute):
        """``compute()`` once per model evaluation (every layer sees the same value; avoids GPU syncs)."""
        if name not in self._memo:
            self._memo[name] = compute()
        return self._memo[name]

    def text_width(self) -> int:
        """Channels of the model's text input (what a prompt's conditioning must have)."""
        return self.family.context_width(self.diffusion_model)

    def progress(self) -> float:
        """Sampling progress in [0, 1] at the current sigma, on ComfyUI's percent scale."""
        return percent_at(self.model_sampling, self.sigma)


@dataclass
class AttentionCall:
    """One attention call inside one model evaluation (a UNet's self- or cross-attention)."""

    extra_options: dict
    key: tuple  # the layer, e.g. ("input", 4, 1)
    run: RunInfo
    # channels an outer control appended to every head of q/k/v (StyleAligned's folded score shift):
    # the tensors no longer have the model's dim_head, so another pack's replace must not see them
    head_pad: int = 0
    # the chain's last link when that is the model's own attention (no other pack's replace or override
    # below the controls): a control whose next_attention is this gets plain attention's output from it
    plain_end: object = None
    # plain(q, k, v, mask=None): the model's attention function itself, no override (transformers); on a
    # UNet ComfyUI's attention as its CrossAttention calls it
    plain: object = None
    # extra prompts carried through the model's text path this evaluation, by owner (id of a region or
    # control): their (q, k, v) at this call in joint attention, their (k, v) in a cross-attention call
    streams: dict = field(default_factory=dict)

    @property
    def heads(self) -> int:
        return self.extra_options["n_heads"]

    def layout(self, batch: int) -> ChunkLayout:
        return chunk_layout(batch, self.extra_options.get("cond_or_uncond"))

    @property
    def activations_shape(self) -> Optional[list]:
        return self.extra_options.get("activations_shape")

    @property
    def text_in_streams(self) -> bool:
        """Whether the model's own text path makes the keys and values of the prompts a control adds (a
        video transformer: they ride in ``streams``), rather than the layer's projections (a UNet)."""
        return self.run.family is not None and self.run.family.kind == "separate"

    def is_plain(self, next_attention) -> bool:
        """Whether ``next_attention`` is the model's own attention itself (nothing else below)."""
        return self.plain_end is not None and next_attention is self.plain_end

    def plain_attention(self, q, k, v, mask=None):
        """The model's own attention of q over k, v at this call (no control, no other pack)."""
        return default_attention(q, k, v, self, mask) if self.plain is None else self.plain(q, k, v, mask)

    def module(self, slot: str):
        """This layer's attention module of ``slot`` in the model being run (its own projections)."""
        return self.run.family.attention_module(self.run.diffusion_model, self.key, slot)


@dataclass
class DiTAttentionCall(AttentionCall):
    """An attention call of a DiT: q, k, v are (batch, heads, tokens, dim) (Flux) or (batch, tokens,
    heads * dim) (SD3) with ``tokens`` laid out as :class:`TokenLayout` says (the prompt's tokens and
    the image's, no streams); the output is (batch, tokens, heads * dim). ``streams`` maps a stream's
    owner (id of a region or control) to that stream's (q, k, v) at this layer, whole batch."""

    tokens: TokenLayout = None
    n_heads: int = 1
    batch: int = 0

    @property
    def heads(self) -> int:
        return self.n_heads

    @property
    def activations_shape(self):
        return [1, 1, *self.tokens.grid]
