"""IP-Adapter image projections equal the published architecture, written out step by step, and files
in the standard key layout are read as the right kind (base / plus, SD1.5 / SDXL) or refused clearly."""
import math

import pytest
import torch

from tests.harness import paths  # noqa: F401  (puts scripts/ on sys.path for tiny_models)
from tests.pack import pack_module
from tests.tolerance import LAYERS, ONE_CALL, assert_close
from tiny_models.ip_adapter import adapter_state_dict

projection = pack_module("attention.ip_adapter_projection")
adapter_file = pack_module("attention.ip_adapter_file")
errors = pack_module("attention.core.errors")


def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def perceiver_resampler(sd, x, heads):
    """The Resampler written out from the paper's description, one head at a time."""
    p = lambda k: sd[f"image_proj.{k}"].double()
    x = x @ p("proj_in.weight").T + p("proj_in.bias")
    latents = p("latents").expand(x.shape[0], -1, -1)
    depth = len([k for k in sd if k.endswith(".0.to_q.weight")])
    for i in range(depth):
        a = f"layers.{i}.0"
        xn = layer_norm(x, p(f"{a}.norm1.weight"), p(f"{a}.norm1.bias"))
        ln = layer_norm(latents, p(f"{a}.norm2.weight"), p(f"{a}.norm2.bias"))
        q = ln @ p(f"{a}.to_q.weight").T
        kv = torch.cat([xn, ln], dim=1) @ p(f"{a}.to_kv.weight").T
        k, v = kv[..., :kv.shape[-1] // 2], kv[..., kv.shape[-1] // 2:]
        d = q.shape[-1] // heads
        outs = []
        for h in range(heads):
            s = slice(h * d, (h + 1) * d)
            scale = 1 / math.sqrt(math.sqrt(d))  # applied to q and k separately, as published
            w = ((q[..., s] * scale) @ (k[..., s] * scale).transpose(-1, -2)).softmax(-1)
            outs.append(w @ v[..., s])
        latents = latents + torch.cat(outs, -1) @ p(f"{a}.to_out.weight").T
        f = f"layers.{i}.1"
        hidden = layer_norm(latents, p(f"{f}.0.weight"), p(f"{f}.0.bias")) @ p(f"{f}.1.weight").T
        latents = latents + gelu(hidden) @ p(f"{f}.3.weight").T
    out = latents @ p("proj_out.weight").T + p("proj_out.bias")
    return layer_norm(out, p("norm_out.weight"), p("norm_out.bias"))


def randomise_norms(sd, seed=5):
    """Non-trivial LayerNorm parameters, so the formula checks them too."""
    g = torch.Generator().manual_seed(seed)
    return {k: (v + 0.1 * torch.randn(v.shape, generator=g).to(v.dtype)) if "norm" in k or k.endswith(".1.0.weight")
            else v for k, v in sd.items()}


def test_base_projection_is_layer_norm_of_reshaped_linear():
    sd = randomise_norms(adapter_state_dict("base", 64, [32, 32], seed=1, embeds_dim=48, dtype=torch.float64))
    adapter = adapter_file.read_adapter(sd, "a.safetensors", "Node")
    e = torch.randn(3, 48, dtype=torch.float64)
    got = adapter.projection.double()(e)
    flat = e @ sd["image_proj.proj.weight"].T + sd["image_proj.proj.bias"]
    want = layer_norm(flat.reshape(3, 4, 64), sd["image_proj.norm.weight"], sd["image_proj.norm.bias"])
    assert_close(got, want, ulps=ONE_CALL, dtype=torch.float32, what="base projection")  # held in float32
    assert adapter.variant == "base" and adapter.tokens == 4 and adapter.feature == "image_embeds"


def test_plus_projection_is_the_perceiver_resampler():
    sd = randomise_norms(adapter_state_dict("plus", 96, [32], seed=2, hidden_dim=80, resampler_width=128,
                                            depth=2, dtype=torch.float64))
    adapter = adapter_file.read_adapter(sd, "p.safetensors", "Node")
    x = torch.randn(2, 9, 80, dtype=torch.float64)
    got = adapter.projection.double()(x)
    want = perceiver_resampler(sd, x, heads=128 // 64)
    assert_close(got, want, ulps=LAYERS, dtype=torch.float32, what="perceiver resampler")  # held in float32
    assert adapter.variant == "plus" and adapter.tokens == 16 and adapter.feature == "penultimate_hidden_states"
    assert adapter.feature_dim == 80


@pytest.mark.parametrize("variant,context,family", [("base", 768, "SD1.5"), ("plus", 768, "SD1.5"),
                                                    ("base", 2048, "SDXL"), ("plus", 2048, "SDXL")])
def test_standard_files_are_detected(variant, context, family):
    sd = adapter_state_dict(variant, context, [320, 640, 1280], resampler_width=128, depth=1)
    adapter = adapter_file.read_adapter(sd, "x.safetensors", "Node")
    assert (adapter.variant, adapter.family, adapter.context_dim, adapter.layer_count) == (variant, family, context, 3)
    assert [w.shape[0] for w in adapter.to_k] == [320, 640, 1280]


def test_layers_are_taken_in_numeric_order_not_text_order():
    sd = adapter_state_dict("base", 64, [8 * (i + 1) for i in range(12)], embeds_dim=16)
    adapter = adapter_file.read_adapter(sd, "x.safetensors", "Node")
    assert [w.shape[0] for w in adapter.to_k] == [8 * (i + 1) for i in range(12)]  # 1, 3, ..., 23 (not 1, 11, 13, ...)


def _refusal(sd) -> str:
    with pytest.raises(errors.AtelierError) as e:
        adapter_file.read_adapter(sd, "odd.safetensors", "AtelierIPAdapterLoader")
    message = str(e.value)
    assert message.startswith("AtelierIPAdapterLoader: input 'ipadapter_name': 'odd.safetensors'")
    return message


def test_faceid_lora_keys_are_refused_by_name():
    sd = adapter_state_dict("base", 768, [320], embeds_dim=16)
    sd["ip_adapter.1.to_k_lora.down.weight"] = torch.zeros(128, 320)
    assert "FaceID" in _refusal(sd)


def test_mlp_projection_is_refused_by_name():
    sd = adapter_state_dict("base", 768, [320], embeds_dim=16)
    for k in ("proj.weight", "proj.bias", "norm.weight", "norm.bias"):
        del sd[f"image_proj.{k}"]
    sd["image_proj.proj.0.weight"] = torch.zeros(1024, 512)
    sd["image_proj.proj.2.weight"] = torch.zeros(3072, 1024)
    assert "MLP projection" in _refusal(sd)


def test_a_checkpoint_is_not_an_ip_adapter():
    message = _refusal({"model.diffusion_model.out.0.weight": torch.zeros(4)})
    assert "no image_proj.* keys" in message and "model.diffusion_model.out.0.weight" in message


def test_key_without_value_projection_is_refused():
    sd = adapter_state_dict("base", 768, [320, 320], embeds_dim=16)
    del sd["ip_adapter.3.to_v_ip.weight"]
    assert "[3]" in _refusal(sd)


def test_only_safetensors_files_are_read(tmp_path):
    path = tmp_path / "adapter.bin"
    path.write_bytes(b"not read")
    with pytest.raises(errors.AtelierError, match="not a .safetensors file"):
        adapter_file.load_adapter(str(path), "adapter.bin", "AtelierIPAdapterLoader")


def test_adapter_is_shared_not_copied_by_deepcopy():
    import copy
    adapter = adapter_file.read_adapter(adapter_state_dict("base", 64, [8], embeds_dim=16), "a", "Node")
    assert copy.deepcopy(adapter) is adapter
