"""Reference-image mode: a row that follows an inversion trajectory is put in front of every chunk.

Per model call of ``chunks`` chunks of B rows, the wrapper builds chunks of B + 1 rows: row 0 is the
reference x_ref(sigma) (from the trajectory) with the inversion's own conditioning, rows 1..B are the
caller's rows. The reference row gets no ControlNet residual, and its output is dropped, so the caller
gets back exactly B rows per chunk. Shared attention / GroupNorm sharing see row 0 as the reference
with no change of their own. ``cond_or_uncond`` is left as it is: chunk kinds do not change.
"""
from __future__ import annotations

import logging
import math

import torch

from ..attention.errors import AtelierError
from ..attention.rows import chunk_layout

log = logging.getLogger("attention_atelier")

REFERENCE_KEY = "attention_atelier.reference"
# set in a model call's transformer_options while its chunks start with an inserted reference row
REFERENCE_INSERTED_KEY = "attention_atelier.reference_inserted"


def insert_rows(x: torch.Tensor, chunks: int, reference: torch.Tensor) -> torch.Tensor:
    """(chunks * B, ...) with reference (chunks, ...) -> (chunks * (B + 1), ...), reference first per chunk."""
    rows = x.reshape(chunks, x.shape[0] // chunks, *x.shape[1:])
    return torch.cat([reference.unsqueeze(1).to(rows), rows], dim=1).flatten(0, 1)


def strip_rows(out: torch.Tensor, chunks: int) -> torch.Tensor:
    """Drop row 0 of every chunk: (chunks * (B + 1), ...) -> (chunks * B, ...)."""
    return out.reshape(chunks, out.shape[0] // chunks, *out.shape[1:])[:, 1:].flatten(0, 1)


def repeat_tokens(context: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat a whole token sequence to ``length`` tokens (attention is unchanged by it)."""
    return context.repeat(1, length // context.shape[1], 1)


def insert_context(context: torch.Tensor, references: list) -> torch.Tensor:
    """Cross-attention context with one reference row (1, T_c, D) per chunk; token lengths matched by
    lcm repeat."""
    length = math.lcm(context.shape[1], *[r.shape[1] for r in references])
    reference = torch.cat([repeat_tokens(r, length) for r in references]).to(context)
    return insert_rows(repeat_tokens(context, length), len(references), reference)


def chunk_first_rows(x: torch.Tensor, chunks: int) -> torch.Tensor:
    return x.reshape(chunks, x.shape[0] // chunks, *x.shape[1:])[:, 0]


def insert_control(control, chunks: int, batch: int):
    """A ControlNet residual dict ({'input': [...], 'middle': [...], 'output': [...]}) with zero
    residuals for the reference rows. New lists: the UNet pops from them."""
    if control is None:
        return None
    out = {}
    for name, residuals in control.items():
        if isinstance(residuals, list):
            out[name] = [insert_rows(r, chunks, torch.zeros_like(chunk_first_rows(r, chunks)))
                         if isinstance(r, torch.Tensor) and r.shape[0] == batch else r for r in residuals]
        else:
            out[name] = residuals
    return out


class ReferenceRows:
    """APPLY_MODEL wrapper replaying a trajectory as row 0 of every chunk (key :data:`REFERENCE_KEY`)."""

    def __init__(self, trajectory, row: int = 0):
        self.trajectory = trajectory
        self.row = row
        self._warned = False

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
        batch = x.shape[0]
        layout = chunk_layout(batch, transformer_options.get("cond_or_uncond"))
        if tuple(x.shape[1:]) != self.trajectory.latent_shape:  # e.g. an area cond's cropped chunk
            if not self._warned:
                log.warning("reference row left out of a model call of size %s (reference %s)",
                            tuple(x.shape[1:]), self.trajectory.latent_shape)
                self._warned = True
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        chunks = layout.chunks
        chunk_sigmas = chunk_first_rows(t, chunks)
        reference_x = torch.stack([self.trajectory.latent_at(float(s), self.row) for s in chunk_sigmas])
        conds = [self.trajectory.conds_for(kind) for kind in layout.cond_or_uncond]

        x = insert_rows(x, chunks, reference_x.to(device=x.device, dtype=x.dtype))
        t = insert_rows(t, chunks, chunk_sigmas)
        if c_crossattn is not None:
            c_crossattn = insert_context(c_crossattn, [self._context(cond, c_crossattn, c, chunks)
                                                       for c, cond in enumerate(conds)])
        if isinstance(c_concat, torch.Tensor) and c_concat.shape[0] == batch:
            c_concat = insert_rows(c_concat, chunks, self._stack(conds, "c_concat", c_concat))
        for name, value in kwargs.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
                kwargs[name] = insert_rows(value, chunks, self._stack(conds, name, value))
        control = insert_control(control, chunks, batch)
        transformer_options[REFERENCE_INSERTED_KEY] = True
        try:
            out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        finally:
            transformer_options.pop(REFERENCE_INSERTED_KEY, None)
        return strip_rows(out, chunks)

    @staticmethod
    def _context(cond, like: torch.Tensor, chunk: int, chunks: int) -> torch.Tensor:
        if cond.c_crossattn is None:
            return chunk_first_rows(like, chunks)[chunk:chunk + 1]
        return cond.c_crossattn.to(device=like.device, dtype=like.dtype)

    @staticmethod
    def _stack(conds, name: str, like: torch.Tensor) -> torch.Tensor:
        """The reference's own value of a model input, per chunk; the chunk's first row when the
        inversion recorded none (an input the inversion's model did not have)."""
        fallback = chunk_first_rows(like, len(conds))
        rows = []
        for c, cond in enumerate(conds):
            value = cond.c_concat if name == "c_concat" else cond.extra.get(name)
            usable = value is not None and tuple(value.shape[1:]) == tuple(like.shape[1:])
            rows.append(value[0].to(device=like.device, dtype=like.dtype) if usable else fallback[c])
        return torch.stack(rows)


def check_latent_size(trajectory, latent_image: torch.Tensor, node: str, input_name: str = "reference"):
    """The generated latent must have the reference's size: a clear error naming both."""
    got = tuple(latent_image.shape[1:])
    want = trajectory.latent_shape
    if got != want:
        raise AtelierError(node, input_name,
                           f"the reference was inverted from a {want[-1] * 8}x{want[-2] * 8} image (latent "
                           f"{list(want)}) but the sampler generates {got[-1] * 8}x{got[-2] * 8} (latent {list(got)}).",
                           "make the generated latent the reference's size (EmptyLatentImage width/height), "
                           "or resize the reference image before VAEEncode and AtelierInvert.")


def size_check_wrapper(trajectory, node: str):
    """OUTER_SAMPLE wrapper that checks the latent size before any model call."""
    def outer_sample(executor, noise, latent_image, *args, **kwargs):
        check_latent_size(trajectory, latent_image, node)
        return executor(noise, latent_image, *args, **kwargs)
    return outer_sample
