"""AtelierStyleAligned inside a real ComfyUI: vanilla where neutral, row 0 untouched, rows 1.. styled."""
import pytest
import torch

from tests.pack import pack_module

from tests.comfy.style_aligned_node import NEUTRAL, style_aligned
from tests.tolerance import SAMPLING, assert_changed, assert_close, assert_exact


@pytest.fixture(scope="module")
def sd15(comfy):
    ckpt = comfy.sd15
    return ckpt, comfy.encode(ckpt.clip, "a watercolor house"), comfy.encode(ckpt.clip, "blurry")


def sample(comfy, model, sd15, batch=3, cfg=5.0, steps=3):
    _, pos, neg = sd15
    return comfy.sample(model, pos, neg, batch=batch, cfg=cfg, steps=steps, width=128, height=128)


@pytest.fixture(scope="module")
def vanilla(comfy, sd15):
    return {cfg: sample(comfy, sd15[0].model, sd15, cfg=cfg) for cfg in (5.0, 1.0)}


# On the CPU row 0 gets an attention call of its own (batch 1, the vanilla run's is batch 3): its output
# is the unshared one to the rounding of a sampling run. Where it rides in the generated rows' call (small
# layers on fused GPU kernels), it attends to two copies of its own keys and values (the official
# formulation): equal up to rounding too, the same budget.


def test_neutral_settings_reproduce_vanilla_exactly(comfy, sd15, vanilla):
    assert_exact(sample(comfy, style_aligned(comfy, sd15[0].model, **NEUTRAL), sd15), vanilla[5.0],
                 "neutral StyleAligned")


@pytest.mark.parametrize("shared_call", [False, True], ids=["row 0 apart", "row 0 in the shared call"])
@pytest.mark.parametrize("cfg", [5.0, 1.0])
@pytest.mark.parametrize("settings", [{}, {"share_group_norm": True, "shared_score_shift": 0.69}])
def test_reference_row_unchanged_other_rows_styled(comfy, sd15, vanilla, cfg, settings, shared_call, monkeypatch):
    if shared_call:  # what a GPU does at small layers
        monkeypatch.setattr(pack_module("attention.style_aligned"), "reference_in_shared_call", lambda *a: True)
    out = sample(comfy, style_aligned(comfy, sd15[0].model, **settings), sd15, cfg=cfg)
    assert_close(out[0], vanilla[cfg][0], ulps=SAMPLING, what="reference row 0")
    for row in (1, 2):
        assert_changed(out[row], vanilla[cfg][row], what=f"generated row {row}")


def test_cond_and_uncond_in_separate_calls_match_one_call(comfy, sd15, monkeypatch):
    """A 385-token prompt and a 77-token negative cannot be concatenated (lcm padding > 4x), so ComfyUI
    runs cond and uncond as separate forwards; with the negative pre-repeated to 385 tokens (what the
    concatenation would do) they share one forward. StyleAligned must give the same images both ways."""
    ckpt = sd15[0]
    model = style_aligned(comfy, ckpt.model, share_group_norm=True)
    long_prompt = comfy.encode(ckpt.clip, ", ".join(["a small red house with a garden"] * 40))
    assert long_prompt[0][0].shape[1] == 385
    negative = comfy.encode(ckpt.clip, "blurry")
    negative_385 = [[negative[0][0].repeat(1, 5, 1), negative[0][1]]]
    from comfy import model_base
    calls = []
    original = model_base.BaseModel.apply_model

    def recording(self, x, t, *args, **kwargs):
        calls.append(list(kwargs["transformer_options"]["cond_or_uncond"]))
        return original(self, x, t, *args, **kwargs)
    monkeypatch.setattr(model_base.BaseModel, "apply_model", recording)
    kw = dict(batch=3, cfg=5.0, steps=2, width=64, height=64)
    split = comfy.sample(model, long_prompt, negative, **kw)
    assert sorted(map(tuple, calls[:2])) == [(0,), (1,)]  # ComfyUI really ran them apart
    calls.clear()
    joined = comfy.sample(model, long_prompt, negative_385, **kw)
    assert calls[0] in ([1, 0], [0, 1])
    # Repeating the negative's tokens is exact maths but not bit-exact: equal to the rounding of a sampling run
    assert_close(split, joined, ulps=SAMPLING, what="split vs joined cond/uncond")
    assert_changed(split, comfy.sample(ckpt.model, long_prompt, negative, **kw), what="StyleAligned")


def test_unpatched_model_is_vanilla_after_a_patched_run(comfy, sd15, vanilla):
    sample(comfy, style_aligned(comfy, sd15[0].model, share_group_norm=True), sd15)
    assert_exact(sample(comfy, sd15[0].model, sd15), vanilla[5.0], "the unpatched model after a patched run")
    assert "attention_atelier" not in sd15[0].model.model_options.get("transformer_options", {})
    assert not sd15[0].model.object_patches


def test_layer_keys_of_sd15_and_sdxl(comfy):
    from tests.pack import pack_module
    dispatcher = pack_module("attention.dispatch.dispatcher")
    sd15_keys = dispatcher.layer_keys(comfy.sd15.model.get_model_object("diffusion_model"))
    # the tiny SD1.5 has 2 levels: input 1, 3 / middle / output 0..3 (a full SD1.5 has 16 keys)
    assert all(k[0] in ("input", "middle", "output") for k in sd15_keys)
    assert ("middle", 0, 0) in sd15_keys and len(sd15_keys) == len(set(sd15_keys))
    sdxl_keys = dispatcher.layer_keys(comfy.sdxl.model.get_model_object("diffusion_model"))
    assert len(sdxl_keys) == 70  # depth [0,0,2,2,10,10]: 2*2 + 2*10 + 10 + 3*10 + 3*2
    assert ("input", 4, 1) in sdxl_keys and ("middle", 0, 9) in sdxl_keys and ("output", 5, 1) in sdxl_keys


def foreign_replace(log, scale):
    """Another pack's attention replace: plain attention times a scale, recording each call."""
    import comfy.ldm.modules.attention as attention

    def replace(q, k, v, extra_options):
        log.append(extra_options["block"])
        heads, dim_head = extra_options["n_heads"], extra_options["dim_head"]
        if q.shape[-1] != heads * dim_head:  # packs reshape by the model's dim_head, as this check does
            raise ValueError(f"q of width {q.shape[-1]} is not {heads} heads x {dim_head}")
        return attention.optimized_attention(q, k, v, heads) * scale
    return replace


@pytest.mark.parametrize("foreign_first,shift", [(True, 0.0), (False, 0.0), (True, 0.7)])
def test_foreign_replaces_keep_running(comfy, sd15, foreign_first, shift):
    from tests.pack import pack_module
    dispatcher = pack_module("attention.dispatch.dispatcher")
    model = sd15[0].model
    keys = dispatcher.layer_keys(model.get_model_object("diffusion_model"))
    attn1_log, attn2_log = [], []

    def add_foreign(m):
        m = m.clone()
        for key in keys:
            m.set_model_attn1_replace(foreign_replace(attn1_log, 0.9), key[0], key[1], key[2])
            m.set_model_attn2_replace(foreign_replace(attn2_log, 1.1), key[0], key[1], key[2])
        return m
    foreign_only = add_foreign(model)
    ours = dict(shared_score_shift=shift)  # a shift widens the heads of the shared call: never shown to them
    both = (style_aligned(comfy, foreign_only, **ours) if foreign_first
            else add_foreign(style_aligned(comfy, model, **ours)))
    base = sample(comfy, foreign_only, sd15)
    attn1_log.clear(), attn2_log.clear()
    out = sample(comfy, both, sd15)
    assert len(attn1_log) > 0 and len(attn2_log) > 0  # the other pack's replaces ran
    assert_close(out[0], base[0], ulps=SAMPLING, what="reference row 0")  # its effect on row 0 is intact
    assert_changed(out[1], base[1], what="generated row 1")  # and ours acted on rows 1..


def test_lora_composes_in_either_order(comfy, sd15):
    ckpt = sd15[0]
    lora_model, _ = comfy.lora(ckpt.model, ckpt.clip)
    lora_then_sa = style_aligned(comfy, lora_model)
    sa_then_lora, _ = comfy.lora(style_aligned(comfy, ckpt.model), ckpt.clip)
    lora_alone = sample(comfy, lora_model, sd15)
    a, b = sample(comfy, lora_then_sa, sd15), sample(comfy, sa_then_lora, sd15)
    assert_changed(lora_alone, sample(comfy, ckpt.model, sd15), what="the LoRA")
    assert_exact(a, b, "LoRA then StyleAligned vs StyleAligned then LoRA")  # the same weights and controls
    assert_close(a[0], lora_alone[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(a[1], lora_alone[1], what="generated row 1")


def test_sdxl_reference_row_unchanged(comfy):
    ckpt = comfy.sdxl
    pos, neg = comfy.encode(ckpt.clip, "a house"), comfy.encode(ckpt.clip, "")
    kw = dict(batch=2, cfg=4.0, steps=2, width=128, height=128)
    plain = comfy.sample(ckpt.model, pos, neg, **kw)
    out = comfy.sample(style_aligned(comfy, ckpt.model, share_group_norm=True), pos, neg, **kw)
    assert_close(out[0], plain[0], ulps=SAMPLING, what="reference row 0")
    assert_changed(out[1], plain[1], what="generated row 1")


def test_unsupported_model_is_refused_with_the_supported_families(comfy):
    from comfy import model_patcher, supported_models
    from tests.pack import pack_module
    errors = pack_module("attention.core.errors")
    # AuraFlow at width 64, on the meta device: a family the pack does not support
    aura = supported_models.AuraFlow({"cond_seq_dim": 2048, "max_seq": 1024, "patch_size": 2, "in_channels": 4,
                                      "dim": 64, "n_layers": 2, "n_double_layers": 1, "n_heads": 2,
                                      "global_conddim": 64})
    base = aura.get_model({}, device=torch.device("meta"))
    patcher = model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    with pytest.raises(errors.AtelierError, match=r"AtelierStyleAligned: input 'model'.*AuraFlow.*SDXL.*Flux"):
        style_aligned(comfy, patcher)


def test_bad_settings_name_the_input(comfy, sd15):
    from tests.pack import pack_module
    errors = pack_module("attention.core.errors")
    with pytest.raises(errors.AtelierError, match="input 'layers'"):
        style_aligned(comfy, sd15[0].model, layers="upper")
    with pytest.raises(errors.AtelierError, match="input 'start_percent'"):
        style_aligned(comfy, sd15[0].model, start_percent=0.8, end_percent=0.2)
