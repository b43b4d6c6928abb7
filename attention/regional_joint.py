"""Regional attention in the joint attention of a diffusion transformer (any joint family).

A DiT has no cross-attention: its prompt tokens pass through the model's text stream and join the
image tokens in one attention per block. A local prompt L_i (or the aesthetic prompt) therefore
needs its own text stream: it is appended to the context for the evaluation (see
``core.joint_dispatcher.with_streams``), and in every attention call its tokens attend to themselves and
the row's image tokens, never to the prompt, while the prompt and image tokens never see them.

Regional attention, on the image queries Q of every cond row, at the selected layers:

    O = A(Q, [D ; I]) + sum_i M_i * c_i(p) * (A(Q, [L_i ; I]) - A(Q, [D ; I]))

with [D ; I] the keys/values of the prompt and image tokens (the model's own joint attention; the
first term is whatever the rest of the chain returns), [L_i ; I] those of local prompt i's stream
and the image tokens, M_i the region mask at the token grid, c_i the weight curve (README). Prompt
tokens and uncond rows are untouched; an image token outside every region gets the chain's output
bit for bit.
"""
from __future__ import annotations

import torch

from .core.joint_dispatcher import register
from .core.errors import AtelierError
from .regional import RegionalControl, cond_rows
from .weight_curves import step_progress


def regional_streams(control: RegionalControl, run) -> list:
    """A text stream per region whose weight at this step is not 0."""
    p = step_progress(run)
    streams = []
    for region in control.regions:
        if region.curve.at(p) == 0.0:
            continue
        width = run.text_width()
        if region.cond.shape[-1] != width:
            raise AtelierError(region.source, "conditioning",
                               f"the local prompt has {region.cond.shape[-1]} channels but this model's text "
                               f"input takes {width}.",
                               "encode the local prompt with the text encoder of the same model.")
        streams.append((id(region), region.cond))
    return streams


def dit_regional_blend(chain_out, q, k, v, rows, regions_and_weights, image: slice, grid, stream_kv, attention,
                       full=None):
    """O = chain_out + sum_i M_i c_i (A(Q, [L_i ; I]) - A(Q, [D ; I])) on the image queries of ``rows``.

    q, k, v: (batch, ..., tokens, dim) in the main layout [D | image | extra]; ``stream_kv(region)``
    -> (K_L, V_L) of the region's stream for the whole batch; ``attention(q, k, v)`` is plain
    attention returning (batch, tokens, C); ``full`` is A(Q, [D ; I]) of those rows' image queries where
    the caller has it already. Dense over tokens, so a token outside every region gets chain_out + 0,
    which is chain_out bit for bit.
    """
    q_c = cond_rows(q, rows)[..., image, :]
    k_c, v_c = cond_rows(k, rows), cond_rows(v, rows)
    k_img, v_img = k_c[..., image.start:, :], v_c[..., image.start:, :]
    if full is None:
        full = attention(q_c, k_c, v_c)
    delta = torch.zeros_like(full)
    for region, weight in regions_and_weights:
        m = region.grid(*grid, device=q.device, dtype=full.dtype) * weight
        k_l, v_l = (cond_rows(t, rows) for t in stream_kv(region))
        local = attention(q_c, torch.cat([k_l, k_img], dim=-2), torch.cat([v_l, v_img], dim=-2))
        delta += m[None, :, None] * (local - full)
    out_image = chain_out[:, image].index_add(0, torch.as_tensor(rows, device=q.device), delta)
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
    image = call.tokens.image_slice
    # below us only the model's attention: its cond rows are A(Q, [D ; I]) already
    full = cond_rows(chain_out, rows)[:, image] if next_attention is call.plain_chain_end else None
    return dit_regional_blend(chain_out, q, k, v, rows, active, image, call.tokens.grid,
                              lambda region: call.streams[id(region)][1:],
                              lambda q_, k_, v_: call.plain_attention(q_, k_, v_), full=full)


register(RegionalControl, attend=regional_attend, streams=regional_streams, outermost=True)
