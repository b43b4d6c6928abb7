"""Spatial-temporal regional cross-attention (after Wu et al., arXiv 2304.03869).

In the cross-attention of every cond row, with D the full prompt and L_i the local prompt of region i:

    O = A(Q, D) + sum_i M_i * c_i(p) * (A(Q, L_i) - A(Q, D))

A(Q, C) = softmax(Q K_C^T / sqrt(d)) V_C with K_C, V_C the layer's own to_k / to_v of C; M_i is the
region mask resized to the layer's activations (a box gives each cell its covered fraction); c_i is
the region's weight curve at the step's progress p. The first A(Q, D) is whatever the rest of the
attention chain returns (another pack's replace included), the differences use plain attention, so a
foreign contribution such as an image prompt is kept inside regions. Uncond rows are not touched, and
a query token outside every region gets exactly the chain's output.

A diffusion transformer has no cross-attention: its prompt tokens pass through the model's text
stream and join the image tokens in one attention per block. A local prompt L_i therefore needs its
own text stream: it is appended to the context for the evaluation (``text_streams``, carried by
``dispatch.dit_override.with_streams``), and in every attention call its tokens attend to themselves
and the row's image tokens, never to the prompt, while the prompt and image tokens never see them.
On the image queries Q of every cond row, at the selected layers:

    O = A(Q, [D ; I]) + sum_i M_i * c_i(p) * (A(Q, [L_i ; I]) - A(Q, [D ; I]))

with [D ; I] the keys/values of the prompt and image tokens (the model's own joint attention; the
first term is whatever the rest of the chain returns), [L_i ; I] those of local prompt i's stream
and the image tokens, M_i the region mask at the token grid, c_i the weight curve (README). Prompt
tokens and uncond rows are untouched; an image token outside every region gets the chain's output
bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import math
import weakref

import torch

from .core.controls import AttentionControl
from .core.lse_attention import attention_with_lse, merge_attention
from .core.errors import AtelierError
from .core.layers import LayerSelection
from .core.schedule import Window
from .region_masks import masks_over_frames, path_coverage
from .weight_curves import WeightCurve, step_position

REGION_NODE = "AtelierRegion"


@dataclass(frozen=True, eq=False)
class Region:
    """One object: its local prompt embedding, where it is (over the frames too), and its weight over the
    steps (see :mod:`attention.region_masks` for where a box or mask puts it on a layer's grid)."""

    cond: torch.Tensor  # (1, tokens, context_dim): the local prompt as CLIPTextEncode gives it
    curve: WeightCurve
    box: Optional[tuple] = None  # (x, y, width, height) in fractions of the image, origin top-left
    mask: Optional[torch.Tensor] = None  # (H, W) or one per frame (F, H, W), in [0, 1]; instead of the box
    source: str = REGION_NODE  # the node that made it, for error messages
    # a moving box: ((at, (x, y, width, height)), ...) at clip fractions, sorted; the box when empty
    keyframes: tuple = ()
    _grids: dict = field(default_factory=dict, repr=False)
    _projections: dict = field(default_factory=dict, repr=False)  # see cached_projection

    def __deepcopy__(self, memo):
        return self

    @property
    def path(self) -> tuple:
        return self.keyframes or ((0.0, self.box),)

    @property
    def moves(self) -> bool:
        return len(self.keyframes) > 1 or (self.mask is not None and self.mask.ndim == 3 and self.mask.shape[0] > 1)

    def grid(self, *shape, device=None, dtype=torch.float32) -> torch.Tensor:
        """M_i on a layer's (h, w) or (frames, h, w) token grid, flattened frame- and row-major like the
        attention tokens."""
        frames, h, w = (1, *shape) if len(shape) == 2 else shape
        key = (frames, h, w, str(device), dtype)
        cached = self._grids.get(key)
        if cached is None:
            if self.mask is None:
                cells = path_coverage(self.path, frames, h, w)
            else:
                cells = masks_over_frames(self.mask if self.mask.ndim == 3 else self.mask[None], frames, h, w)
            cached = cells.flatten().to(device=device, dtype=dtype)
            self._grids[key] = cached
        return cached


def activation_grid(call, tokens: int) -> tuple:
    """(h, w) of the layer's activations, whose h * w query tokens are laid out row-major; (frames, h, w)
    of a video transformer's, whose first frames * h * w query tokens are its latent's (frame-major; any
    tokens after them, a model's guide frames, lie outside every region)."""
    shape = call.activations_shape
    if shape is not None and len(shape) == 5 and shape[-3] * shape[-2] * shape[-1] <= tokens:
        return tuple(shape[-3:])
    if shape is not None and shape[-2] * shape[-1] == tokens:
        return shape[-2], shape[-1]
    original = call.extra_options.get("original_shape")
    if original is not None:
        h, w = original[-2], original[-1]
        while h * w > tokens:
            h, w = (h + 1) // 2, (w + 1) // 2
        if h * w == tokens:
            return h, w
    raise AtelierError("AtelierRegionalAttention", "model",
                       f"cannot tell the spatial size of a layer with {tokens} tokens.",
                       "use an SD1.5 or SDXL UNet with this node.")


def project_local_prompt(module, region: Region, like: torch.Tensor):
    """K_L, V_L of a local prompt through the layer's own projections (comfy.ops: casts, LoRA)."""
    expected = getattr(module.to_k, "in_features", region.cond.shape[-1])
    if region.cond.shape[-1] != expected:
        raise AtelierError(region.source, "conditioning",
                           f"the local prompt has {region.cond.shape[-1]} channels but this model's "
                           f"cross-attention takes {expected}.",
                           "encode the local prompt with the CLIP of the same checkpoint as the model.")
    context = region.cond.to(device=like.device, dtype=like.dtype)
    return module.to_k(context), module.to_v(context)


def cond_rows(x: torch.Tensor, rows: list) -> torch.Tensor:
    """x[rows]: a view where the rows are one contiguous run (as ComfyUI's chunks are), else a copy."""
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return x.narrow(0, rows[0], len(rows))
    return x.index_select(0, torch.as_tensor(rows, device=x.device))


def stacked_local_kv(local_kvs: list):
    """Every region's (K_L, V_L) (1, T_i, C) stacked to (R, L, C), each token sequence repeated whole
    to a common length L (attention over a repeated sequence equals attention over it); None where the
    lengths have no common multiple within 4x the longest (then each region is attended alone)."""
    lengths = [k.shape[1] for k, _ in local_kvs]
    length = math.lcm(*lengths)
    if length > 4 * max(lengths):
        return None
    return tuple(torch.cat([t.repeat(1, length // t.shape[1], 1) for t in part])
                 for part in zip(*local_kvs))


def _weights_key(module) -> tuple:
    """What K_L, V_L depend on besides the prompt: to_k's and to_v's parameters (identity and in-place
    version) and the weight patches ComfyUI applies at call time."""
    key = []
    for linear in (module.to_k, module.to_v):
        for name in ("weight", "bias"):
            p = getattr(linear, name, None)
            key.append(None if p is None else (id(p), _version(p)))
        for name in ("weight_function", "bias_function"):
            key.append(tuple(map(id, getattr(linear, name, None) or ())))
    return tuple(key)


def _version(t: torch.Tensor):
    """A tensor's in-place version counter; None for inference tensors, which keep none (made under
    torch.inference_mode, as ComfyUI patches weights there; the sampling run's key still holds)."""
    try:
        return t._version
    except RuntimeError:
        return None


def cached_projection(module, region: Region, like: torch.Tensor, run):
    """K_L, V_L of a region at a layer, projected once per sampling run (the same weights at every step)
    instead of at every step. An entry holds for the run whose sample_sigmas it was made in and while
    the layer's weights are the same (a LoRA or hook patched in place changes their version)."""
    sigmas = run.sample_sigmas
    if sigmas is None:
        return project_local_prompt(module, region, like)
    key, weights = (id(module), like.dtype, like.device), _weights_key(module)
    entry = region._projections.get(key)
    if entry is not None and entry[0]() is sigmas and entry[1] == weights:
        return entry[2]
    kv = project_local_prompt(module, region, like)
    region._projections[key] = (weakref.ref(sigmas), weights, kv)
    return kv


def _stacked_once(holder: Region, local_kvs: list):
    """:func:`stacked_local_kv`, reused while the projections are the very same tensors (they are, for a
    whole sampling run, when :func:`cached_projection` made them). Kept on the first region, holding
    the projections only weakly: entries of runs whose projections are gone are dropped."""
    tensors = [t for kv in local_kvs for t in kv]
    key = ("stacked",) + tuple(map(id, tensors))
    entry = holder._projections.get(key)
    if entry is not None and all(ref() is t for ref, t in zip(entry[0], tensors)):
        return entry[1]
    for old in [k for k, e in holder._projections.items() if k[0] == "stacked" and any(r() is None for r in e[0])]:
        del holder._projections[old]
    stacked = stacked_local_kv(local_kvs)
    holder._projections[key] = (tuple(map(weakref.ref, tensors)), stacked)
    return stacked


def regional_blend(chain_out, q, k, v, rows, regions_and_weights, grid, local_kv, attention, full=None):
    """O = chain_out + sum_i M_i c_i (A(Q, L_i) - A(Q, D)) on the cond ``rows``; other rows as given.

    ``local_kv(region)`` -> (K_L, V_L) of shape (1, T, C); ``attention(q, k, v)`` is plain attention;
    ``full`` is A(Q, D) of the cond rows where the caller has it already. All regions' local attention
    is one call. Dense over tokens (no data-dependent indexing, so no GPU syncs); a token outside every
    region gets chain_out + 0, which is chain_out bit for bit.
    """
    q_c = cond_rows(q, rows)
    if full is None:
        full = attention(q_c, cond_rows(k, rows), cond_rows(v, rows))
    masks = torch.stack([region.grid(*grid, device=q.device, dtype=q.dtype) * weight
                         for region, weight in regions_and_weights])  # (R, tokens of the grid)
    if masks.shape[1] < q.shape[1]:  # tokens after the grid (a video model's guide frames): in no region
        masks = torch.nn.functional.pad(masks, (0, q.shape[1] - masks.shape[1]))
    n, count = q_c.shape[0], masks.shape[0]
    local_kvs = [local_kv(region) for region, _ in regions_and_weights]
    stacked = local_kvs[0] if count == 1 else _stacked_once(regions_and_weights[0][0], local_kvs)
    if stacked is None:
        local = torch.stack([attention(q_c, k_l.expand(n, -1, -1), v_l.expand(n, -1, -1)) for k_l, v_l in local_kvs])
    else:  # per region one row of n * tokens queries (each query attends on its own) and its keys
        k_l, v_l = stacked
        queries = q_c.reshape(1, -1, q_c.shape[-1]).expand(count, -1, -1)
        local = attention(queries, k_l, v_l).view(count, n, *full.shape[1:])
    delta = ((local - full) * masks[:, None, :, None]).sum(0)
    return chain_out.index_add(0, torch.as_tensor(rows, device=q.device), delta)


def heads_first(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, heads * d) -> (B, heads, T, d) (a view); (B, heads, T, d) as it is."""
    return x if x.ndim == 4 else x.unflatten(-1, (heads, -1)).transpose(1, 2)


def tokens_last(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, d) -> (B, T, heads * d), the layout attention outputs come in."""
    return x.transpose(1, 2).flatten(2)


def dit_regional_attention(q, k, v, text: int, image: slice, regions, grid, stream_keys):
    """The cond rows' joint attention with the regions blended in, from one image-key attention.

    q (n, H, T, d) the cond rows' queries [D | image], k, v (n, H, T', d) their keys [D | image | extra];
    ``regions`` [(region, c_i)], ``stream_keys(region)`` -> (K_L, V_L) (n, H, T_L, d). With I = the keys
    from ``text`` on (image and extra tokens) and Z the image queries:

        A(Q, [D ; I]) = merge(A(Q, D), A(Q, I))          every query: the model's own attention
        O_Z = A(Z, [D ; I]) + sum_i M_i c_i (merge(A(Z, L_i), A(Z, I)) - A(Z, [D ; I]))

    A(Q, I) with its log-sum-exp is computed once and shared by every term; each region adds only the
    attention of Z over its few text keys. Returns (n, T, H * d); an image query outside every region
    gets A(Q, [D ; I]) + 0, its value bit for bit."""
    keys_d, values_d = k[..., :text, :], v[..., :text, :]
    keys_i, values_i = k[..., text:, :], v[..., text:, :]
    own_d, lse_d = attention_with_lse(q, keys_d, values_d)
    own_i, lse_i = attention_with_lse(q, keys_i, values_i)
    full, _ = merge_attention([(own_d, lse_d), (own_i, lse_i)])
    z_i, z_lse_i = own_i[..., image, :], lse_i[..., image]
    z_full = full[..., image, :]
    delta = torch.zeros_like(z_full)
    for region, weight in regions:
        keys_l, values_l = stream_keys(region)
        local, _ = merge_attention([attention_with_lse(q[..., image, :], keys_l, values_l), (z_i, z_lse_i)])
        m = region.grid(*grid, device=q.device, dtype=delta.dtype) * weight
        delta += m[:, None] * (local - z_full)  # (tokens, 1) over (n, H, tokens, d)
    return tokens_last(torch.cat([full[..., :image.start, :], z_full + delta, full[..., image.stop:, :]], dim=-2))


def dit_regional_delta(q, k, v, text: int, image: slice, regions, grid, stream_keys):
    """sum_i M_i c_i (A(Z, [L_i ; I]) - A(Z, [D ; I])) on the image queries Z of the cond rows (layouts as
    :func:`dit_regional_attention`), for a first term that comes from the chain below (another pack's
    override or another control): A(Z, I) once, each region's few text keys merged in. (n, tokens, H * d)."""
    z = q[..., image, :]
    part_d = attention_with_lse(z, k[..., :text, :], v[..., :text, :])
    part_i = attention_with_lse(z, k[..., text:, :], v[..., text:, :])
    full, _ = merge_attention([part_d, part_i])
    delta = torch.zeros_like(full)
    for region, weight in regions:
        local, _ = merge_attention([attention_with_lse(z, *stream_keys(region)), part_i])
        m = region.grid(*grid, device=q.device, dtype=delta.dtype) * weight
        delta += m[:, None] * (local - full)
    return tokens_last(delta)


@dataclass(frozen=True)
class RegionalControl(AttentionControl):
    regions: tuple = ()
    layers: LayerSelection = LayerSelection()
    window: Window = Window()
    slot: str = "attn2"
    feature = "regional attention"
    joint_attention = True
    separate_attention = True
    outermost = True  # on a DiT it needs the whole batch, unsplit and unmasked
    reads_reference_row = False  # each row alone (see AttentionControl)

    def attend(self, next_attention, q, k, v, call, mask=None):
        chain_out = next_attention(q, k, v, call, mask)
        if mask is not None:  # an outer control changed the scores; regional mixing would not match
            return chain_out
        position = step_position(call.run)
        active = [(r, c) for r in self.regions if (c := position.weight(r.curve)) != 0.0]
        rows = call.layout(q.shape[0]).rows_of(0)
        if not active or not rows:
            return chain_out
        if call.text_in_streams:  # a video transformer: its own text path made each local prompt's keys and values
            active = [(r, c) for r, c in active if id(r) in call.streams]
            local_kv = lambda region: tuple(t[:1] for t in call.streams[id(region)])  # noqa: E731 (rows alike)
        else:  # a UNet: the layer's own projections of the local prompt, once per sampling run
            module = call.module("attn2")
            local_kv = lambda region: cached_projection(module, region, k, call.run)  # noqa: E731
        if not active:
            return chain_out
        grid = activation_grid(call, q.shape[1])
        # below us only ComfyUI's attention: the chain's cond rows are A(Q, D) already
        full = cond_rows(chain_out, rows) if call.is_plain(next_attention) else None
        return regional_blend(chain_out, q, k, v, rows, active, grid, local_kv,
                              lambda q_, k_, v_: call.plain_attention(q_, k_, v_), full=full)

    def text_streams(self, run) -> list:
        """A text stream per region whose weight at this step is not 0."""
        position = step_position(run)
        streams = []
        for region in self.regions:
            if position.weight(region.curve) == 0.0:
                continue
            width = run.text_width()
            if region.cond.shape[-1] != width:
                raise AtelierError(region.source, "conditioning",
                                   f"the local prompt has {region.cond.shape[-1]} channels but this model's text "
                                   f"input takes {width}.",
                                   "encode the local prompt with the text encoder of the same model.")
            streams.append((id(region), region.cond))
        return streams

    def dit_attend(self, next_attention, q, k, v, call, mask=None):
        position = step_position(call.run)
        active = [(r, c) for r in self.regions if (c := position.weight(r.curve)) != 0.0 and id(r) in call.streams]
        rows = call.layout(q.shape[0]).rows_of(0)
        if not active or not rows or mask is not None or q.shape[0] != call.batch:
            return next_attention(q, k, v, call, mask)  # nothing to blend, or scores changed / rows split above
        heads, image = call.heads, call.tokens.image_slice
        q_c, k_c, v_c = (heads_first(cond_rows(t, rows), heads) for t in (q, k, v))

        def stream_keys(region):
            return tuple(heads_first(cond_rows(t, rows), heads) for t in call.streams[id(region)][1:])
        if not call.is_plain(next_attention):  # the chain's output stays the first term
            chain_out = next_attention(q, k, v, call, mask)
            delta = dit_regional_delta(q_c, k_c, v_c, call.tokens.text, image, active, call.tokens.grid, stream_keys)
            out_image = chain_out[:, image].index_add(0, torch.as_tensor(rows, device=q.device), delta.to(chain_out))
            return torch.cat([chain_out[:, :image.start], out_image, chain_out[:, image.stop:]], dim=1)
        # only the model's own attention below: the cond rows' attention is computed here, split at the
        # text keys, so A(Q, I) serves the first term and every region; the other rows get the model's call
        cond = dit_regional_attention(q_c, k_c, v_c, call.tokens.text, image, active, call.tokens.grid, stream_keys)
        others = [r for r in range(q.shape[0]) if r not in set(rows)]
        if not others:
            return cond.to(q.dtype)
        rest = next_attention(*(cond_rows(t, others) for t in (q, k, v)), call, mask)
        out = rest.new_empty(q.shape[0], *rest.shape[1:])
        out[rows], out[others] = cond.to(rest.dtype), rest
        return out
