"""Reference-row cache for reference-image mode (AtelierStyleAligned's ``reference_cache_mb``).

In reference-image mode every model call runs one more row per chunk: the reference, replayed from its
inversion trajectory. For one trajectory, sigma, chunk kind, reference conditioning and model that row is
the same every time the graph is queued again, and the other rows read only a little of it:

- at every self-attention layer where a control reads row 0 (StyleAligned, ArtBN): row 0's q, k and v
  as the layer's dispatcher receives them, before any control;
- at every GroupNorm a norm control acts on (GroupNorm sharing, ArtBN on GroupNorms): row 0's input
  statistics, per group (mean, biased variance) and per channel (mean, sqrt(unbiased variance + eps)).

The first run records those (copied to the CPU) per model call; a later call with the same key replays
them: the model runs the caller's rows only, each recorded attention layer gets row 0 back in front of
every chunk (its own output is not computed and is dropped), and each norm reads the recorded statistics.
The generated rows see exactly the values they saw with the row in the batch.

Keys. A sampling run is cacheable on a UNet whose options carry no other pack's attention patches and
no hooks; its *context* is the base model, the weight patches (ComfyUI's ``patches_uuid``), every object
patch and every transformer option (control stack included), by identity. A new context empties the cache,
so nothing is ever shared between models or settings. Within it, a model call's *step key* is the
chunk kinds, each chunk's sigma, the latent shape, dtype and device, and the reference row's inputs
(the trajectory's own conditioning, or a digest of the caller's values where the inversion recorded
none). The cache belongs to one trajectory (one AtelierStyleAligned output). When unsure, it misses.
"""
from __future__ import annotations

import contextvars
import hashlib
import logging
import uuid
import weakref
from dataclasses import dataclass

import torch

from ..attention.art_bn import EPS  # the channel statistics are ArtBN's
from ..attention.core.keys import REFERENCE_INSERTED_KEY, REPLAYED_ROW_KEY
from ..attention.core.rows import chunk_first_rows, chunk_layout, insert_rows, strip_rows
from ..attention.models import family_of

log = logging.getLogger("attention_atelier")

MIB = 2 ** 20
MAX_CACHE_MB = 262144  # 256 GiB: the node's upper bound


ACTIVE: contextvars.ContextVar = contextvars.ContextVar("attention_atelier_reference_cache", default=None)


class ReplayMissing(RuntimeError):
    """A replayed model call reached a layer the cache entry has nothing (or something else) for."""


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    return torch.empty(t.shape, dtype=t.dtype, device="cpu").copy_(t.detach())


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class NormStats:
    """Row 0's statistics at one GroupNorm input, per chunk (all float32 or wider)."""

    group_mean: torch.Tensor  # (chunks, 1, G, 1), as in group_norm.joint_group_norm
    group_var: torch.Tensor  # biased
    channel_mean: torch.Tensor  # (chunks, 1, C, 1[, 1]), as in art_bn.align_generated_rows
    channel_std: torch.Tensor  # sqrt(unbiased var + EPS)
    shape: tuple  # one row's shape (C, H, W)

    def tensors(self) -> tuple:
        return self.group_mean, self.group_var, self.channel_mean, self.channel_std

    def to(self, device) -> "NormStats":
        return NormStats(*(t.to(device) for t in self.tensors()), shape=self.shape)

    @property
    def group(self) -> tuple:
        return self.group_mean, self.group_var

    @property
    def channel(self) -> tuple:
        return self.channel_mean, self.channel_std


def norm_stats(x: torch.Tensor, layout, groups: int) -> NormStats:
    """Row 0's statistics of every chunk of a GroupNorm input x (batch, C, ...), computed as the norm
    controls compute them for the whole batch."""
    xs = layout.split(x)
    stats_of = xs if xs.dtype in (torch.float32, torch.float64) else xs.float()
    row0 = stats_of.narrow(1, 0, 1)
    spatial = tuple(range(3 - xs.ndim, 0))
    var, mean = torch.var_mean(row0, dim=spatial, keepdim=True)
    grouped = row0.reshape(layout.chunks, 1, groups, -1)
    group_var, group_mean = torch.var_mean(grouped, dim=-1, correction=0, keepdim=True)
    return NormStats(group_mean, group_var, mean, var.add_(EPS).sqrt_(), tuple(x.shape[1:]))


@dataclass(frozen=True)
class StepEntry:
    """What one model call's reference row gave the other rows."""

    attention: dict  # (slot, layer key) -> (q, k, v) row 0 of every chunk, (chunks, T, C), on the CPU
    norms: tuple  # NormStats per norm call, in call order, on the CPU

    @property
    def nbytes(self) -> int:
        return _nbytes(t for rows in self.attention.values() for t in rows) + \
            _nbytes(t for stats in self.norms for t in stats.tensors())


class StepRecorder:
    """Collects a StepEntry during a model call that still runs the reference row."""

    def __init__(self):
        self.attention: dict = {}
        self.norms: list = []
        self.broken = False

    def record_attention(self, layer: tuple, q, k, v, extra_options: dict):
        if layer in self.attention:  # a layer run twice per call: a key cannot tell them apart
            self.broken = True
        layout = chunk_layout(q.shape[0], extra_options.get("cond_or_uncond"))
        self.attention[layer] = tuple(_cpu_copy(chunk_first_rows(t, layout.chunks)) for t in (q, k, v))

    def record_norm(self, x: torch.Tensor, layout, groups: int):
        stats = norm_stats(x, layout, groups)
        self.norms.append(NormStats(*(_cpu_copy(t) for t in stats.tensors()), shape=stats.shape))

    def entry(self):
        return None if self.broken else StepEntry(dict(self.attention), tuple(self.norms))


class StepReplay:
    """A cached StepEntry handed to the layers of one model call that runs without the reference row."""

    def __init__(self, entry: StepEntry):
        self.entry = entry
        self.norm_index = 0

    def attend(self, layer: tuple, q, k, v, extra_options: dict, run):
        """``run(q, k, v, options)`` on the batch with the recorded row 0 back in front of every chunk;
        row 0's output is dropped (the attention controls skip computing it)."""
        rows = self.entry.attention.get(layer)
        layout = chunk_layout(q.shape[0], extra_options.get("cond_or_uncond"))
        chunks = layout.chunks
        if rows is None or any(tuple(r.shape) != (chunks, *t.shape[1:]) for r, t in zip(rows, (q, k, v))):
            raise ReplayMissing(f"no recorded reference row of the right shape for layer {layer}")
        options = dict(extra_options)
        options[REFERENCE_INSERTED_KEY] = True
        options[REPLAYED_ROW_KEY] = True
        q, k, v = (insert_rows(t, chunks, r.to(device=t.device, dtype=t.dtype)) for r, t in zip(rows, (q, k, v)))
        return strip_rows(run(q, k, v, options), chunks)

    def next_norm(self, x: torch.Tensor, layout) -> NormStats:
        if self.norm_index >= len(self.entry.norms):
            raise ReplayMissing("more GroupNorm calls than were recorded")
        stats = self.entry.norms[self.norm_index]
        self.norm_index += 1
        if stats.shape != tuple(x.shape[1:]) or stats.group_mean.shape[0] != layout.chunks:
            raise ReplayMissing(f"a GroupNorm input of shape {tuple(x.shape[1:])}; {stats.shape} was recorded")
        return stats.to(x.device)


class Same:
    """Identity token: equal only to a token of the very same, still living object (held weakly where
    the object allows it, so a cache never keeps a model alive)."""

    __slots__ = ("_ref", "_strong")

    def __init__(self, obj):
        try:
            self._ref, self._strong = weakref.ref(obj), None
        except TypeError:
            self._ref, self._strong = None, obj

    def get(self):
        return self._ref() if self._ref is not None else self._strong

    def __eq__(self, other):
        if not isinstance(other, Same):
            return NotImplemented
        obj = self.get()
        return obj is not None and obj is other.get()

    __hash__ = None


PRIMITIVES = (type(None), bool, int, float, str, bytes, uuid.UUID, torch.dtype, torch.device)


def fingerprint(value, depth: int = 0):
    """A comparable stand-in for a model option: plain values as they are, containers element by
    element, anything else (functions, modules, tensors, controls) by identity."""
    if isinstance(value, PRIMITIVES):
        return value
    if depth < 6 and isinstance(value, dict):
        return ("dict",) + tuple((str(k), fingerprint(v, depth + 1)) for k, v in value.items())
    if depth < 6 and isinstance(value, (list, tuple)):
        return (type(value).__name__,) + tuple(fingerprint(v, depth + 1) for v in value)
    return Same(value)


def digest(t: torch.Tensor) -> tuple:
    """Content key of a (small) tensor: shape, dtype and a hash of its bytes."""
    data = t.detach().to("cpu").contiguous().flatten().view(torch.uint8).numpy().tobytes()
    return tuple(t.shape), str(t.dtype), hashlib.blake2b(data, digest_size=16).hexdigest()


IGNORED_OPTIONS = ("wrappers", "callbacks")


def sampling_context(guider, trajectory):
    """(context, None) for a cacheable sampling run, or (None, why not)."""
    patcher = getattr(guider, "model_patcher", None)
    if patcher is None:
        return None, "the sampler holds no model patcher"
    diffusion_model = patcher.get_model_object("diffusion_model")
    family = family_of(diffusion_model)
    if family is None or family.kind != "unet":
        return None, f"it works on UNet models (SD1.x, SD2.x, SDXL); this is a {type(diffusion_model).__name__}"
    options = patcher.model_options
    transformer_options = options.get("transformer_options", {})
    foreign = [name for name in ("patches", "patches_replace") if transformer_options.get(name)]
    if options.get("model_function_wrapper") is not None:
        foreign.append("model_function_wrapper")
    if foreign:
        return None, f"the model carries other attention/model patches ({', '.join(foreign)}) that may act on the " \
                     "reference row"
    conds = getattr(guider, "conds", None) or {}
    if getattr(patcher, "hook_patches", None) or any(
            isinstance(c, dict) and c.get("hooks") is not None for group in conds.values() for c in group):
        return None, "the conditioning carries hooks (they change the weights per call)"
    kept = {k: v for k, v in transformer_options.items() if k not in IGNORED_OPTIONS}
    context = (Same(patcher.model), getattr(patcher, "patches_uuid", None) or Same(patcher),
               fingerprint(patcher.object_patches), fingerprint(kept), Same(trajectory))
    return context, None


class ReferenceCache:
    """Recorded reference rows per model call, on the CPU, within ``cap_mb`` MiB (0 = off)."""

    def __init__(self, cap_mb: int):
        self.cap_bytes = int(cap_mb) * MIB
        self.hits = self.misses = self.stored = 0
        self._context = None
        self._entries: dict = {}
        self.nbytes = 0
        self.full = False  # an entry did not fit: record no more in this context
        self.disabled = False  # a replay failed: no more caching in this context
        self._logged: set = set()

    def __deepcopy__(self, memo):  # model clones share it, like the wrapper that holds it
        return self

    def log_once(self, what: str, level: int, message: str, *args):
        if what not in self._logged:
            self._logged.add(what)
            log.log(level, message, *args)

    def use_context(self, context):
        if self._context is None or context != self._context:
            self.clear()
            self._context = context

    def clear(self):
        self._entries = {}
        self.nbytes = 0
        self.full = self.disabled = False

    def lookup(self, key):
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def recorder(self):
        return None if self.full or self.disabled else StepRecorder()

    def store(self, key, recorder: StepRecorder) -> bool:
        entry = recorder.entry()
        if entry is None:
            self.disabled = True
            self.log_once("broken", logging.WARNING, "reference cache: a layer ran twice in one model call; "
                          "the cache stays off for this model")
            return False
        size = entry.nbytes
        if self.nbytes + size > self.cap_bytes:
            self.full = True
            self.log_once("full", logging.WARNING, "reference cache: the %d MiB cap is reached after %d model "
                          "calls (%.1f MiB each); later steps run the reference row as without the cache. "
                          "Raise reference_cache_mb to cache them all.", self.cap_bytes // MIB, len(self._entries),
                          size / MIB)
            return False
        self._entries[key] = entry
        self.nbytes += size
        self.stored += 1
        self.log_once("first", logging.INFO, "reference cache: recording %.1f MiB per model call (cap %d MiB)",
                      size / MIB, self.cap_bytes // MIB)
        return True

    def replay_failed(self, error: Exception):
        self.disabled = True
        self._entries, self.nbytes = {}, 0
        self.log_once("replay", logging.WARNING, "reference cache: %s; the cache stays off for this model "
                      "(results unchanged: the reference row runs again)", error)

    def __len__(self):
        return len(self._entries)
