"""The two image projection models of published IP-Adapter files (Ye et al., arXiv 2308.06721).

They turn CLIP vision features into a few "image prompt" tokens of the UNet's context width.
Parameter names follow the files' ``image_proj.*`` keys, so a file's state dict loads strictly.

- :class:`LinearImageProjection` (base adapters, the paper's ImageProjModel): the pooled, projected
  CLIP embedding e (``image_embeds``) becomes N tokens::

      tokens = LayerNorm(reshape(W e + b, (N, C)))

- :class:`Resampler` ("plus" adapters): a Perceiver resampler. Learned latents L (Q queries of width
  D) read the penultimate CLIP hidden states X through ``depth`` layers of::

      L = L + PerceiverAttention(LN1(X W_in + b_in), LN2(L))       (keys/values over [X ; L])
      L = L + W_2 GELU(W_1 LN(L))
      tokens = LayerNorm_out(L W_out + b_out)
"""
from __future__ import annotations

import torch
from torch import nn

# Every published "plus" file uses 64-wide heads (heads = width / 64: 12 for SD1.5, 20 for SDXL).
RESAMPLER_HEAD_DIM = 64


class LinearImageProjection(nn.Module):
    def __init__(self, embed_dim: int, context_dim: int, tokens: int):
        super().__init__()
        self.tokens = tokens
        self.proj = nn.Linear(embed_dim, tokens * context_dim)
        self.norm = nn.LayerNorm(context_dim)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) -> (B, tokens, context_dim)."""
        x = self.proj(image_embeds)
        return self.norm(x.reshape(x.shape[0], self.tokens, -1))


class PerceiverAttention(nn.Module):
    def __init__(self, width: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.to_q = nn.Linear(width, inner, bias=False)
        self.to_kv = nn.Linear(width, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, width, bias=False)

    def forward(self, features: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        features, latents = self.norm1(features), self.norm2(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([features, latents], dim=-2)).chunk(2, dim=-1)

        def heads_first(t):  # (B, T, H*d) -> (B, H, T, d)
            return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

        q, k, v = heads_first(q), heads_first(k), heads_first(v)
        weights = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).float().softmax(dim=-1).to(v.dtype)
        out = (weights @ v).transpose(1, 2).flatten(2)
        return self.to_out(out)


def feed_forward(width: int, mult: int) -> nn.Sequential:
    # Indices 0, 1, 3 carry parameters, as the files' "layers.{i}.1.{0,1,3}" keys expect.
    return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width * mult, bias=False), nn.GELU(),
                         nn.Linear(width * mult, width, bias=False))


class Resampler(nn.Module):
    def __init__(self, embed_dim: int, width: int, context_dim: int, queries: int, depth: int,
                 heads: int, head_dim: int = RESAMPLER_HEAD_DIM, ff_mult: int = 4):
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(1, queries, width))
        self.proj_in = nn.Linear(embed_dim, width)
        self.proj_out = nn.Linear(width, context_dim)
        self.norm_out = nn.LayerNorm(context_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(width, heads, head_dim), feed_forward(width, ff_mult)])
            for _ in range(depth))

    @property
    def tokens(self) -> int:
        return self.latents.shape[1]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, T, embed_dim) -> (B, queries, context_dim)."""
        features = self.proj_in(hidden_states)
        latents = self.latents.expand(hidden_states.shape[0], -1, -1)
        for attention, ff in self.layers:
            latents = latents + attention(features, latents)
            latents = latents + ff(latents)
        return self.norm_out(self.proj_out(latents))
