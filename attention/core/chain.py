"""The chain of controls at one attention call (or one GroupNorm), and the model's own attention at its end.

Every chained hook of a control takes the rest of the chain first: ``attend(next_attention, q, k, v,
call, mask=None)``, ``dit_attend(...)`` alike, ``group_norm(next_norm, x, ...)``. The first control on
the model's stack (the first node in the graph) is the outermost link.
"""
from __future__ import annotations

import functools

try:  # guarded: the maths in this package imports without ComfyUI
    import comfy.ldm.modules.attention as comfy_attention
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    comfy_attention = None


def chain(links, last):
    """``last`` wrapped by ``links`` (callables taking the next link first), ``links[0]`` outermost."""
    for link in reversed(list(links)):
        last = functools.partial(link, last)
    return last


def default_attention(q, k, v, call, mask=None):
    """ComfyUI's own attention of a UNet layer, called exactly as CrossAttention.forward calls it."""
    options = call.extra_options
    return comfy_attention.optimized_attention(q, k, v, options["n_heads"], mask=mask,
                                               attn_precision=options.get("attn_precision"),
                                               transformer_options=options)
