"""Where each latent row sits in a batched model call.

ComfyUI concatenates one chunk per cond entry (cond, uncond, extra area conds), each holding the
whole latent batch: row r of chunk c is at ``c * B + r`` with ``B = batch // len(cond_or_uncond)``.
The chunk order and count vary (``[1, 0]`` at cfg > 1, ``[0]`` at cfg 1, cond and uncond in separate
calls, ``[1, 0, 0]`` with an area cond), so rows are never found from ``batch // 2``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChunkLayout:
    chunks: int  # number of cond entries in this call
    rows: int  # latent rows per chunk (B)
    cond_or_uncond: tuple  # 0 = cond, 1 = uncond, per chunk

    def reference_rows(self) -> list[int]:
        """Indices of latent row 0 in every chunk."""
        return [c * self.rows for c in range(self.chunks)]

    def chunk_rows(self, chunk: int) -> range:
        return range(chunk * self.rows, (chunk + 1) * self.rows)

    def rows_of(self, kind: int) -> list[int]:
        """Batch indices of every row in chunks of one kind (0 = cond, 1 = uncond)."""
        return [i for c, k in enumerate(self.cond_or_uncond) if k == kind for i in self.chunk_rows(c)]

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(chunks * B, ...) -> (chunks, B, ...)."""
        return x.reshape(self.chunks, self.rows, *x.shape[1:])


def chunk_layout(batch: int, cond_or_uncond) -> ChunkLayout:
    """Layout of a model call of ``batch`` rows; a call without cond_or_uncond is one chunk."""
    kinds = tuple(cond_or_uncond) if cond_or_uncond else (0,)
    if batch % len(kinds) != 0:
        raise ValueError(f"batch of {batch} rows does not split into {len(kinds)} chunks {list(kinds)}")
    return ChunkLayout(chunks=len(kinds), rows=batch // len(kinds), cond_or_uncond=kinds)


def insert_rows(x: torch.Tensor, chunks: int, first: torch.Tensor) -> torch.Tensor:
    """(chunks * B, ...) with ``first`` (chunks, ...) -> (chunks * (B + 1), ...), ``first`` leading each chunk."""
    rows = x.reshape(chunks, x.shape[0] // chunks, *x.shape[1:])
    return torch.cat([first.unsqueeze(1).to(rows), rows], dim=1).flatten(0, 1)


def strip_rows(out: torch.Tensor, chunks: int) -> torch.Tensor:
    """Drop row 0 of every chunk: (chunks * (B + 1), ...) -> (chunks * B, ...)."""
    return out.reshape(chunks, out.shape[0] // chunks, *out.shape[1:])[:, 1:].flatten(0, 1)


def chunk_first_rows(x: torch.Tensor, chunks: int) -> torch.Tensor:
    """Row 0 of every chunk: (chunks * B, ...) -> (chunks, ...)."""
    return x.reshape(chunks, x.shape[0] // chunks, *x.shape[1:])[:, 0]
