"""Regional attention maths equals a straightforward per-row, per-head, per-token formula."""
import math

import pytest
import torch

from tests.pack import pack_module
from tests.tolerance import ONE_CALL, OPS, assert_changed, assert_close, assert_exact

regional = pack_module("attention.regional")
region_masks = pack_module("attention.region_masks")
curves = pack_module("attention.weight_curves")

HEADS, DIM, CTX = 2, 4, 6


def softmax_attention(q, k, v):
    """Per head: softmax(q k^T / sqrt(d)) v, written out."""
    out = []
    for h in range(HEADS):
        sl = slice(h * DIM, (h + 1) * DIM)
        out.append((q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(DIM)).softmax(-1) @ v[..., sl])
    return torch.cat(out, dim=-1)


def supersampled_box(box, h, w, factor=40):
    """Box mask by brute force: rasterise at factor x resolution (pixel centres) and average."""
    x, y, bw, bh = box
    ys = (torch.arange(h * factor, dtype=torch.float64) + 0.5) / (h * factor)
    xs = (torch.arange(w * factor, dtype=torch.float64) + 0.5) / (w * factor)
    inside = ((ys >= y) & (ys < y + bh))[:, None] & ((xs >= x) & (xs < x + bw))[None, :]
    return inside.double().reshape(h, factor, w, factor).mean(dim=(1, 3))


def make_region(box, weight, seed, tokens=5):
    gen = torch.Generator().manual_seed(seed)
    return regional.Region(cond=torch.randn(1, tokens, CTX, generator=gen, dtype=torch.float64),
                           curve=curves.WeightCurve("constant", weight), box=box)


def projections(seed=7):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(CTX, HEADS * DIM, generator=gen, dtype=torch.float64),
            torch.randn(CTX, HEADS * DIM, generator=gen, dtype=torch.float64))


def blend(chain_out, q, k, v, rows, regions_and_weights, grid):
    to_k, to_v = projections()
    return regional.regional_blend(chain_out, q, k, v, rows, regions_and_weights, grid,
                                   lambda r: (r.cond @ to_k, r.cond @ to_v), softmax_attention)


def reference(chain_out, q, k, v, rows, regions_and_weights, grid):
    """O[r, n] = chain[r, n] + sum_i M_i[n] c_i (A(q[r, n], L_i) - A(q[r, n], D_r)), loop by loop."""
    to_k, to_v = projections()
    h, w = grid
    out = chain_out.clone()
    masks = [supersampled_box(region.box, h, w).flatten() for region, _ in regions_and_weights]
    for r in rows:
        for n in range(h * w):
            total = torch.zeros(HEADS * DIM, dtype=torch.float64)
            for (region, c), mask in zip(regions_and_weights, masks):
                m = float(mask[n])
                if m == 0.0 or c == 0.0:
                    continue
                local = softmax_attention(q[r, n:n + 1], region.cond[0] @ to_k, region.cond[0] @ to_v)[0]
                full = softmax_attention(q[r, n:n + 1], k[r], v[r])[0]
                total += m * c * (local - full)
            out[r, n] += total
    return out


def qkv(batch, h, w, tokens=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, h * w, HEADS * DIM, generator=gen, dtype=torch.float64)
    k = torch.randn(batch, tokens, HEADS * DIM, generator=gen, dtype=torch.float64)
    v = torch.randn(batch, tokens, HEADS * DIM, generator=gen, dtype=torch.float64)
    return q, k, v


@pytest.mark.parametrize("boxes,weights", [
    ([(0.1, 0.2, 0.5, 0.4)], [1.0]),
    ([(0.0, 0.0, 0.55, 1.0), (0.4, 0.3, 0.6, 0.7)], [0.7, 1.3]),  # overlapping, fractional edges
    ([(0.0, 0.0, 1.0, 1.0), (0.25, 0.25, 0.5, 0.5), (0.6, 0.0, 0.3, 0.3)], [0.5, -0.4, 2.0]),
])
def test_blend_matches_per_token_formula(boxes, weights):
    h, w = 6, 8
    q, k, v = qkv(4, h, w)
    chain_out = softmax_attention(q, k, v)
    regions = [(make_region(b, c, i), c) for i, (b, c) in enumerate(zip(boxes, weights))]
    rows = [2, 3]  # layout [1, 0]: uncond chunk first
    got = blend(chain_out, q, k, v, rows, regions, (h, w))
    assert_close(got, reference(chain_out, q, k, v, rows, regions, (h, w)), ulps=ONE_CALL, what="blend vs the formula")


def test_box_coverage_is_the_covered_area_of_each_cell():
    for box, (h, w) in [((0.1, 0.2, 0.5, 0.4), (4, 8)), ((0.33, 0.0, 0.34, 1.0), (7, 5)), ((0, 0, 1, 1), (3, 3))]:
        coverage = region_masks.box_coverage(box, h, w)  # these boxes' edges fall on the 40x supersampling grid:
        assert_close(coverage, supersampled_box(box, h, w), ulps=OPS, dtype=coverage.dtype,  # exact there
                     what=f"coverage of {box} on {h}x{w}")


def exact_area_mean(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The mean of ``mask`` over each of (h, w) equal cells, brute force: every pixel cut into
    lcm / size sub-pixels, so each cell holds whole sub-pixels, then averaged (float64)."""
    big_h, big_w = math.lcm(mask.shape[0], h), math.lcm(mask.shape[1], w)
    fine = mask.double().repeat_interleave(big_h // mask.shape[0], 0).repeat_interleave(big_w // mask.shape[1], 1)
    return fine.reshape(h, big_h // h, w, big_w // w).mean(dim=(1, 3))


@pytest.mark.parametrize("mask_size, grid", [((30, 50), (8, 8)), ((64, 48), (7, 5)), ((5, 3), (8, 8)),
                                             ((100, 100), (64, 64)), ((64, 64), (8, 8))])
def test_a_mask_of_any_size_is_averaged_exactly_over_each_cell(mask_size, grid):
    """Issue 27: area interpolation is adaptive pooling, which gives a 30x50 mask on an 8x8 layer cell
    weights up to 0.10 off the true area mean; the mean must be exact for any two sizes."""
    mask = (torch.rand(*mask_size, generator=torch.Generator().manual_seed(sum(mask_size))) > 0.5).float()
    got, want = region_masks.resize_mask(mask, *grid).double(), exact_area_mean(mask, *grid)
    # float32 result of a float64 mean of values in [0, 1]: a few float32 ulps of 1
    assert_close(got, want, ulps=OPS, dtype=torch.float32, magnitude_of=1.0, what=f"{mask_size} mask on {grid}")


def test_adaptive_pooling_was_off_by_up_to_a_tenth_where_cells_cut_pixels():
    """The case the issue measured (the test above fails on the old resize)."""
    mask = (torch.rand(30, 50, generator=torch.Generator().manual_seed(80)) > 0.5).float()
    pooled = torch.nn.functional.interpolate(mask[None, None], size=(8, 8), mode="area")[0, 0].double()
    assert (pooled - exact_area_mean(mask, 8, 8)).abs().max() > 0.02


def test_mask_is_area_averaged_to_the_layer():
    mask = torch.zeros(64, 64)
    mask[:32, 16:48] = 1.0
    got = region_masks.resize_mask(mask, 4, 4)
    want = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.float32)
    assert_exact(got, want, "area-averaged mask")


def test_weight_zero_is_bit_exact_identity():
    q, k, v = qkv(2, 4, 4)
    chain_out = softmax_attention(q, k, v)
    out = blend(chain_out, q, k, v, [0, 1], [(make_region((0.0, 0.0, 1.0, 1.0), 0.0, 1), 0.0)], (4, 4))
    assert_exact(out, chain_out, "weight 0")


def test_tokens_outside_every_region_and_uncond_rows_are_unchanged():
    h, w = 4, 8
    q, k, v = qkv(4, h, w)
    chain_out = softmax_attention(q, k, v) + 0.25  # any chain output, e.g. another pack's replace
    box = (0.5, 0.5, 0.5, 0.5)
    out = blend(chain_out, q, k, v, [2, 3], [(make_region(box, 1.0, 3), 1.0)], (h, w))
    inside = supersampled_box(box, h, w).flatten() > 0
    assert_exact(out[:2], chain_out[:2], "uncond rows")
    assert_exact(out[2:, ~inside], chain_out[2:, ~inside], "tokens outside the region")
    assert_changed(out[2:, inside], chain_out[2:, inside], what="tokens inside the region")


def test_foreign_chain_contribution_is_kept_inside_regions():
    """The regional delta does not depend on what the rest of the chain returned."""
    q, k, v = qkv(1, 4, 4)
    plain = softmax_attention(q, k, v)
    foreign = plain + 0.1 * torch.sin(q)  # e.g. an image-prompt adapter's extra attention
    regions = [(make_region((0.0, 0.0, 0.5, 1.0), 1.0, 4), 1.0)]
    delta_plain = blend(plain, q, k, v, [0], regions, (4, 4)) - plain
    delta_foreign = blend(foreign, q, k, v, [0], regions, (4, 4)) - foreign
    assert_close(delta_plain, delta_foreign, ulps=OPS, magnitude_of=foreign, what="the regional delta")


def test_weight_one_full_box_replaces_the_full_prompt():
    q, k, v = qkv(1, 3, 3)
    region = make_region((0.0, 0.0, 1.0, 1.0), 1.0, 5)
    out = blend(softmax_attention(q, k, v), q, k, v, [0], [(region, 1.0)], (3, 3))
    to_k, to_v = projections()
    assert_close(out, softmax_attention(q, region.cond @ to_k, region.cond @ to_v), ulps=ONE_CALL,
                 what="weight 1 over the whole image")


@pytest.mark.parametrize("kind,start,end,switch,values,expect", [
    ("constant", 0.8, 0.0, 0.5, (), lambda p: 0.8),
    ("linear", 1.0, 0.2, 0.5, (), lambda p: 1.0 - 0.8 * p),
    ("cosine", 1.5, 0.5, 0.5, (), lambda p: 0.5 + 0.5 * (1 + math.cos(math.pi * p))),
    ("step", 1.0, 0.25, 0.3, (), lambda p: 1.0 if p < 0.3 else 0.25),
    ("list", 0, 0, 0.5, (1.0, 0.5, 0.0, -1.0), lambda p: (1.0, 0.5, 0.0, -1.0)[min(int(p * 4 + 0.01), 3)]),
])
def test_curves_follow_their_formula(kind, start, end, switch, values, expect):
    curve = curves.make_curve("AtelierRegion", kind, start, end, switch, values)
    for p in [0.0, 0.1, 0.25, 0.3, 0.49, 0.5, 0.75, 0.99, 1.0]:
        assert_close(curve.at(p), expect(p), ulps=OPS, what=f"{kind} at {p}")


def test_list_curve_gives_value_k_to_step_k_of_a_normal_schedule():
    curve = curves.make_curve("AtelierRegion", "list", 0, values="3, 2, 1, 0, -1")
    steps = 5  # normal scheduler: progress of step i is i / (steps - 1)
    assert [curve.at(i / (steps - 1)) for i in range(steps)] == [3.0, 2.0, 1.0, 0.0, -1.0]


def test_list_curve_puts_steps_just_below_a_bin_edge_in_the_next_bin():
    curve = curves.make_curve("AtelierRegion", "list", 0, values="0, 1, 2, 3")
    assert [curve.at(p) for p in (0.2499, 0.25, 0.4999, 0.745, 0.7499)] == [1.0, 1.0, 2.0, 2.0, 3.0]


def test_bad_curve_inputs_name_the_input():
    with pytest.raises(ValueError, match="weights.*'x' is not a number"):
        curves.make_curve("AtelierRegion", "list", 1.0, values="1, x")
    with pytest.raises(ValueError, match="no weights"):
        curves.make_curve("AtelierRegion", "list", 1.0, values=" , ")
    with pytest.raises(ValueError, match="'wobbly' is not a weight curve"):
        curves.make_curve("AtelierRegion", "wobbly", 1.0)


class LinearTimestepSampling:
    """A model_sampling whose timestep is 100 * sigma (sigma in [0.01, 10]) and whose percent scale is
    linear in it (percent_to_sigma as ComfyUI's discrete models define it)."""
    sigma_max, sigma_min = torch.tensor(10.0), torch.tensor(0.01)

    def timestep(self, sigma):
        return sigma * 100.0

    def percent_to_sigma(self, percent):
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return 10.0 - percent * (10.0 - 0.01)


def run_info(sigma, sample_sigmas):
    calls = pack_module("attention.core.calls")
    return calls.RunInfo(model_sampling=LinearTimestepSampling(), sigma=sigma, layer_keys=(),
                            sample_sigmas=None if sample_sigmas is None else torch.tensor(sample_sigmas))


def test_step_progress_snaps_every_evaluation_to_its_step():
    sigmas = [10.0, 7.0, 4.0, 1.0, 0.0]
    progress = lambda s: (10.0 - s) / (10.0 - 0.01)
    for sigma, step in [(10.0, 10.0), (7.0, 7.0), (5.5, 7.0), (4.0000001, 4.0), (1.0, 1.0), (0.3, 1.0)]:
        assert_close(curves.step_progress(run_info(sigma, sigmas)), progress(step), ulps=OPS, dtype=torch.float32,
                     what=f"progress at sigma {sigma}")  # from float32 sigmas


def test_step_progress_is_absolute_for_partial_runs_and_without_sample_sigmas():
    tail = [4.0, 1.0, 0.0]  # denoise < 1 or the second half of split sigmas
    assert_close(curves.step_progress(run_info(4.0, tail)), (10.0 - 4.0) / 9.99, ulps=OPS, dtype=torch.float32,
                 what="progress of a partial run")  # from float32 sigmas
    assert_close(curves.step_progress(run_info(2.5, None)), (10.0 - 2.5) / 9.99, ulps=OPS, dtype=torch.float32,
                 what="progress without sample sigmas")


@pytest.mark.parametrize("tokens", [(5, 10), (7, 11)], ids=["lengths stacked to their lcm", "each region alone"])
def test_local_prompts_of_different_lengths(tokens):
    """Regions attend in one call with their prompts repeated whole to a common length (10 = lcm of 5
    and 10), or one call each where the lcm would exceed 4x the longest (77 for 7 and 11): same maths."""
    h, w = 4, 6
    q, k, v = qkv(4, h, w)
    chain_out = softmax_attention(q, k, v)
    regions = [(make_region((0.0, 0.0, 0.6, 1.0), 1.0, 8, tokens=tokens[0]), 1.0),
               (make_region((0.3, 0.2, 0.7, 0.8), 0.6, 9, tokens=tokens[1]), 0.6)]
    got = blend(chain_out, q, k, v, [2, 3], regions, (h, w))
    assert_close(got, reference(chain_out, q, k, v, [2, 3], regions, (h, w)), ulps=ONE_CALL,
                 what="blend vs the formula")


def test_full_prompt_attention_passed_in_is_used_as_is():
    """Where the chain below is ComfyUI's attention, its cond rows are A(Q, D): passing them as ``full``
    gives the blend computed from scratch."""
    h, w = 4, 4
    q, k, v = qkv(4, h, w)
    chain_out = softmax_attention(q, k, v)
    regions = [(make_region((0.1, 0.1, 0.5, 0.5), 1.0, 3), 1.0)]
    to_k, to_v = projections()
    reused = regional.regional_blend(chain_out, q, k, v, [2, 3], regions, (h, w),
                                     lambda r: (r.cond @ to_k, r.cond @ to_v), softmax_attention,
                                     full=chain_out[2:])
    assert_close(reused, blend(chain_out, q, k, v, [2, 3], regions, (h, w)), ulps=ONE_CALL,
                 what="chain rows given vs recomputed")
