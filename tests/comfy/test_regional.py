"""Regional attention inside a real ComfyUI: the formula on captured q/k/v of SD1.5 and SDXL layers,
identity at weight 0, the weight applied at each step, composition with StyleAligned and a foreign
attn2 replace, and the nodes' input errors."""
import math

import pytest
import torch

from tests.harness import SD15, SDXL
from tests.pack import pack_module
from tests.tolerance import ONE_CALL, OPS, assert_changed, assert_close, assert_exact

SIZE = 128  # 16x16 latent: enough for boxes with fractional edges, cheap on 2 cores
SMALL = 64  # whole-sampling tests
BOX = (0.125, 0.25, 0.5, 0.4375)  # edges on 1/16 (16x16 grid), fractional at 8x8


@pytest.fixture(scope="module")
def pack(comfy):
    comfy.load_nodes()
    return {name: pack_module(name) for name in
            ("attention.regional", "attention.weight_curves", "attention.core.calls", "attention.models", "nodes.regional",
             "attention.dispatch.dispatcher", "nodes.style_aligned")}


def region_node(pack, comfy, clip, text="a red house", box=BOX, weight=1.0, curve="constant", end=0.0,
                weights="", regions=None):
    node = pack["nodes.regional"].AtelierRegion
    return node.execute(comfy.encode(clip, text), *box, weight, curve, end, 0.5, weights, regions=regions).args[0]


def regional_model(pack, model, regions, layers="all"):
    return pack["nodes.regional"].AtelierRegionalAttention.execute(model, regions, layers, 0.0, 1.0).args[0]


def capture_attn2(comfy, model, positive, negative, key, steps=1, cfg=5.0, batch=1):
    """Sample with a recording attn2 replace at ``key``; returns the (q, k, v, extra_options) of each call."""
    import comfy.ldm.modules.attention as attention
    calls = []

    def record(q, k, v, extra_options):
        calls.append((q.clone(), k.clone(), v.clone(), extra_options))
        return attention.optimized_attention(q, k, v, extra_options["n_heads"])

    spy = model.clone()
    spy.set_model_attn2_replace(record, key[0], key[1], key[2])
    comfy.sample(spy, positive, negative, steps=steps, cfg=cfg, width=SIZE, height=SIZE, batch=batch)
    return calls


def manual_attention(q, k, v, heads):
    d = q.shape[-1] // heads
    split = lambda t: t.reshape(*t.shape[:-1], heads, d).transpose(-2, -3).double()
    w = (split(q) @ split(k).transpose(-1, -2) / math.sqrt(d)).softmax(-1)
    return (w @ split(v)).transpose(-2, -3).flatten(-2)


def supersampled_box(box, h, w, factor=32):
    x, y, bw, bh = box
    ys = (torch.arange(h * factor, dtype=torch.float64) + 0.5) / (h * factor)
    xs = (torch.arange(w * factor, dtype=torch.float64) + 0.5) / (w * factor)
    inside = ((ys >= y) & (ys < y + bh))[:, None] & ((xs >= x) & (xs < x + bw))[None, :]
    return inside.double().reshape(h, factor, w, factor).mean(dim=(1, 3)).flatten()


@pytest.mark.parametrize("ckpt,key", [(SD15, ("input", 1, 0)), (SD15, ("output", 3, 0)),
                                      pytest.param(SDXL, ("input", 4, 1), marks=pytest.mark.slow)])
def test_layer_output_matches_formula_on_captured_qkv(comfy, pack, ckpt, key):
    ck = comfy.checkpoint(ckpt)
    positive, negative = comfy.encode(ck.clip, "a landscape"), comfy.encode(ck.clip, "ugly")
    regions = region_node(pack, comfy, ck.clip, weight=0.8, box=BOX)
    (q, k, v, options), = capture_attn2(comfy, ck.model, positive, negative, key, steps=1)
    assert options["cond_or_uncond"] == [1, 0]
    calls, regional = pack["attention.core.calls"], pack["attention.regional"]
    diffusion_model = ck.model.model.diffusion_model
    sigma = float(options["sigmas"].max())
    family = pack["attention.models"].family_of(diffusion_model)
    run = calls.RunInfo(ck.model.model.model_sampling, sigma, (), options.get("sample_sigmas"), diffusion_model, family)
    call = calls.AttentionCall(extra_options=options, key=key, run=run)
    plain = lambda q_, k_, v_, call_, mask=None: manual_attention(q_, k_, v_, options["n_heads"]).to(q_.dtype)
    control = regional.RegionalControl(regions=regions)
    with torch.no_grad():
        got = control.attend(plain, q, k, v, call).double()

        # Independent: the layer's weights read directly, the box rasterised by brute force.
        attn2 = family.attention_module(diffusion_model, key, "attn2")
        local = regions[0].cond.to(q.dtype)
        k_l, v_l = local @ attn2.to_k.weight.T.to(q.dtype), local @ attn2.to_v.weight.T.to(q.dtype)
        h, w = options["activations_shape"][-2:]
        m = supersampled_box(BOX, h, w)[None, :, None] * 0.8
        full = manual_attention(q, k, v, options["n_heads"])
        want = full.clone()
        want[1] = full[1] + m[0] * (manual_attention(q[1:], k_l, v_l, options["n_heads"])[0] - full[1])
    assert_close(got, want, ulps=ONE_CALL, dtype=q.dtype, what="the layer's output vs the formula")
    assert_exact(got[0], full[0].to(q.dtype).double(), "uncond row")
    outside = m[0, :, 0] == 0
    assert_exact(got[1, outside], full[1, outside].to(q.dtype).double(), "tokens outside the region")
    assert_changed(got[1, ~outside], full[1, ~outside], what="tokens inside the region")


def test_weight_zero_and_curves_that_are_always_zero_give_vanilla_bit_for_bit(comfy, pack):
    ck = comfy.sd15
    positive, negative = comfy.encode(ck.clip, "a landscape"), comfy.encode(ck.clip, "")
    vanilla = comfy.sample(ck.model, positive, negative, steps=2, width=SMALL, height=SMALL, seed=5)
    zero = region_node(pack, comfy, ck.clip, weight=0.0)
    zero = region_node(pack, comfy, ck.clip, "a tree", weight=0.0, curve="list", weights="0, 0", regions=zero)
    assert_exact(comfy.sample(regional_model(pack, ck.model, zero), positive, negative, steps=2,
                              width=SMALL, height=SMALL, seed=5), vanilla, "weight 0 and an all-zero curve")
    live = region_node(pack, comfy, ck.clip, weight=1.0)
    patched = comfy.sample(regional_model(pack, ck.model, live), positive, negative, steps=2, width=SMALL,
                           height=SMALL, seed=5)
    assert_changed(patched, vanilla, what="a region at weight 1")
    assert_exact(comfy.sample(ck.model, positive, negative, steps=2, width=SMALL, height=SMALL, seed=5),
                 vanilla, "the unpatched model afterwards")


@pytest.mark.parametrize("denoise", [1.0, 0.5])
def test_weight_applied_at_each_step_is_the_curve_at_that_steps_progress(comfy, pack, monkeypatch, denoise):
    import comfy.samplers as samplers
    ck = comfy.sd15
    regional, curves = pack["attention.regional"], pack["attention.weight_curves"]
    regions = region_node(pack, comfy, ck.clip, curve="list", weights="1, 0.75, 0.5, 0.25, 0.1, 0.05")
    seen = []  # (sigma of the evaluation, weight used)
    real_blend, real_position = regional.regional_blend, regional.step_position
    current = {}

    def spy_position(run):
        current["sigma"] = run.sigma
        return real_position(run)

    def spy_blend(chain_out, q, k, v, rows, regions_and_weights, *rest, **kwargs):
        seen.append((current["sigma"], regions_and_weights[0][1]))
        return real_blend(chain_out, q, k, v, rows, regions_and_weights, *rest, **kwargs)

    monkeypatch.setattr(regional, "step_position", spy_position)
    monkeypatch.setattr(regional, "regional_blend", spy_blend)
    steps = 3
    comfy.sample(regional_model(pack, ck.model, regions, layers="input.1"), comfy.encode(ck.clip, "a landscape"),
                 comfy.encode(ck.clip, ""), steps=steps, denoise=denoise, width=SMALL, height=SMALL,
                 latent={"samples": torch.zeros(1, 4, SMALL // 8, SMALL // 8)})
    ms = ck.model.model.model_sampling
    all_sigmas = samplers.calculate_sigmas(ms, "normal", int(steps / denoise))
    step_sigmas = [float(s) for s in all_sigmas[-(steps + 1):-1]]
    assert sorted({round(s, 4) for s, _ in seen}, reverse=True) == [round(s, 4) for s in step_sigmas]
    t_max, t_min = float(ms.timestep(ms.sigma_max)), float(ms.timestep(ms.sigma_min))
    for sigma, weight in seen:
        progress = (t_max - float(ms.timestep(torch.tensor(sigma)))) / (t_max - t_min)
        assert_close(weight, regions[0].curve.at(progress), ulps=OPS, dtype=torch.float32,
                     what=f"weight at sigma {sigma}")
    per_step = [w for i, (_, w) in enumerate(seen) if i == 0 or seen[i - 1][0] != seen[i][0]]
    # 3 steps at full denoise sit at progress 0, 0.5, 1 -> list values 0, 3, 5; denoise 0.5 runs the
    # last 3 steps of a 6-step schedule (progress 0.6, 0.8, 1) -> values 3, 4, 5.
    assert per_step == ([1.0, 0.25, 0.05] if denoise == 1.0 else [0.25, 0.1, 0.05])


def test_composes_with_style_aligned_and_a_foreign_attn2_replace(comfy, pack):
    import comfy.ldm.modules.attention as attention
    ck = comfy.sd15
    positive, negative = comfy.encode(ck.clip, "a landscape"), comfy.encode(ck.clip, "")
    foreign_calls = []

    def foreign(q, k, v, extra_options):  # an IP-Adapter-like replace: attention plus an extra term
        foreign_calls.append(extra_options["block"])
        return attention.optimized_attention(q, k, v, extra_options["n_heads"]) + 0.05 * q

    base = ck.model.clone()
    for key in (("input", 1, 0), ("output", 3, 0)):
        base.set_model_attn2_replace(foreign, *key)
    styled = pack["nodes.style_aligned"].AtelierStyleAligned.execute(
        base, True, True, True, False, False, 1.0, 0.0, "all", 0.0, 0.0, 1.0).args[0]
    sample = lambda m: comfy.sample(m, positive, negative, steps=2, batch=2, width=SMALL, height=SMALL, seed=2)
    reference = sample(styled)
    calls_alone = len(foreign_calls)
    both = sample(regional_model(pack, styled, region_node(pack, comfy, ck.clip)))
    assert len(foreign_calls) == 2 * calls_alone > 0, "the foreign replace stopped running"
    assert_changed(both, reference, what="a region on StyleAligned and a foreign replace")
    inert = sample(regional_model(pack, styled, region_node(pack, comfy, ck.clip, weight=0.0)))
    assert_exact(inert, reference, "a region at weight 0")
    stacks = pack["attention.dispatch.dispatcher"].controls_of(regional_model(pack, styled, region_node(pack, comfy, ck.clip)))
    assert [type(c).__name__ for c in stacks] == ["SharedAttentionControl", "RegionalControl"]


def test_box_regions_json_makes_one_region_per_box(comfy, pack):
    node = pack["nodes.regional"].AtelierBoxRegions
    text = ('{"width": 512, "height": 256, "boxes": [{"x": 0, "y": 0, "w": 0.5, "h": 1, "prompt": "a cat"},'
            ' {"x": 0.5, "y": 0.2, "w": 0.5, "h": 0.5, "prompt": "a dog", "weight": 0.9, "curve": "cosine",'
            ' "end_weight": 0.1}]}')
    earlier = region_node(pack, comfy, comfy.sd15.clip)
    regions = node.execute(comfy.sd15.clip, text, regions=earlier).args[0]
    assert len(regions) == 3 and regions[0] is earlier[0]
    assert regions[2].box == (0.5, 0.2, 0.5, 0.5)
    assert_close(regions[2].curve.at(0.0), 0.9, ulps=OPS, what="start weight")
    assert_close(regions[2].curve.at(1.0), 0.1, ulps=OPS, what="end weight")
    assert regions[1].cond.shape == (1, 77, 768)


@pytest.mark.parametrize("text,match", [
    ("{not json", "not valid JSON"),
    ('{"boxes": [{"x": 0.8, "y": 0, "w": 0.5, "h": 1, "prompt": "a"}]}', "reaches outside the image"),
    ('{"boxes": [{"x": 0, "y": 0, "w": 0.5, "h": 1}]}', "has no prompt"),
    ('{"boxes": [{"x": 0, "y": 0, "w": 0.5, "h": 1, "prompt": "a", "curve": "list"}]}', "no weights"),
])
def test_box_regions_errors_name_the_box_and_the_fix(comfy, pack, text, match):
    with pytest.raises(ValueError, match=match) as e:
        pack["nodes.regional"].AtelierBoxRegions.execute(comfy.sd15.clip, text)
    assert "AtelierBoxRegions" in str(e.value) and "Fix:" in str(e.value)


def test_sd15_prompt_on_sdxl_model_is_a_clear_error(comfy, pack):
    """Refused when the node runs (the model and the region are both known), naming the region, both
    widths and the fix, before any sampling."""
    sdxl = comfy.sdxl.model if SDXL in comfy._ckpts else None
    if sdxl is None:
        pytest.skip("SDXL not loaded in this session (the slow SDXL test loads it)")
    errors = pack_module("attention.core.errors")
    regions = region_node(pack, comfy, comfy.sd15.clip)
    with pytest.raises(errors.AtelierError, match=r"AtelierRegionalAttention: input 'regions': region 1 .*768-wide "
                                                  r"local prompt .*2048-wide text"):
        regional_model(pack, sdxl, regions, layers="input.4")


def test_local_prompt_projections_follow_the_weights_between_runs(comfy, pack):
    """Each local prompt is projected once per layer per sampling run, not once per step. The same
    region objects then serve a model whose cross-attention weights a LoRA changed (applied after the
    node, at two strengths): each run equals the one with freshly made regions, which share no cache."""
    ck = comfy.sd15
    positive, negative = comfy.encode(ck.clip, "a landscape"), comfy.encode(ck.clip, "")
    kw = dict(steps=3, width=SMALL, height=SMALL, seed=3)
    regions = region_node(pack, comfy, ck.clip, weight=1.5)
    patched = regional_model(pack, ck.model, regions)
    first = comfy.sample(patched, positive, negative, **kw)
    for strength in (1.0, 0.4):
        lora_model, _ = comfy.lora(patched, ck.clip, strength_model=strength)
        reused = comfy.sample(lora_model, positive, negative, **kw)
        fresh_model, _ = comfy.lora(regional_model(pack, ck.model, region_node(pack, comfy, ck.clip, weight=1.5)),
                                    ck.clip, strength_model=strength)
        assert_exact(reused, comfy.sample(fresh_model, positive, negative, **kw), f"reused regions, LoRA {strength}")
        assert_changed(reused, first, what=f"LoRA {strength}")  # it reached the regional projections' layers
    assert_exact(comfy.sample(patched, positive, negative, **kw), first, "back without the LoRA")
