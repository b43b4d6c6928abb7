"""GroupNorm sharing: each generated row is normalised over itself joined with the reference."""
import torch

from tests.pack import pack_module

gn = pack_module("attention.group_norm")
rows = pack_module("attention.rows")


def test_generated_rows_use_joint_statistics():
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(4, 8, eps=1e-6)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(6, 8, 5, 7, dtype=torch.float64)
    norm = norm.double()
    layout = rows.chunk_layout(6, [1, 0])
    got = gn.shared_group_norm(norm, x, layout)
    for c in range(2):
        ref = x[c * 3]
        torch.testing.assert_close(got[c * 3], norm(ref[None])[0])
        for i in (1, 2):
            row = x[c * 3 + i]
            g = row.reshape(4, 2, 5, 7)
            r = ref.reshape(4, 2, 5, 7)
            joint = torch.cat([g, r], dim=-1)
            mean = joint.mean(dim=(1, 2, 3), keepdim=True)
            var = joint.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
            want = ((g - mean) / torch.sqrt(var + 1e-6)).reshape(8, 5, 7)
            want = want * norm.weight[:, None, None] + norm.bias[:, None, None]
            torch.testing.assert_close(got[c * 3 + i], want)


def test_sharing_copy_shares_parameters_and_leaves_original_alone():
    norm = torch.nn.GroupNorm(2, 4)
    shared = gn.sharing_copy(norm)
    assert shared.weight is norm.weight
    assert type(norm) is torch.nn.GroupNorm
    x = torch.randn(2, 4, 3, 3)
    assert torch.equal(shared(x), norm(x))  # outside a model evaluation: plain GroupNorm
