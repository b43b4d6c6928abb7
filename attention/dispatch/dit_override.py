"""The dispatcher for joint attention (diffusion transformers): one override per model evaluation.

ComfyUI wraps every attention function with ``wrap_attn``: when the call's transformer_options hold
``optimized_attention_override``, the function is handed to it as
``override(func, q, k, v, heads, ..., transformer_options=...)`` instead of running. The pack's
APPLY_MODEL wrapper puts one :class:`DiTOverride` there, in the per-call copy of transformer_options
only, when some active control selects a layer of the model. No module's forward is replaced.

The override asks the model's family adapter (``attention/models/``) for the layer of the call, runs
the controls selecting that layer (prepare in stack order, then the attend chain, as on UNets) and
ends the chain at the base attention: an override another pack had installed (it keeps running), or
the attention function itself. Calls at layers no control selects go straight to the base, so
neutral settings reproduce vanilla output bit for bit.

A control acts on a DiT through its own ``dit_prepare`` / ``dit_attend`` / ``text_streams`` hooks
(``attention/core/controls.py``); a control without a joint-attention path is refused by name when a node
attaches it (``dispatcher.require_supported``).
"""
from __future__ import annotations

import functools
import logging

import torch

from ..core.calls import DiTAttentionCall
from ..core.chain import chain
from ..core.keys import OVERRIDE_KEY
from ..core.tokens import TokenLayout

log = logging.getLogger("attention_atelier")

# ComfyUI's attention functions: (q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
# skip_output_reshape=False, **kwargs)
POSITIONAL = ("mask", "attn_precision", "skip_reshape", "skip_output_reshape")


class DiTOverride:
    """``optimized_attention_override`` of one model evaluation: controls at the layers they select,
    and the appended text streams (regional / aesthetic prompts) kept apart from the prompt."""

    def __init__(self, family, table: dict, base, run, tokens: TokenLayout):
        self.family, self.table, self.base, self.run, self.tokens = family, table, base, run, tokens
        self.calls = self.joint_calls = 0  # attention calls of this evaluation so far (all / whole layout)

    def __call__(self, func, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        q, k, v = args[:3]
        layout = self.tokens
        calls, joint_calls = self.calls, self.joint_calls
        self.calls += 1
        self.joint_calls += layout.matches(q.shape[-2])
        if layout.streams and self.family.text_only_call(options, self.run.diffusion_model, q.shape[-2], layout,
                                                         calls):
            return self._text_only(func, args, kwargs)
        if layout.streams:
            q, k = self.family.stream_positions(q, k, layout, self.run.diffusion_model)
            args = (q, k, *args[2:])
        key = self.family.call_key(options, self.run.diffusion_model, q.shape[-2], layout, joint_calls)
        controls = self.table.get(key, ())
        if (key is None or (not controls and not layout.streams) or not layout.matches(q.shape[-2])
                or q.shape[-2] != k.shape[-2]):
            return self._base(func, args, kwargs)
        if len(args) > 4:  # a model passing the mask (or more) by position, as Qwen-Image does: by name
            args, kwargs = args[:4], dict(kwargs, **dict(zip(POSITIONAL, args[4:])))
        heads = args[3] if len(args) > 3 else kwargs.get("heads")
        if v.ndim == q.ndim + 1:  # SD3 hands v as (batch, tokens, heads, dim) next to (batch, tokens, C) q, k
            v = v.flatten(-2)

        def call_with(function, q_, k_, v_, mask):
            return function(q_, k_, v_, *args[3:], **dict(kwargs, mask=mask))

        def base_attention(q_, k_, v_, call_, mask=None):
            # a call with score-shift channels per head goes to ComfyUI's attention, never to another
            # pack's override (it would read the head size from q and mis-split)
            if self.base is not None and not call_.head_pad:
                return call_with(functools.partial(self.base, func), q_, k_, v_, mask)
            return call_with(func, q_, k_, v_, mask)

        (q_main, q_streams), (k_main, k_streams), (v_main, v_streams) = map(layout.split, (q, k, v))
        call = DiTAttentionCall(extra_options=options, key=key, run=self.run, tokens=layout.main, n_heads=heads,
                                streams=dict(zip(layout.stream_keys, zip(q_streams, k_streams, v_streams))),
                                batch=q.shape[0], plain=functools.partial(call_with, func),
                                plain_end=base_attention if self.base is None else None)
        model_mask = kwargs.get("mask")
        # declared extra tokens (an edit model's reference latents) leave the chain: their queries get
        # the base attention on the model's own q/k/v, whatever the controls do to the others
        extra = layout.extra if controls else 0
        if extra:
            plain_kv = (k_main, v_main)
            q_main, q_extra = q_main[..., :-extra, :], q_main[..., -extra:, :]
        for control in controls:
            q_main, k_main, v_main = control.dit_prepare(q_main, k_main, v_main, call)
        attending = [c for c in controls if c.implements("dit_attend")]
        ordered = [c for c in attending if c.outermost] + [c for c in attending if not c.outermost]
        out = chain([c.dit_attend for c in ordered], base_attention)(q_main, k_main, v_main, call, mask=model_mask)
        if extra:
            out = torch.cat([out, base_attention(q_extra, *plain_kv, call, mask=model_mask)], dim=1)
        if not layout.streams:
            return out
        # each stream attends to itself and the image (as its own prompt would), never to the prompt
        image = slice(layout.text, None)
        stream_outs = [call_with(func, q_s, torch.cat([k_s, k_main[..., image, :]], dim=-2),
                                 torch.cat([v_s, v_main[..., image, :]], dim=-2), None)
                       for q_s, k_s, v_s in zip(q_streams, k_streams, v_streams)]
        return layout.assemble(out, stream_outs)

    def _text_only(self, func, args, kwargs):
        """A text refiner's call over [text | streams] (layout order): the prompt's tokens attend to
        themselves through the base, each stream to itself, so the prompt never meets the streams."""
        q, k, v = args[:3]
        if kwargs.get("mask") is not None or q.shape[-2] != self.tokens.text_total or k.shape[-2] != q.shape[-2]:
            return self._base(func, args, kwargs)
        if v.ndim == q.ndim + 1:
            v = v.flatten(-2)
        (q_main, q_streams), (k_main, k_streams), (v_main, v_streams) = map(self.tokens.split, (q, k, v))
        out = self._base(func, (q_main, k_main, v_main, *args[3:]), kwargs)
        stream_outs = [func(q_s, k_s, v_s, *args[3:], **kwargs) for q_s, k_s, v_s in zip(q_streams, k_streams, v_streams)]
        return self.tokens.assemble(out, stream_outs)

    def _base(self, func, args, kwargs):
        if self.base is not None:
            return self.base(func, *args, **kwargs)
        return func(*args, **kwargs)


def install_override(transformer_options: dict, family, table: dict, run, tokens: TokenLayout):
    """Put a :class:`DiTOverride` for ``table`` ({layer key: controls}) into ``transformer_options``,
    wrapping the override already there (if any)."""
    if not table and not tokens.streams:
        return
    base = transformer_options.get(OVERRIDE_KEY)
    transformer_options[OVERRIDE_KEY] = DiTOverride(family, table, base, run, tokens)
    family.mark_blocks(transformer_options, run.diffusion_model)
