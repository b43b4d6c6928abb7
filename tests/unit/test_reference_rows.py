"""Reference-image mode: the reference row is put first in every chunk of a model call with its own
conditioning, gets no ControlNet residual, and is removed from what the caller gets back."""
import pytest
import torch

from tests.pack import pack_module
from tests.tolerance import assert_exact

reference = pack_module("inversion.reference")
rows = pack_module("attention.core.rows")
trajectory_module = pack_module("inversion.trajectory")
errors = pack_module("attention.core.errors")


def test_insert_then_strip_gives_back_the_rows():
    x = torch.arange(12.0).reshape(6, 2)  # 3 chunks of 2 rows
    ref = torch.tensor([[-1.0, -1.0], [-2.0, -2.0], [-3.0, -3.0]])
    joined = rows.insert_rows(x, 3, ref)
    assert joined.shape == (9, 2)
    for c in range(3):
        assert_exact(joined[c * 3], ref[c], f"chunk {c}'s reference row")
        assert_exact(joined[c * 3 + 1: c * 3 + 3], x[c * 2: c * 2 + 2], f"chunk {c}'s rows")
    assert_exact(rows.strip_rows(joined, 3), x, "stripped rows")


def test_context_lengths_are_matched_by_repeating_whole_sequences():
    gen = torch.randn(4, 77, 8)  # 2 chunks of 2 rows
    refs = [torch.randn(1, 154, 8), torch.randn(1, 77, 8)]
    joined = reference.insert_context(gen, refs)
    assert joined.shape == (6, 154, 8)
    assert_exact(joined[0], refs[0][0], "the first reference context")
    assert_exact(joined[3], torch.cat([refs[1][0]] * 2), "the second reference context, repeated")
    assert_exact(joined[1], torch.cat([gen[0]] * 2), "a generated row's context, repeated")


def test_controlnet_residuals_are_zero_for_the_reference_row_and_lists_are_new():
    residual = torch.ones(4, 3, 2, 2)
    control = {"input": [residual, None], "middle": [residual * 2], "output": []}
    joined = reference.insert_control(control, chunks=2, batch=4)
    assert joined["input"] is not control["input"]
    assert joined["input"][1] is None and joined["output"] == []
    got = joined["middle"][0]
    assert got.shape == (6, 3, 2, 2)
    assert torch.count_nonzero(got[[0, 3]]) == 0
    assert_exact(got[[1, 2, 4, 5]], residual * 2, "the generated rows' residuals")


def make_trajectory(c, h, w):
    sigmas = torch.tensor([3.0, 1.0, 0.0])
    latents = torch.stack([torch.full((1, c, h, w), float(i + 1)) for i in range(3)])
    conds = {0: trajectory_module.RowConds(torch.full((1, 5, 8), 7.0), None, {"y": torch.full((1, 6), 7.0)}),
             1: trajectory_module.RowConds(torch.full((1, 10, 8), -7.0), None, {"y": torch.full((1, 6), -7.0)})}
    return trajectory_module.Trajectory(latents, sigmas, conds, "SDXL")


@pytest.mark.parametrize("cond_or_uncond", [[1, 0], [0], [1]])
def test_wrapper_feeds_the_model_reference_rows_and_returns_only_the_callers(cond_or_uncond):
    traj = make_trajectory(4, 2, 2)
    wrapper = reference.ReferenceRows(traj)
    chunks, rows = len(cond_or_uncond), 2
    n = chunks * rows
    x = torch.randn(n, 4, 2, 2)
    t = torch.full((n,), 1.0)
    context = torch.randn(n, 5, 8)
    y = torch.randn(n, 6)
    control = {"input": [torch.ones(n, 4, 2, 2)], "middle": [], "output": []}
    seen = {}

    def executor(x_, t_, c_concat, c_crossattn, control_, transformer_options, **kwargs):
        seen.update(x=x_, t=t_, context=c_crossattn, control=control_, y=kwargs["y"])
        return x_ * 10
    out = wrapper(executor, x, t, None, context, control, {"cond_or_uncond": cond_or_uncond}, y=y)
    assert_exact(out, x * 10, "the caller's rows of the output")
    for c, kind in enumerate(cond_or_uncond):
        r = c * (rows + 1)
        assert_exact(seen["x"][r], torch.full((4, 2, 2), 2.0), "the reference row's latent (stored at sigma 1)")
        assert float(seen["t"][r]) == 1.0
        sign = 1.0 if kind == 0 else -1.0
        assert torch.all(seen["context"][r] == 7.0 * sign)
        assert torch.all(seen["y"][r] == 7.0 * sign)
        assert torch.count_nonzero(seen["control"]["input"][0][r]) == 0
        assert_exact(seen["x"][r + 1: r + 3], x[c * rows: (c + 1) * rows], "the caller's latents")
    assert seen["context"].shape[1] == (10 if 1 in cond_or_uncond else 5)


def test_wrapper_uses_the_cond_rows_when_the_inversion_ran_no_uncond():
    traj = make_trajectory(4, 2, 2)
    traj = trajectory_module.Trajectory(traj.latents, traj.sigmas, {0: traj.conds[0]}, "SDXL")
    seen = {}

    def executor(x_, t_, c_concat, c_crossattn, control_, transformer_options, **kwargs):
        seen["context"] = c_crossattn
        return x_
    reference.ReferenceRows(traj)(executor, torch.zeros(2, 4, 2, 2), torch.ones(2), None, torch.zeros(2, 5, 8),
                                  None, {"cond_or_uncond": [1]})
    assert torch.all(seen["context"][0] == 7.0)


def test_a_generated_latent_of_another_size_is_refused_naming_both_sizes():
    traj = make_trajectory(4, 8, 8)
    with pytest.raises(errors.AtelierError) as info:
        reference.check_latent_size(traj, torch.zeros(2, 4, 16, 8), "AtelierStyleAligned")
    message = str(info.value)
    assert "64x64" in message and "64x128" in message and "'reference'" in message
    reference.check_latent_size(traj, torch.zeros(3, 4, 8, 8), "AtelierStyleAligned")
