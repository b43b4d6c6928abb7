"""AtelierIPAdapterLoader, AtelierImagePrompt and AtelierArtBN inside a real ComfyUI, on the tiny SD1.5,
with random-weight IP-Adapter files in the standard layout and a random ViT-L CLIP vision model."""
import math

import pytest
import torch

from tests.harness import SD15
from tests.tolerance import ONE_CALL, OPS, assert_changed, assert_close, assert_exact
from tiny_models.clip_vision import CLIP_VISION
from tiny_models.ip_adapter import SD15_BASE, SD15_PLUS, SDXL_BASE

SIZE = 128
PROMPT, NEGATIVE = "a lighthouse in a storm", "blurry"


def content_image(batch: int = 1) -> torch.Tensor:
    """A procedural RGB image batch (B, 224, 224, 3): gradients and rings, different per image."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 224), torch.linspace(0, 1, 224), indexing="ij")
    images = []
    for i in range(batch):
        ring = 0.5 + 0.5 * torch.sin(((x - 0.5) ** 2 + (y - 0.5) ** 2).sqrt() * (20 + 9 * i))
        images.append(torch.stack([x, ring, y * (1 - x) + 0.2 * i], dim=-1).clamp(0, 1))
    return torch.stack(images)


def node(comfy, name):
    return comfy.node_class(name)


def load_adapter(comfy, name):
    return node(comfy, "AtelierIPAdapterLoader").execute(name).result[0]


def image_prompt(comfy, model, adapter, vision, weight=1.0, layers="all", start=0.0, end=1.0):
    return node(comfy, "AtelierImagePrompt").execute(model, adapter, vision, weight, layers, start, end).result[0]


def art_bn(comfy, model, strength=1.0, apply_to="both", layers="all", start=0.0, end=1.0):
    return node(comfy, "AtelierArtBN").execute(model, strength, apply_to, layers, start, end).result[0]


def sample(comfy, model, batch=1, steps=2, **kw):
    clip = comfy.sd15.clip
    return comfy.sample(model, comfy.encode(clip, PROMPT), comfy.encode(clip, NEGATIVE), seed=11, steps=steps,
                        width=SIZE, height=SIZE, batch=batch, **kw)


@pytest.fixture(scope="module")
def vision(comfy):
    """CLIPVisionLoader + CLIPVisionEncode of the content image, through core's nodes."""
    import nodes
    comfy.load_nodes()
    clip_vision = nodes.CLIPVisionLoader().load_clip(CLIP_VISION)[0]
    return nodes.CLIPVisionEncode().encode(clip_vision, content_image(), "center")[0]


@pytest.fixture(scope="module")
def base_adapter(comfy):
    return load_adapter(comfy, SD15_BASE)


@pytest.fixture(scope="module")
def sdxl_adapter(comfy):
    return load_adapter(comfy, SDXL_BASE)


@pytest.fixture(scope="module")
def vanilla(comfy):
    return sample(comfy, comfy.sd15.model)


def test_loader_reads_the_standard_files(comfy, base_adapter, sdxl_adapter):
    assert SD15_BASE in comfy.node_class("AtelierIPAdapterLoader").define_schema().inputs[0].options
    base, plus, sdxl = base_adapter, load_adapter(comfy, SD15_PLUS), sdxl_adapter
    assert (base.variant, base.family, base.tokens, base.layer_count) == ("base", "SD1.5", 4, 7)
    assert (plus.variant, plus.family, plus.tokens) == ("plus", "SD1.5", 16)
    assert (sdxl.variant, sdxl.family, sdxl.layer_count) == ("base", "SDXL", 70)


@pytest.mark.parametrize("case", ["weight 0", "empty window"])
def test_neutral_settings_are_bit_exact(comfy, vision, base_adapter, vanilla, case):
    kwargs = {"weight 0": dict(weight=0.0), "empty window": dict(start=0.5, end=0.5)}[case]
    patched = image_prompt(comfy, comfy.sd15.model, base_adapter, vision, **kwargs)
    assert_exact(sample(comfy, patched), vanilla, case)


@pytest.mark.parametrize("adapter_name", [SD15_BASE, SD15_PLUS])
def test_image_prompt_changes_the_image_and_leaves_the_input_model_alone(comfy, vision, vanilla, adapter_name):
    patched = image_prompt(comfy, comfy.sd15.model, load_adapter(comfy, adapter_name), vision, weight=1.0)
    out = sample(comfy, patched)
    assert torch.isfinite(out).all()
    assert_changed(out, vanilla, what="the image prompt")
    assert_exact(sample(comfy, comfy.sd15.model), vanilla, "the input model afterwards")


def per_head_attention(q, keys, values, heads):
    d = q.shape[-1] // heads
    out = []
    for h in range(heads):
        s = slice(h * d, (h + 1) * d)
        out.append((q[:, s] @ keys[:, s].T / math.sqrt(d)).softmax(-1) @ values[:, s])
    return torch.cat(out, -1)


def test_image_branch_equals_the_formula_on_captured_queries_beside_a_foreign_replace(comfy, vision, base_adapter):
    """At a real layer: to_out(text + w * A(q, c W'_k, c W'_v)), c = image tokens on cond rows and the
    adapter's negative on uncond rows; the text part is another pack's attn2 replace, which still runs."""
    import comfy.ldm.modules.attention as comfy_attention
    ck = comfy.sd15
    seen = {}

    def foreign(q, k, v, extra_options):
        out = comfy_attention.optimized_attention(q, k, v, extra_options["n_heads"]) * 1.5  # visibly its own
        if "q" not in seen:
            seen.update(q=q.clone(), text=out.clone(), kinds=list(extra_options["cond_or_uncond"]),
                        heads=extra_options["n_heads"])
        return out

    def after(n, extra_options):
        if extra_options["block"] == ("input", 1) and "final" not in seen:
            seen["final"] = n.clone()
        return n

    model = ck.model.clone()
    model.set_model_attn2_replace(foreign, "input", 1, 0)
    model.set_model_attn2_output_patch(after)
    weight = 0.7
    sample(comfy, image_prompt(comfy, model, base_adapter, vision, weight=weight), steps=1)

    q, kinds = seen["q"].double(), seen["kinds"]
    assert kinds == [1, 0]
    features = vision["image_embeds"]
    tokens = {0: base_adapter.image_tokens(features)[0].double(),
              1: base_adapter.negative_tokens(features)[0].double()}
    w_k, w_v = base_adapter.to_k[0].double(), base_adapter.to_v[0].double()  # ("input", 1, 0) is layer 0
    rows = q.shape[0] // len(kinds)
    expected = []
    for i in range(q.shape[0]):
        c = tokens[kinds[i // rows]]
        image = per_head_attention(q[i], c @ w_k.T, c @ w_v.T, seen["heads"])
        expected.append(seen["text"][i].double() + weight * image)
    to_out = ck.model.get_model_object("diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2").to_out
    want = to_out(torch.stack(expected).float())
    assert_close(seen["final"], want, ulps=ONE_CALL, what="the layer's output vs the formula")


def atelier_error(excinfo) -> str:
    # by name: under pytest the pack may also be imported a second time as another package
    assert type(excinfo.value).__name__ == "AtelierError"
    return str(excinfo.value)


def test_adapter_of_the_other_family_is_refused_naming_both(comfy, vision, sdxl_adapter):
    with pytest.raises(ValueError) as e:
        image_prompt(comfy, comfy.sd15.model, sdxl_adapter, vision)
    message = atelier_error(e)
    assert message.startswith("AtelierImagePrompt: input 'ipadapter'")
    assert "SDXL" in message and "2048" in message and "SD1.5" in message and "768" in message


def test_clip_vision_output_of_the_wrong_width_is_refused(comfy, base_adapter):
    from comfy.clip_vision import Output
    wrong = Output()
    wrong["image_embeds"] = torch.zeros(1, 1024)  # a ViT-H embedding; the tiny adapter reads ViT-L's 768
    with pytest.raises(ValueError, match="width 1024 .* expects 768") as e:
        image_prompt(comfy, comfy.sd15.model, base_adapter, wrong)
    atelier_error(e)


def test_art_bn_strength_zero_is_bit_exact(comfy, vanilla):
    assert_exact(sample(comfy, art_bn(comfy, comfy.sd15.model, strength=0.0)), vanilla, "strength 0")


def test_art_bn_gives_generated_queries_the_reference_statistics(comfy, monkeypatch):
    """Captured by a foreign attn1 replace (our base attention): row 1's queries and keys have row 0's
    per-channel mean and std at strength 1 (std: ArtBN's sigma is sqrt(var + EPS), so row 0's times
    sqrt((1 + EPS/var_0) / (1 + EPS/var_1)), var_1 the row's own variance as ArtBN received it); row 0 (the
    reference) is generated exactly as without."""
    import comfy.ldm.modules.attention as comfy_attention
    from tests.pack import pack_module
    art_bn_module = pack_module("attention.art_bn")
    ck = comfy.sd15
    seen = {}
    received = []  # what ArtBN aligned over tokens, in call order: the first layer's queries, then keys
    align = art_bn_module.align_generated_rows

    def recording(x, layout, strength, dims, reference=None):
        if dims == art_bn_module.TOKENS:
            received.append(x.clone())
        return align(x, layout, strength, dims, reference)

    def foreign(q, k, v, extra_options):
        seen.setdefault("qk", (q.clone(), k.clone(), list(extra_options["cond_or_uncond"])))
        return comfy_attention.optimized_attention(q, k, v, extra_options["n_heads"])

    model = ck.model.clone()
    model.set_model_attn1_replace(foreign, "input", 1, 0)
    vanilla_pair = sample(comfy, model, batch=2)
    seen.clear()
    monkeypatch.setattr(art_bn_module, "align_generated_rows", recording)
    aligned = sample(comfy, art_bn(comfy, model, strength=1.0, apply_to="both"), batch=2)
    q, k, kinds = seen["qk"]
    for name, tensor, before in (("queries", q, received[0]), ("keys", k, received[1])):
        for chunk in range(len(kinds)):
            ref, gen = tensor[2 * chunk].double(), tensor[2 * chunk + 1].double()
            own_var = before[2 * chunk + 1].double().var(0)
            assert_close(gen.mean(0), ref.mean(0), ulps=OPS, dtype=torch.float32, magnitude_of=gen,
                         what=f"{name}' channel means")
            carried = ((1 + art_bn_module.EPS / ref.var(0)) / (1 + art_bn_module.EPS / own_var)).sqrt()
            assert_close(gen.std(0), ref.std(0) * carried, ulps=OPS, dtype=torch.float32, magnitude_of=gen,
                         what=f"{name}' channel stds")
    assert_exact(aligned[0], vanilla_pair[0], "reference row 0")
    assert_changed(aligned[1], vanilla_pair[1], what="generated row 1")


def test_everything_composes_with_style_aligned(comfy, vision, base_adapter):
    ck = comfy.sd15
    styled = node(comfy, "AtelierStyleAligned")
    model = art_bn(comfy, ck.model, strength=0.8, apply_to="group_norm")
    schema = {i.id: i.default for i in styled.define_schema().inputs if i.id != "model" and not i.optional}
    model = styled.execute(model, **schema).result[0]
    model = image_prompt(comfy, model, base_adapter, vision, weight=0.8)
    out = sample(comfy, model, batch=2)
    assert out.shape == (2, 4, SIZE // 8, SIZE // 8) and torch.isfinite(out).all()


def test_reference_mode_row_is_marked_and_gets_no_image_branch(comfy, vision, base_adapter, monkeypatch):
    """With a real-image reference, every model call of the trajectory's size starts each chunk with the
    inserted artwork row, marks it, and the image branch leaves that row's output as text attention."""
    from tests.comfy.inversion_helpers import image_latent, invert
    from tests.pack import pack_module
    ipa = pack_module("attention.ip_adapter")
    ck = comfy.sd15
    _, trajectory, _ = invert(comfy, ck.model, image_latent(ck, size=SIZE), steps=2)
    styled = node(comfy, "AtelierStyleAligned")
    schema = {i.id: i.default for i in styled.define_schema().inputs if i.id != "model" and not i.optional}
    model = image_prompt(comfy, styled.execute(ck.model, reference=trajectory, **schema).result[0],
                         base_adapter, vision, weight=1.0)
    seen = []
    original = ipa.ImagePromptControl.attend

    def recording(self, next_attention, q, k, v, call, mask=None):
        out = original(self, next_attention, q, k, v, call, mask)
        layout = call.layout(q.shape[0])
        text = next_attention(q, k, v, call, mask)
        seen.append((ipa.inserted_reference(call), layout.rows,
                     all(torch.equal(out[r], text[r]) for r in layout.reference_rows())))
        return out
    monkeypatch.setattr(ipa.ImagePromptControl, "attend", recording)
    out = sample(comfy, model, batch=2)
    assert out.shape[0] == 2  # the reference row is stripped from the output
    assert seen and all(marked and rows == 3 and untouched for marked, rows, untouched in seen)
