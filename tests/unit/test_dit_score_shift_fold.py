"""On diffusion transformers the score shift folded into extra head channels gives the same output as
the shift written as an additive mask, in both layouts ComfyUI hands the attention override: Flux's
(batch, heads, tokens, dim) and SD3's (batch, tokens, heads * dim). The kernel below scores with
1/sqrt(its own head size), as ComfyUI's attention functions do."""
import math

import pytest
import torch

from tests.pack import pack_module
from tests.tolerance import ONE_CALL, assert_changed, assert_close

dit_style = pack_module("attention.style_aligned")
sa = pack_module("attention.style_aligned")
rows = pack_module("attention.core.rows")

HEADS, DIM, TEXT, IMAGE = 2, 8, 3, 10


def kernel(heads_first: bool):
    def attention(q, k, v, mask):
        if not heads_first:  # (batch, tokens, heads * dim) -> (batch, heads, tokens, dim)
            q, k, v = (t.unflatten(-1, (HEADS, -1)).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores + mask
        return (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)
    return attention


@pytest.mark.parametrize("heads_first", [True, False], ids=["Flux layout", "SD3 layout"])
@pytest.mark.parametrize("shift", [0.69, -1.5])
@pytest.mark.parametrize("cond_or_uncond", [[0], [1, 0]])
def test_folded_shift_equals_the_masked_shift(heads_first, shift, cond_or_uncond):
    gen = torch.Generator().manual_seed(3)
    batch, tokens = 3 * len(cond_or_uncond), TEXT + IMAGE
    shape = (batch, HEADS, tokens, DIM) if heads_first else (batch, tokens, HEADS * DIM)
    q, k, v = (torch.randn(*shape, generator=gen, dtype=torch.float64) for _ in range(3))
    layout = rows.chunk_layout(batch, cond_or_uncond)
    settings = sa.SharingSettings(adain_values=True, score_scale=1.2, score_shift=shift)
    image = slice(TEXT, tokens)
    masked = dit_style.dit_shared_attention(q, k, v, layout, settings, image, kernel(heads_first))
    folded = dit_style.dit_shared_attention(q, k, v, layout, settings, image, kernel(heads_first), heads=HEADS)
    assert_close(folded, masked, ulps=ONE_CALL, what="folded vs masked shift")
    unshifted = dit_style.dit_shared_attention(q, k, v, layout, sa.SharingSettings(adain_values=True, score_scale=1.2),
                                               image, kernel(heads_first), heads=HEADS)
    assert_changed(folded, unshifted, what="the shift")
