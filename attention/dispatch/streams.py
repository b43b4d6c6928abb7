"""Extra prompts a transformer carries through its own text path for the controls: regional local
prompts, the aesthetic prompt ("streams").

Each active control names its streams (``text_streams``); they are appended to (or, where a family says
so, put before) the evaluation's context, so the model's text layers treat them as they treat the prompt,
and the family's :class:`TokenLayout` says where each sits. The overrides keep them apart from the prompt
in every attention call (``dit_override``, ``separate_override``).
"""
from __future__ import annotations

import dataclasses
import logging

log = logging.getLogger("attention_atelier")


def with_streams(controls, run, family, x, context, model_kwargs: dict, transformer_options: dict | None = None):
    """(context with the text streams the active ``controls`` need appended, its TokenLayout).

    A stream is an extra prompt (1, T, D) carried through the model's text stream after the
    sampler's prompt, the same for every row. Where the model masks the prompt (``attention_mask``) the
    family extends the mask over the streams (``stream_mask``: they have no padding), or, where it cannot,
    none are added (the mask would not cover them)."""
    streams = [stream for control in controls for stream in control.text_streams(run)]
    mask = model_kwargs.get("attention_mask")
    extended = None
    if streams and mask is not None:
        extended = family.stream_mask(mask, sum(s.shape[1] for _, s in streams))
    if not streams or (mask is not None and extended is None) or context is None:
        if streams:
            _warn_once("masked", "this model call has an attention mask: regional/aesthetic prompts are "
                                 "left out of it")
        return context, family.token_layout(run.diffusion_model, x, context, model_kwargs)
    filler = family.stream_filler(run.diffusion_model, model_kwargs, sum(s.shape[1] for _, s in streams))
    if filler is None:
        _warn_once(f"streams {family.name}", f"this {family.name} model call cannot carry regional/aesthetic "
                                             "prompts (reference images): they are left out of it")
        return context, family.token_layout(run.diffusion_model, x, context, model_kwargs)
    if filler:
        streams.append((None, context.new_zeros(1, filler, context.shape[-1])))
    parts = [s.to(device=context.device, dtype=context.dtype).expand(context.shape[0], -1, -1) for _, s in streams]
    layout = dataclasses.replace(family.token_layout(run.diffusion_model, x, context, model_kwargs),
                                 streams=tuple(p.shape[1] for p in parts), stream_keys=tuple(key for key, _ in streams))
    if extended is not None:
        model_kwargs["attention_mask"] = extended
    options = transformer_options if transformer_options is not None else {}
    return family.carry_streams(options, run.diffusion_model, context, parts), layout


_warned: set = set()


def _warn_once(key: str, message: str):
    if key not in _warned:
        _warned.add(key)
        log.warning(message)
