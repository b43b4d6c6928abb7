"""Reference-image StyleAligned on every diffusion transformer is right whatever the lengths of the
reference's and the batch's prompts (issue 28).

In reference-image mode the reference row joins every model call with the prompt it was inverted with; as
ComfyUI joins conditionings, every row's prompt is repeated to the least common multiple of the lengths
(a 6-token reference and an 8-token batch prompt: 24 tokens each). The controls must act on the call as
the model runs it: its prompt is 24 tokens long, its image tokens follow. Checked at the first joint layer
of each family on the q/k/v the model hands over: the generated row's output is StyleAligned's formula
(AdaIN over its image tokens, the reference's image keys shared) with the prompt length read off the call
itself (all tokens but the latent's), for prompt lengths that are equal, multiples of each other and
coprime, drawn by hypothesis.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.comfy.dit_helpers import spy_on
from tests.pack import pack_module
from tests.tolerance import ONE_CALL, assert_close

FAMILIES = ("flux", "sd35", "lumina", "qwen_image", "flux2", "chroma", "krea2")
# latent positions per image token side (the patch; 2 unless named) and the multiple a family pads image
# tokens to
PATCH = {"flux2": 1}
IMAGE_PAD_MULTIPLE = {"lumina": 32}
SIZE = 64  # an 8 x 8 latent
LENGTHS = st.sampled_from([(4, 4), (6, 8), (8, 6), (4, 8), (8, 4), (5, 7), (3, 10)])


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, comfy):
    comfy.load_nodes()
    from scripts.bench_families import family as load
    try:
        return request.param, load(request.param)
    except SystemExit as why:  # Krea 2 on a ComfyUI without it
        pytest.skip(str(why))


def adain(x, ref, eps=1e-5):
    return ((x - x.mean(-2, keepdim=True)) / (x.var(-2, keepdim=True) + eps).sqrt()
            * (ref.var(-2, keepdim=True) + eps).sqrt() + ref.mean(-2, keepdim=True))


def styled_row(q, k, v, text: int, image: int):
    """StyleAligned's generated row (row 1) against the reference (row 0), written out with plain softmax:
    q, k, v (2, heads, T, d) with tokens [prompt (text) | image (image) | padding]."""
    img = slice(text, text + image)
    q1, k1 = q[1].clone(), k[1].clone()
    q1[:, img], k1[:, img] = adain(q1[:, img], q[0, :, img]), adain(k1[:, img], k[0, :, img])
    keys, values = torch.cat([k1, k[0, :, img]], -2), torch.cat([v[1], v[0, :, img]], -2)
    out = ((q1 @ keys.transpose(-1, -2)) / math.sqrt(q.shape[-1])).softmax(-1) @ values
    return out.transpose(0, 1).flatten(1)[: text + image]


def heads_first(x, heads):
    return x if x.ndim == 4 else x.unflatten(-1, (heads, -1)).transpose(1, 2)


def first_joint_call(run):
    """(override, args, heads, output) of the first attention call of ``run()`` at a layer a control acts
    on with two rows [reference, generated] and the whole token layout."""
    calls = []

    def record(override, func, args, kwargs, out):
        if override.table and args[0].shape[0] == 2 and override.tokens.matches(args[0].shape[-2]) and not calls:
            calls.append((override, args, args[3] if len(args) > 3 else kwargs.get("heads"), out))
    spy_on(pack_module("attention.dispatch.dit_override").DiTOverride, run, record)
    return calls[0]


@given(lengths=LENGTHS)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_reference_mode_acts_on_the_calls_own_prompt_length(comfy, family, lengths):
    name, fam = family
    reference_tokens, batch_tokens = lengths
    invert, style = comfy.node_class("AtelierInvert"), comfy.node_class("AtelierStyleAligned")
    x0 = torch.randn(1, fam.latent_channels, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(3))
    _, trajectory, _ = invert.execute(fam.model, {"samples": x0}, 2, 1.0, fam.scheduler, 0,
                                      positive=fam.conditioning(reference_tokens, 4)).args
    styled = style.execute(fam.model, True, True, True, False, False, 1.0, 0.0, "all", 0.0, 0.0, 1.0,
                           reference=trajectory).args[0]
    positive = fam.conditioning(batch_tokens, 5)

    def run():
        import comfy.sample
        latent = comfy.sample.fix_empty_latent_channels(styled, torch.zeros_like(x0))
        comfy.sample.sample(styled, torch.randn_like(latent), 1, 1.0, "euler", fam.scheduler, positive, positive,
                            latent, disable_pbar=True, seed=0)
    override, args, heads, out = first_joint_call(run)  # [reference row, generated row]
    q, k, v = args[:3]
    if v.ndim == q.ndim + 1:  # SD3 hands v as (batch, tokens, heads, dim)
        v = v.flatten(-2)
    q, k, v = (heads_first(t, heads).double() for t in (q, k, v))
    side = (SIZE // 8) // PATCH.get(name, 2)
    image = side * side
    pad = -image % IMAGE_PAD_MULTIPLE.get(name, 1)
    text = q.shape[-2] - image - pad  # what the call itself holds before its latent's tokens
    assert text >= math.lcm(reference_tokens, batch_tokens)  # every row's prompt repeated to the lcm (or padded)
    expected = styled_row(q, k, v, text, image)
    got = out[1, : text + image].double()
    assert_close(got, expected, ulps=ONE_CALL, dtype=out.dtype, what=f"{name}: the generated row vs the formula")
