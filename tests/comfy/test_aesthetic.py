"""AtelierAestheticMix and AtelierSplitPrompt inside a real ComfyUI, on the tiny checkpoints."""
import importlib

import pytest
import torch

from tests.harness import SD15, SDXL
from tests.tolerance import ONE_CALL, assert_changed, assert_close, assert_exact

PROMPT, NEGATIVE = "a watercolor fox", "blurry"
AESTHETIC = "golden hour, soft light, vibrant colours"


def mix(comfy, model, clip, aesthetic=AESTHETIC, strength=1.0, relative=True, layers="all", start=0.0, end=1.0):
    node = comfy.node_class("AtelierAestheticMix")
    return node.execute(model, clip, aesthetic, strength, relative, layers, start, end).result[0]


def pack(comfy, dotted):
    """A module of the pack as ComfyUI loaded it (its classes are the ones the nodes raise and use)."""
    return importlib.import_module(f"{comfy.pack.__name__}.{dotted}")


def cond_tensor(comfy, clip, text):
    return comfy.encode(clip, text)[0][0]


def sample(comfy, model, negative=NEGATIVE, ckpt=SD15, **kw):
    c = comfy.checkpoint(ckpt)
    kw.setdefault("steps", 1)
    return comfy.sample(model, comfy.encode(c.clip, PROMPT), comfy.encode(c.clip, negative), seed=5, **kw)


@pytest.fixture(scope="module")
def vanilla(comfy):
    return sample(comfy, comfy.sd15.model)


@pytest.mark.parametrize("case", ["strength 0", "empty aesthetic", "empty window"])
def test_neutral_settings_are_bit_exact(comfy, vanilla, case):
    ck = comfy.sd15
    kwargs = {"strength 0": dict(strength=0.0), "empty aesthetic": dict(aesthetic="  \n "),
              "empty window": dict(start=0.5, end=0.5)}[case]
    patched = mix(comfy, ck.model, ck.clip, **kwargs)
    assert_exact(sample(comfy, patched), vanilla, case)


def test_mix_changes_the_image_and_leaves_the_input_model_alone(comfy, vanilla):
    ck = comfy.sd15
    patched = mix(comfy, ck.model, ck.clip, strength=1.0)
    mixed = sample(comfy, patched)
    assert torch.isfinite(mixed).all()
    assert_changed(mixed, vanilla, what="the mix")
    literal = sample(comfy, mix(comfy, ck.model, ck.clip, strength=1.0, relative=False))
    assert_changed(literal, mixed, what="the literal aesthetic")  # the empty-prompt baseline is really subtracted
    assert_exact(sample(comfy, ck.model), vanilla, "the input model afterwards")


def test_values_and_keys_reaching_attention_follow_the_formula(comfy):
    """Captured at a real layer: K = to_k(c) (the content map), V = to_v(c + s e) on the cond row,
    V = to_v(c_neg) on the uncond row; a long negative makes ComfyUI repeat the positive to 154 tokens."""
    import comfy.ldm.modules.attention as comfy_attention
    dispatcher = pack(comfy, "attention.dispatch.dispatcher")
    models = pack(comfy, "attention.models")

    ck = comfy.sd15
    path = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2"
    layer = ck.model.get_model_object(path)
    diffusion_model = ck.model.get_model_object("diffusion_model")
    assert models.family_of(diffusion_model).attention_module(diffusion_model, ("input", 1, 0), "attn2") is layer
    seen = []

    def capture(q, k, v, extra_options):  # a foreign replace at the layer: our dispatcher keeps it as base
        if not seen:
            seen.append((k.clone(), v.clone(), list(extra_options["cond_or_uncond"])))
        return comfy_attention.optimized_attention(q, k, v, extra_options["n_heads"])

    foreign = ck.model.clone()
    foreign.set_model_attn2_replace(capture, "input", 1, 0)
    s = 0.8
    patched = mix(comfy, foreign, ck.clip, strength=s)
    negative = ", ".join(["blurry"] * 60)
    sample(comfy, patched, negative=negative)

    k, v, cond_or_uncond = seen[0]
    assert cond_or_uncond == [1, 0]
    pos, neg = cond_tensor(comfy, ck.clip, PROMPT), cond_tensor(comfy, ck.clip, negative)
    assert pos.shape[1] == 77 and neg.shape[1] == 154
    e = cond_tensor(comfy, ck.clip, AESTHETIC) - cond_tensor(comfy, ck.clip, "")
    with torch.no_grad():
        pos154 = pos.repeat(1, 2, 1)
        assert_close(k[0], layer.to_k(neg)[0], ulps=ONE_CALL, what="uncond keys")
        assert_close(k[1], layer.to_k(pos154)[0], ulps=ONE_CALL, what="cond keys")
        assert_close(v[0], layer.to_v(neg)[0], ulps=ONE_CALL, what="uncond values")
        assert_close(v[1], layer.to_v(pos154 + s * e.repeat(1, 2, 1))[0], ulps=ONE_CALL, what="mixed cond values")
    assert dispatcher.controls_of(patched)  # the control sits on the stack


def test_lora_patched_projections_are_used(comfy):
    """With a LoRA the mixed values go through the LoRA-patched to_v (captured while the LoRA is on)."""
    import comfy.ldm.modules.attention as comfy_attention
    ck = comfy.sd15
    model, clip = comfy.lora(ck.model, ck.clip)
    path = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2"
    seen = []

    def capture(q, k, v, extra_options):
        if not seen:
            layer = model.get_model_object(path)
            with torch.no_grad():
                seen.append((v.clone(), layer.to_v(cond_tensor(comfy, clip, PROMPT)
                                                    + 1.5 * (cond_tensor(comfy, clip, AESTHETIC)
                                                             - cond_tensor(comfy, clip, "")))))
        return comfy_attention.optimized_attention(q, k, v, extra_options["n_heads"])

    foreign = model.clone()
    foreign.set_model_attn2_replace(capture, "input", 1, 0)
    patched = mix(comfy, foreign, clip, strength=1.5)
    comfy.sample(patched, comfy.encode(clip, PROMPT), comfy.encode(clip, NEGATIVE), seed=1, steps=1)
    v, want = seen[0]
    assert_close(v[1], want[0], ulps=ONE_CALL, what="mixed values through the LoRA's to_v")


def test_split_prompt_node_feeds_mix_in_a_graph(comfy):
    from tests.harness import graphs
    g = graphs.txt2img(steps=1, save=False)
    g["10"] = {"class_type": "AtelierSplitPrompt",
               "inputs": {"prompt": "a fox, golden hour, oil painting", "use_builtin_vocabulary": True,
                          "vocabulary": ""}}
    g["11"] = {"class_type": "AtelierAestheticMix",
               "inputs": {"model": ["1", 0], "clip": ["1", 1], "aesthetic": ["10", 1], "strength": 0.7,
                          "relative_to_empty_prompt": True, "layers": "all", "start_percent": 0.0,
                          "end_percent": 1.0}}
    g["2"]["inputs"]["text"] = ["10", 0]
    g["5"]["inputs"]["model"] = ["11", 0]
    res = comfy.run_graph(g)
    assert res.output("10", 0) == "a fox" and res.output("10", 1) == "golden hour, oil painting"
    assert torch.isfinite(res.output("5")["samples"]).all()


@pytest.mark.slow
def test_sdxl_mix_acts_and_a_mismatched_clip_is_refused(comfy):
    errors = pack(comfy, "attention.core.errors")
    xl = comfy.sdxl
    vanilla = sample(comfy, xl.model, ckpt=SDXL, cfg=1.0, width=128, height=128)
    mixed = sample(comfy, mix(comfy, xl.model, xl.clip), ckpt=SDXL, cfg=1.0, width=128, height=128)
    assert torch.isfinite(mixed).all()
    assert_changed(mixed, vanilla, what="the mix on SDXL")
    with pytest.raises(errors.AtelierError, match="AtelierAestheticMix: input 'clip'"):
        mix(comfy, comfy.sd15.model, xl.clip)
