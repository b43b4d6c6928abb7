"""GroupNorm sharing: each generated row is normalised over itself joined with the reference."""
import pytest
import torch

from tests.pack import pack_module
from tests.tolerance import ONE_CALL, assert_close, assert_exact

gn = pack_module("attention.group_norm")
rows = pack_module("attention.core.rows")


def module_forward(norm):
    """The fast path: the module's own forward with the module at hand (what the shared norm passes)."""
    return gn.ModuleNorm(norm, norm.forward)


@pytest.mark.parametrize("as_module", [False, True])
@pytest.mark.parametrize("affine", [True, False])
def test_generated_rows_use_joint_statistics(as_module, affine):
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(4, 8, eps=1e-6, affine=affine)
    if affine:
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    x = torch.randn(6, 8, 5, 7, dtype=torch.float64) * 3 + 1.5
    norm = norm.double()
    layout = rows.chunk_layout(6, [1, 0])
    got = gn.shared_group_norm(module_forward(norm) if as_module else norm, x, layout)
    for c in range(2):
        ref = x[c * 3]
        assert_exact(got[c * 3], norm(ref[None])[0], f"reference row {c * 3}")  # it is normalised alone
        for i in (1, 2):
            row = x[c * 3 + i]
            g = row.reshape(4, 2, 5, 7)
            r = ref.reshape(4, 2, 5, 7)
            joint = torch.cat([g, r], dim=-1)
            mean = joint.mean(dim=(1, 2, 3), keepdim=True)
            var = joint.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
            want = ((g - mean) / torch.sqrt(var + 1e-6)).reshape(8, 5, 7)
            if affine:
                want = want * norm.weight[:, None, None] + norm.bias[:, None, None]
            assert_close(got[c * 3 + i], want, ulps=ONE_CALL, what=f"row {c * 3 + i} vs joint statistics")


def test_sharing_copy_shares_parameters_and_leaves_original_alone():
    norm = torch.nn.GroupNorm(2, 4)
    shared = gn.sharing_copy(norm)
    assert shared.weight is norm.weight
    assert type(norm) is torch.nn.GroupNorm
    x = torch.randn(2, 4, 3, 3)
    assert_exact(shared(x), norm(x), "outside a model evaluation")  # plain GroupNorm


def test_fast_path_keeps_half_precision_and_matches_float32():
    torch.manual_seed(1)
    norm = torch.nn.GroupNorm(2, 4, eps=1e-6)
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(4, 4, 6, 6) * 40  # group variances beyond fp16 range if squared in fp16
    layout = rows.chunk_layout(4, [1, 0])
    want = gn.shared_group_norm(norm, x, layout)
    half = norm.half()
    got = gn.shared_group_norm(module_forward(half), x.half(), layout)
    assert got.dtype == torch.float16
    assert_close(got, want, ulps=ONE_CALL, dtype=torch.float16, what="half precision vs float32")


def test_weights_patched_at_call_time_run_the_module_itself():
    """A ComfyUI weight patch (weight_function) runs in the module's forward: not bypassed."""
    torch.manual_seed(2)
    norm = torch.nn.GroupNorm(2, 4)
    calls = []
    norm.weight_function = [lambda w: w]
    forward = lambda x: (calls.append(x.shape[0]), norm(x))[1]  # noqa: E731
    x = torch.randn(4, 4, 3, 3)
    gn.shared_group_norm(gn.ModuleNorm(norm, forward), x, rows.chunk_layout(4, [0]))
    assert calls  # the module's forward ran


def test_cast_weights_are_cast_like_comfyui_does():
    torch.manual_seed(3)
    norm = torch.nn.GroupNorm(2, 4)
    torch.nn.init.normal_(norm.weight)
    norm.comfy_cast_weights = True
    x = torch.randn(4, 4, 3, 3, dtype=torch.float64)
    layout = rows.chunk_layout(4, [0])
    want = gn.shared_group_norm(norm.double(), x, layout)
    norm.float()
    casting = lambda t: torch.nn.functional.group_norm(  # noqa: E731  (ComfyUI's cast-weights forward)
        t, norm.num_groups, norm.weight.to(t), norm.bias.to(t), norm.eps)
    got = gn.shared_group_norm(gn.ModuleNorm(norm, casting), x, layout)
    assert got.dtype == torch.float64
    assert_close(got, want, ulps=ONE_CALL, what="cast weights vs float64 weights")
