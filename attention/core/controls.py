"""The control protocol: every hook an attention control of the pack may implement.

A control is an immutable object on the model's control stack (nodes append it; the dispatcher runs
it). Per attention call at a layer it selects, the dispatcher runs, in stack order, ``prepare`` of every
control on the whole batch (statistics alignment: composes in any order), then the chain of ``attend``
hooks, each handed ``next_attention``: the rest of the chain (the following controls, then the base
attention: another pack's replace or override, or the model's own attention). UNet layers call the
``prepare`` / ``attend`` pair, diffusion transformers' joint attention the ``dit_`` pair. A control
returns the attention output in the layout its q arrived in.
"""
from __future__ import annotations

from .calls import AttentionCall, RunInfo
from .layers import LayerSelection
from .schedule import Window


class AttentionControl:
    """Base class. Subclasses are frozen dataclasses with ``slot``, ``layers`` and ``window``."""

    slot: str = "attn1"  # "attn1" (self-attention), "attn2" (cross-attention) or "norm" (GroupNorms)
    layers: LayerSelection = LayerSelection()
    window: Window = Window()
    feature: str = ""  # what users call the method: a column of the README's support table
    named_in_errors: str = ""  # how a refusal names it (default: ``feature``)
    joint_attention: bool = False  # has a path through a diffusion transformer's joint attention
    # its attend / prepare also serve a video transformer's separate self- and cross-attention calls
    # (tokens of one row as a UNet layer's: (batch, tokens, heads * dim)); False for controls that need
    # a UNet's own parts (GroupNorms, IP-Adapter layers)
    separate_attention: bool = False
    outermost: bool = False  # DiT: its dit_attend wraps every other control (it needs the unsplit batch)
    # whether what the control gives a row may depend on row 0 of its chunk (the reference): then
    # reference-image mode's cache records and replays row 0 at the control's layers
    reads_reference_row: bool = True
    # the node whose control aligns rows 1..B-1 with row 0 (a batch of one has nothing to align to)
    reference_node: str = ""
    chains_group_norm: bool = False  # acts on a GroupNorm itself (joins the norm's chain)

    def describe(self) -> str:
        return self.named_in_errors or self.feature or type(self).__name__

    def implements(self, hook: str) -> bool:
        """Whether this control's class has its own ``hook`` (else the base class's pass-through). Only
        controls that implement a chained hook join that chain: a pass-through link would hide from the
        control above it that the model's own attention is below."""
        return getattr(type(self), hook) is not getattr(AttentionControl, hook)

    def active_at(self, run: RunInfo) -> bool:
        return self.window.contains(run.sigma, run.model_sampling)

    def install(self, model) -> None:
        """Anything besides the control stack that the control needs on the patched clone ``model`` (an
        object patch, say); called once when a node attaches the control."""

    # ---- a UNet's self- or cross-attention (slot "attn1" / "attn2") ------------------------------
    def prepare(self, q, k, v, call: AttentionCall):
        """Phase 1, every control in stack order, always on the whole batch: transform q, k, v
        (statistics alignment and the like). Order-independent across controls that only prepare."""
        return q, k, v

    def attend(self, next_attention, q, k, v, call: AttentionCall, mask=None):
        """Phase 2, chained: return the attention output; ``next_attention(q, k, v, call, mask)`` runs
        the rest of the chain (it may receive a sub-batch or extra keys from an outer control)."""
        return next_attention(q, k, v, call, mask)

    # ---- a diffusion transformer's joint attention (see ``attention/dispatch/dit_override.py``) -------
    def dit_prepare(self, q, k, v, call):
        return q, k, v

    def dit_attend(self, next_attention, q, k, v, call, mask=None):
        return next_attention(q, k, v, call, mask)

    def text_streams(self, run: RunInfo) -> list:
        """Extra prompts carried through a transformer's text path this evaluation: [(owner id, context
        (1, T, D)), ...]; their q/k/v (joint attention) or k/v (cross-attention) reach the control as
        ``call.streams[owner]``."""
        return []

    # ---- GroupNorms (slot "norm"; see ``attention/group_norm.py``) -----------------------------
    def prepare_norm(self, x, layout, reference=None):
        """Phase 1 on a GroupNorm's whole input (batch, C, ...); ``reference``: row 0's recorded
        statistics where reference-image mode replays them."""
        return x

    def group_norm(self, next_norm, x, layout, reference=None):
        """Phase 2, chained (controls with ``chains_group_norm`` only): the norm's output."""
        return next_norm(x)

    def __deepcopy__(self, memo):
        # Immutable: ModelPatcher.clone() deep-copies model_options on every clone; share instead.
        return self
