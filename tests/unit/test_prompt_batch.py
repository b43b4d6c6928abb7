"""Prompts of different token lengths share one length by cyclic padding: attention over a padded
row equals attention over the original row with a score bias of log(copies of each token), so it is
unchanged exactly when the row's length divides the common length; the common length stays bounded."""
import math

import pytest
import torch

from tests.pack import pack_module
from tests.tolerance import ONE_CALL, assert_changed, assert_close

batch = pack_module("attention.prompt_batch")
CHUNK = 77


def attention(q, k, v, bias=None):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("chunks,expected", [
    ([1, 1], 1), ([1, 2], 2), ([2, 3], 6), ([3, 4], 12), ([1, 5], 5), ([5, 6], 6), ([21, 20], 21),
    ([101, 100], 101), ([1, 2, 3], 6), ([2, 3, 5], 5),
])
def test_common_length_is_the_lcm_within_bound_else_the_longest(chunks, expected):
    lengths = [c * CHUNK for c in chunks]
    assert batch.common_length(lengths) == expected * CHUNK
    assert batch.common_length(lengths) <= batch.REPEAT_BOUND * max(lengths)


def test_cyclic_padding_repeats_the_rows_own_tokens():
    cond = torch.arange(3.0).reshape(1, 3, 1)
    assert batch.cyclic_pad(cond, 8).flatten().tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert batch.inexact_rows([3, 4, 8], 8) == [0]


@pytest.mark.parametrize("tokens,length", [(5, 15), (5, 12), (7, 8)])
def test_padded_attention_equals_the_original_with_a_log_count_bias(tokens, length):
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 6, 8, dtype=torch.float64), torch.randn(1, tokens, 8, dtype=torch.float64), \
        torch.randn(1, tokens, 8, dtype=torch.float64)
    padded = attention(q, batch.cyclic_pad(k, length), batch.cyclic_pad(v, length))
    copies = torch.tensor([length // tokens + (j < length % tokens) for j in range(tokens)], dtype=torch.float64)
    assert_close(padded, attention(q, k, v, copies.log()), ulps=ONE_CALL, what="padded vs a log-count bias")
    if length % tokens == 0:  # every token repeated equally often: the original attention, to rounding
        assert_close(padded, attention(q, k, v), ulps=ONE_CALL, what="evenly padded vs the original")
    else:
        assert_changed(padded, attention(q, k, v), what="unevenly padded vs the original")
