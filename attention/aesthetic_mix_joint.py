"""Aesthetic value mixing in the joint attention of a diffusion transformer (any joint family).

The aesthetic prompt is a text stream appended to the context for the evaluation (see
``core.joint_dispatcher.with_streams``), so each layer projects it with its own value projection.
On UNets this is ``attention.aesthetic_mix``. At the selected layers the prompt's text
values of cond rows become V_c + s * V_aes, with V_aes the aesthetic stream's values at the layer
(the layer's own value projection of the aesthetic prompt's hidden state), token-aligned to the
prompt like on UNets; uncond rows keep V_c.
"""
from __future__ import annotations

import torch

from .aesthetic_mix import AestheticMixControl, align_tokens, row_weights
from .core.errors import AtelierError
from .core.joint_dispatcher import register


def aesthetic_streams(control: AestheticMixControl, run) -> list:
    width = run.text_width()
    if control.aesthetic.shape[-1] != width:
        raise AtelierError("AtelierAestheticMix", "clip",
                           f"the text encoder gives {control.aesthetic.shape[-1]}-wide embeddings but this "
                           f"model's text input takes {width}.", "wire the text encoder of the same model.")
    return [(id(control), control.aesthetic[:1])]


def mix_text_values(v, aesthetic_values, text: int, weights):
    """v with its first ``text`` tokens (dim -2) plus weights * aesthetic_values (row weights)."""
    mixed = torch.addcmul(v[..., :text, :], weights, aesthetic_values)
    return torch.cat([mixed, v[..., text:, :]], dim=-2)


def aesthetic_prepare(control: AestheticMixControl, q, k, v, call):
    layout = call.layout(v.shape[0])
    stream = call.streams.get(id(control))
    if 0 not in layout.cond_or_uncond or stream is None or v.shape[0] != call.batch:
        return q, k, v
    v_aes = stream[2]  # (batch, heads, T_e, dim): the aesthetic prompt's values at this layer
    text = call.tokens.text
    aligned = align_tokens(v_aes.flatten(0, -3), text).reshape(*v_aes.shape[:-2], text, v_aes.shape[-1])
    weights = row_weights(layout, control.strength).to(v).view(-1, *([1] * (v.ndim - 1)))
    return q, k, mix_text_values(v, aligned, text, weights)


register(AestheticMixControl, prepare=aesthetic_prepare, streams=aesthetic_streams)
