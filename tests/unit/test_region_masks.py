"""Where a region is on a layer's (frames, h, w) grid: moving boxes and mask batches over the frames,
against brute-force statements of the same (supersampled boxes, sub-frame averages)."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from tests.pack import pack_module
from tests.tolerance import OPS, assert_close, assert_exact

masks = pack_module("attention.region_masks")
regional = pack_module("attention.regional")
curves = pack_module("attention.weight_curves")

SUPERSAMPLING = 2 / 60  # the supersampled reference resolves 1/60 of a cell per side: two edges per axis


def supersampled(box, h, w, factor=60):
    """Cell coverage of a box by counting sub-cell centres (factor x factor per cell)."""
    x, y, bw, bh = box
    ys = (torch.arange(h * factor, dtype=torch.float64) + 0.5) / (h * factor)
    xs = (torch.arange(w * factor, dtype=torch.float64) + 0.5) / (w * factor)
    inside = ((ys >= y) & (ys < y + bh))[:, None] & ((xs >= x) & (xs < x + bw))[None, :]
    return inside.double().reshape(h, factor, w, factor).mean(dim=(1, 3))


def region(**kw):
    return regional.Region(cond=torch.zeros(1, 3, 4), curve=curves.WeightCurve(), **kw)


boxes = st.tuples(st.floats(0.0, 0.5), st.floats(0.0, 0.5), st.floats(0.1, 0.5), st.floats(0.1, 0.5))


@given(start=boxes, end=boxes, frames=st.integers(2, 9))
@settings(max_examples=25, deadline=None)
def test_a_moving_box_is_the_straight_line_between_its_keyframes(start, end, frames):
    path = ((0.0, start), (1.0, end))
    cells = masks.path_coverage(path, frames, 6, 8)
    for j in range(frames):
        t = j / (frames - 1)
        box = tuple(a + t * (b - a) for a, b in zip(start, end))
        # the sub-cell count resolves 1/60 of a cell per side: a box edge between sub-cell centres is off
        # by up to 1/60 of the cell's area per edge crossing it (two at most per axis)
        difference = float((cells[j] - supersampled(box, 6, 8)).abs().max())
        assert difference <= SUPERSAMPLING, (j, difference)


def test_keyframes_in_between_and_outside_hold_their_boxes():
    a, b, c = (0.0, 0.0, 0.2, 0.2), (0.4, 0.4, 0.2, 0.2), (0.8, 0.0, 0.2, 0.2)
    path = ((0.25, a), (0.5, b), (1.0, c))
    assert masks.box_at(path, 0.0) == a and masks.box_at(path, 0.25) == a  # held before the first keyframe
    assert masks.box_at(path, 0.5) == b and masks.box_at(path, 1.0) == c
    assert_close(torch.tensor(masks.box_at(path, 0.75)), torch.tensor((0.6, 0.2, 0.2, 0.2)), ulps=OPS,
                 what="half way between the last two keyframes")


def test_a_still_reads_the_first_keyframe_and_a_static_box_is_the_same_on_every_frame():
    box = (0.1, 0.2, 0.5, 0.4)
    still = region(box=box).grid(4, 4)
    assert_exact(still, masks.box_coverage(box, 4, 4).flatten().float(), "a still")
    moving = region(box=box, keyframes=((0.0, box), (1.0, (0.5, 0.5, 0.5, 0.5))))
    assert_exact(moving.grid(4, 4), still, "a moving box on a still")
    assert_exact(moving.grid(1, 4, 4), still, "a moving box on one frame")
    static = region(box=box).grid(5, 4, 4)
    assert_exact(static, still.repeat(5), "a static box over 5 frames")  # frame-major: every frame the same box


def sub_frame_mean(stack: torch.Tensor, frames: int) -> torch.Tensor:
    """Each of ``frames`` equal stretches of a clip of len(stack) mask frames, averaged by brute force:
    every mask frame cut into lcm / F sub-frames."""
    total = math.lcm(stack.shape[0], frames)
    fine = stack.double().repeat_interleave(total // stack.shape[0], 0)
    return fine.reshape(frames, total // frames, *stack.shape[1:]).mean(1)


@pytest.mark.parametrize("mask_frames, frames", [(9, 3), (5, 3), (2, 5), (4, 4), (1, 3), (7, 1)])
def test_a_mask_batch_is_averaged_over_each_latent_frames_stretch_of_the_clip(mask_frames, frames):
    stack = (torch.rand(mask_frames, 16, 16, generator=torch.Generator().manual_seed(mask_frames)) > 0.5).float()
    got = masks.masks_over_frames(stack, frames, 4, 4).double()
    want = torch.stack([masks.resize_mask(frame.float(), 4, 4).double() for frame in sub_frame_mean(stack, frames)])
    assert_close(got, want, ulps=OPS, dtype=torch.float32, magnitude_of=1.0, what="mask frames over latent frames")


def test_a_single_mask_on_a_still_is_the_image_mask_as_before():
    mask = torch.zeros(64, 64)
    mask[:32, 16:48] = 1.0
    assert_exact(region(mask=mask).grid(4, 4), masks.resize_mask(mask, 4, 4).flatten(), "an image mask")
    assert_exact(region(mask=mask[None]).grid(4, 4), region(mask=mask).grid(4, 4), "a batch of one mask")
