"""Seeded random tensors for a state dict of (meta) tensors: finite, deterministic, fast.

Values come from one seeded pool of normals (2**24 floats); each tensor takes a window at a
seeded offset (wrapping around), scaled by its std. This is ~10x faster than drawing ~1e9 normals
and exactly reproducible for a given seed and key order.
"""
from __future__ import annotations

import math

import torch

POOL_SIZE = 1 << 24
LINEAR_STD = 0.02
TINY_VERSION = "1"  # written into every file's metadata; bump when a builder's output changes


class SeededFiller:
    def __init__(self, seed: int, dtype: torch.dtype = torch.float16):
        self.gen = torch.Generator().manual_seed(seed)
        self.pool = torch.randn(POOL_SIZE, generator=self.gen, dtype=torch.float32)
        self.dtype = dtype

    def normal(self, shape, std: float, dtype: torch.dtype | None = None) -> torch.Tensor:
        n = math.prod(shape)
        off = int(torch.randint(0, POOL_SIZE, (1,), generator=self.gen))
        out = torch.empty(n, dtype=dtype or self.dtype)
        pos = 0
        while pos < n:
            take = min(n - pos, POOL_SIZE - off)
            out[pos:pos + take].copy_(self.pool[off:off + take])
            pos, off = pos + take, 0
        return out.mul_(std).reshape(shape)

    def tensor_for(self, key: str, like: torch.Tensor) -> torch.Tensor:
        """Pick a sensible init from the key name and shape (norms = 1/0, linears 0.02, convs 1/sqrt(fan_in))."""
        shape = tuple(like.shape)
        float_dtype = self.dtype if like.dtype.is_floating_point else like.dtype
        if not like.dtype.is_floating_point or key.endswith("position_ids"):
            return torch.arange(shape[-1], dtype=torch.long).expand(shape).clone() if shape else torch.zeros((), dtype=like.dtype)
        if key.endswith("logit_scale"):
            return torch.full(shape, math.log(100.0), dtype=float_dtype)
        if key.endswith("vae_scale"):
            return torch.ones(shape, dtype=float_dtype)
        if len(shape) <= 1:
            if key.endswith("bias") or key.endswith("vae_shift") or len(shape) == 0:
                return torch.zeros(shape, dtype=float_dtype)
            return torch.ones(shape, dtype=float_dtype)  # norm weights (GroupNorm/LayerNorm)
        if len(shape) == 2:
            return self.normal(shape, LINEAR_STD, float_dtype)  # linears and embeddings
        fan_in = math.prod(shape[1:])
        return self.normal(shape, 1.0 / math.sqrt(fan_in), float_dtype)  # convolutions

    def fill(self, state_dict: dict) -> dict:
        return {k: self.tensor_for(k, v) for k, v in state_dict.items()}
