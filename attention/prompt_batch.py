"""Stacking prompts of different token lengths into one batch of conditioning rows.

Rows must share one token length L. A row of T tokens is padded cyclically: token j of the padded
row is token j mod T. In softmax attention a key repeated n times acts as that key with its score
raised by log n, so a padded row attends exactly as the original when every token is repeated the
same number of times, i.e. when T divides L; otherwise the first L mod T tokens get one more copy
than the rest (a score bias of log((q + 1) / q), q = L div T).

The common length is the least common multiple of the lengths (exact for every row) when it is at
most :data:`REPEAT_BOUND` times the longest length (ComfyUI itself repeats a conditioning at most 4
times when it batches different lengths); otherwise it is the longest length (exact for every row
whose length divides it, approximate for the others, and a warning says which). L never exceeds
REPEAT_BOUND * longest tokens, so two prompts of 21 and 20 chunks give 21 chunks per row, not 420.
"""
from __future__ import annotations

import math

import torch

REPEAT_BOUND = 4


def common_length(lengths: list[int]) -> int:
    multiple = math.lcm(*lengths)
    return multiple if multiple <= REPEAT_BOUND * max(lengths) else max(lengths)


def cyclic_pad(cond: torch.Tensor, length: int) -> torch.Tensor:
    """(1, T, D) -> (1, length, D) with token j = token j mod T."""
    tokens = cond.shape[1]
    return cond.repeat(1, -(-length // tokens), 1)[:, :length]


def inexact_rows(lengths: list[int], length: int) -> list[int]:
    """Rows whose padding to ``length`` changes their attention (their length does not divide it)."""
    return [i for i, tokens in enumerate(lengths) if length % tokens]
