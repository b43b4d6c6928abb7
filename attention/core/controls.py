"""The control protocol: what every attention control of the pack looks like.

A control is an immutable object on the model's control stack. For each attention call it may act
on, the dispatcher hands it the projected q, k, v, an :class:`AttentionCall` describing the call,
and ``next_attention``: the rest of the chain (the following controls, then the base attention).
A control returns the attention output, shaped (batch, tokens, heads * dim_head).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from .layers import LayerSelection
from .rows import ChunkLayout, chunk_layout
from .schedule import Window

# next_attention(q, k, v, call, mask=None) -> out; mask is an additive score bias or None
Attention = Callable[..., torch.Tensor]


@dataclass
class AttentionCall:
    """One attention call inside one model evaluation."""

    extra_options: dict
    key: tuple  # (block, block_id, index), e.g. ("input", 4, 1)
    run: "RunInfo"
    # channels an outer control appended to every head of q/k/v (StyleAligned's folded score shift):
    # the tensors no longer have the model's dim_head, so another pack's replace must not see them
    head_pad: int = 0

    @property
    def heads(self) -> int:
        return self.extra_options["n_heads"]

    def layout(self, batch: int) -> ChunkLayout:
        return chunk_layout(batch, self.extra_options.get("cond_or_uncond"))

    @property
    def activations_shape(self) -> Optional[list]:
        return self.extra_options.get("activations_shape")


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
        """Sampling progress in [0, 1] of the current sigma (ComfyUI's percent scale)."""
        ms = self.model_sampling
        sigma = torch.tensor(self.sigma)
        t = float(ms.timestep(sigma))
        t_max = float(ms.timestep(ms.sigma_max))
        t_min = float(ms.timestep(ms.sigma_min))
        if t_max <= t_min:
            return 0.0
        return min(max((t_max - t) / (t_max - t_min), 0.0), 1.0)


class AttentionControl:
    """Base class. Subclasses are frozen dataclasses with ``slot``, ``layers`` and ``window``."""

    slot: str = "attn1"  # "attn1" (self-attention) or "attn2" (cross-attention)
    layers: LayerSelection = LayerSelection()
    window: Window = Window()
    # whether what the control gives a row may depend on row 0 of its chunk (the reference): then
    # reference-image mode's cache records and replays row 0 at the control's layers. False only for
    # controls that act on each row alone.
    reads_reference_row = True

    def active_at(self, run: RunInfo) -> bool:
        return self.window.contains(run.sigma, run.model_sampling)

    def prepare(self, q, k, v, call: AttentionCall):
        """Phase 1, every control in stack order, always on the whole batch: transform q, k, v
        (statistics alignment and the like). Order-independent across controls that only prepare."""
        return q, k, v

    def attend(self, q, k, v, call: AttentionCall, next_attention: Attention, mask=None) -> torch.Tensor:
        """Phase 2, chained: return the attention output; ``next_attention(q, k, v, call, mask)`` runs
        the rest of the chain (it may receive a sub-batch or extra keys from an outer control)."""
        return next_attention(q, k, v, call, mask)

    def __deepcopy__(self, memo):
        # Immutable: ModelPatcher.clone() deep-copies model_options on every clone; share instead.
        return self
