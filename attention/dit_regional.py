"""Regional attention and aesthetic value mixing in the joint attention of a DiT (Flux.1).

A DiT has no cross-attention: its prompt tokens pass through the model's text stream and join the
image tokens in one attention per block. A local prompt L_i (or the aesthetic prompt) therefore
needs its own text stream: it is appended to the context for the evaluation (see
``dit_attention.with_streams``), and in every attention call its tokens attend to themselves and
the row's image tokens, never to the prompt, while the prompt and image tokens never see them.

Regional attention, on the image queries Q of every cond row, at the selected layers:

    O = A(Q, [D ; I]) + sum_i M_i * c_i(p) * (A(Q, [L_i ; I]) - A(Q, [D ; I]))

with [D ; I] the keys/values of the prompt and image tokens (the model's own joint attention; the
first term is whatever the rest of the chain returns), [L_i ; I] those of local prompt i's stream
and the image tokens, M_i the region mask at the token grid, c_i the weight curve (README). Prompt
tokens and uncond rows are untouched; an image token outside every region gets the chain's output
bit for bit.

Aesthetic mixing (``attention.aesthetic_mix`` on UNets), at the selected layers: the prompt's text
values of cond rows become V_c + s * V_aes, with V_aes the aesthetic stream's values at the layer
(the layer's own value projection of the aesthetic prompt's hidden state), token-aligned to the
prompt like on UNets; uncond rows keep V_c.
"""
from __future__ import annotations

import torch

from .aesthetic_mix import AestheticMixControl, align_tokens, row_weights
from .dit_attention import register
from .dit_layout import context_width
from .errors import AtelierError
from .regional import RegionalControl
from .weight_curves import step_progress


def _context_width(run) -> int:
    return context_width(run.diffusion_model)


def regional_streams(control: RegionalControl, run) -> list:
    """A text stream per region whose weight at this step is not 0."""
    p = step_progress(run)
    streams = []
    for region in control.regions:
        if region.curve.at(p) == 0.0:
            continue
        width = _context_width(run)
        if region.cond.shape[-1] != width:
            raise AtelierError(region.source, "conditioning",
                               f"the local prompt has {region.cond.shape[-1]} channels but this model's text "
                               f"input takes {width}.",
                               "encode the local prompt with the text encoder of the same model.")
        streams.append((id(region), region.cond))
    return streams


def dit_regional_blend(chain_out, q, k, v, rows, regions_and_weights, image: slice, grid, stream_kv, attention):
    """O = chain_out + sum_i M_i c_i (A(Q, [L_i ; I]) - A(Q, [D ; I])) on the image queries of ``rows``.

    q, k, v: (batch, ..., tokens, dim) in the main layout [D | image | extra]; ``stream_kv(region)``
    -> (K_L, V_L) of the region's stream for the whole batch; ``attention(q, k, v)`` is plain
    attention returning (batch, tokens, C). Dense over tokens, so a token outside every region gets
    chain_out + 0, which is chain_out bit for bit.
    """
    index = torch.as_tensor(rows, device=q.device)
    q_c = q.index_select(0, index)[..., image, :]
    k_c, v_c = k.index_select(0, index), v.index_select(0, index)
    k_img, v_img = k_c[..., image.start:, :], v_c[..., image.start:, :]
    full = attention(q_c, k_c, v_c)
    delta = torch.zeros_like(full)
    for region, weight in regions_and_weights:
        m = region.grid(*grid, device=q.device, dtype=full.dtype) * weight
        k_l, v_l = (t.index_select(0, index) for t in stream_kv(region))
        local = attention(q_c, torch.cat([k_l, k_img], dim=-2), torch.cat([v_l, v_img], dim=-2))
        delta += m[None, :, None] * (local - full)
    out_image = chain_out[:, image].index_add(0, index, delta)
    return torch.cat([chain_out[:, :image.start], out_image, chain_out[:, image.stop:]], dim=1)


def regional_attend(control: RegionalControl, next_attention, q, k, v, call, mask=None):
    chain_out = next_attention(q, k, v, call, mask)
    if mask is not None or q.shape[0] != call.batch:  # scores changed or rows split by an outer control
        return chain_out
    p = step_progress(call.run)
    active = [(r, c) for r in control.regions if (c := r.curve.at(p)) != 0.0 and id(r) in call.streams]
    rows = call.layout(q.shape[0]).rows_of(0)
    if not active or not rows:
        return chain_out
    return dit_regional_blend(chain_out, q, k, v, rows, active, call.tokens.image_slice, call.tokens.grid,
                              lambda region: call.streams[id(region)][1:],
                              lambda q_, k_, v_: call.plain_attention(q_, k_, v_))


def aesthetic_streams(control: AestheticMixControl, run) -> list:
    width = _context_width(run)
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


register(RegionalControl, attend=regional_attend, streams=regional_streams, outermost=True)
register(AestheticMixControl, prepare=aesthetic_prepare, streams=aesthetic_streams)
