"""The dispatcher for video transformers whose self- and cross-attention are separate calls (Wan, LTX).

Their attention calls reach ComfyUI's ``optimized_attention`` with q, k, v of (batch, tokens, heads * dim),
as a UNet layer's do, but no ``patches_replace`` attention replace exists for them: the pack's APPLY_MODEL
wrapper puts one :class:`SeparateOverride` into the evaluation's ``optimized_attention_override`` (wrapping
another pack's), the family adapter marks each block (``mark_blocks``) and names each call's slot
(``separate_slot``: "attn1" self-attention over the video tokens, "attn2" cross-attention to the prompt,
None for calls no control acts on: an image-to-video model's CLIP-vision cross-attention, audio). A call
of a slot and layer some control selects runs those controls as a UNet's replace would (prepare in stack
order, then the attend chain ending at the model's own attention). Extra prompts the controls carry
(regional local prompts, the aesthetic prompt) ride after the prompt in the context, so the model's own
text path makes their keys and values; every cross-attention call keeps them apart from the prompt (the
model's attention sees the prompt's keys only, the controls get the streams' (k, v)). Everything else
goes to the base untouched, so neutral settings reproduce vanilla output bit for bit.
"""
from __future__ import annotations

import functools
import logging

from ..core.calls import AttentionCall
from ..core.chain import chain
from ..core.keys import OVERRIDE_KEY
from ..core.tokens import TokenLayout

log = logging.getLogger("attention_atelier")
_warned: set = set()


class SeparateOverride:
    """``optimized_attention_override`` of one model evaluation of a "separate" family."""

    def __init__(self, family, tables: dict, base, run, tokens: TokenLayout):
        self.family, self.tables, self.base, self.run, self.tokens = family, tables, base, run, tokens
        self.block, self.seen = None, []  # the block of the last call and what this block called so far

    def __call__(self, func, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        q, k, v = args[:3]
        key = self.family.layer_key(options)
        if key != self.block:
            self.block, self.seen = key, []
        slot = None if key is None else self.family.separate_slot(options, q, k, self.seen, self.run.diffusion_model)
        self.seen.append((q.shape[-2], k.shape[-2], q.shape[-1]))
        streams = self.tokens.streams if slot == "attn2" else ()
        controls = self.tables.get(slot, {}).get(key, ())
        if not controls and not streams:
            return self._base(func, args, kwargs)
        if len(args) > 3:  # heads by position: by name from here on
            args, kwargs = args[:3], dict(kwargs, heads=args[3], **dict(zip(("mask",), args[4:5])))
        model_mask = kwargs.pop("mask", None)
        k_streams = v_streams = ()
        if streams:  # a cross-attention call over [prompt | streams]: the model's attention sees the prompt
            (k, k_streams), (v, v_streams) = self.tokens.split(k), self.tokens.split(v)
            if model_mask is not None:  # a text padding mask over them: the prompt's part
                model_mask = model_mask[..., :self.tokens.text]
        if not controls:
            return self._base(func, (q, k, v), dict(kwargs, mask=model_mask))
        if model_mask is not None and slot == "attn1":  # a self-attention mask (LTX guides): the controls
            self._warn_once(key, "a masked self-attention call")  # would extend the keys it does not cover
            return self._base(func, (q, k, v), dict(kwargs, mask=model_mask))

        def call_with(function, q_, k_, v_, mask):
            return function(q_, k_, v_, **dict(kwargs, mask=mask))

        def base_attention(q_, k_, v_, call_, mask=None):  # the model's own call: its text padding mask too
            mask = model_mask if mask is None else mask
            if self.base is not None and not call_.head_pad:
                return call_with(functools.partial(self.base, func), q_, k_, v_, mask)
            return call_with(func, q_, k_, v_, mask)

        extra_options = dict(options, n_heads=kwargs["heads"], activations_shape=[q.shape[0], 0, *self.tokens.grid])
        call = AttentionCall(extra_options=extra_options, key=key, run=self.run,
                             plain_end=base_attention if self.base is None else None,
                             plain=functools.partial(call_with, func),
                             streams=dict(zip(self.tokens.stream_keys, zip(k_streams, v_streams))))
        for control in controls:
            q, k, v = control.prepare(q, k, v, call)
        return chain([c.attend for c in controls if c.implements("attend")], base_attention)(q, k, v, call)

    def _base(self, func, args, kwargs):
        if self.base is not None:
            return self.base(func, *args, **kwargs)
        return func(*args, **kwargs)

    @staticmethod
    def _warn_once(key, what: str):
        if key not in _warned:
            _warned.add(key)
            log.warning("attention at %s: %s is left to the model (no control acts on it)", key, what)


def install_separate_override(transformer_options: dict, family, tables: dict, run, tokens: TokenLayout):
    """Put a :class:`SeparateOverride` for ``tables`` ({slot: {layer key: controls}}) into
    ``transformer_options``, wrapping the override already there, and mark the model's blocks."""
    if not any(tables.values()) and not tokens.streams:
        return
    transformer_options[OVERRIDE_KEY] = SeparateOverride(family, tables, transformer_options.get(OVERRIDE_KEY),
                                                         run, tokens)
    family.mark_blocks(transformer_options, run.diffusion_model)
