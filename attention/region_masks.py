"""Where a region is, on a layer's token grid: M_i of regional attention over space and time.

A layer's tokens lie on a grid of (frames, h, w) cells, frame-major and row-major within a frame (an
image is one frame). A region is either

- a box (x, y, width, height) in fractions of the image, origin top-left, that may move: keyframes
  [(at, box), ...] at frame fractions ``at`` in [0, 1] (0 = first frame, 1 = last), the box linear in
  between and held before the first and after the last; each cell gets the fraction of it the box covers;
- a MASK (H, W), or a batch of masks (F, H, W), one per frame spread evenly over the clip, stretched to
  the image: each cell gets the mask's exact mean over it, in space and in time (a latent frame takes the
  masks of the stretch of the clip it covers, partly covered ones by the part inside).

A one-frame grid reads the box at its first keyframe, or the mean of the masks: an image behaves as
before keyframes existed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def axis_coverage(start: float, length: float, cells: int) -> torch.Tensor:
    """Fraction of each of ``cells`` equal cells of [0, 1] that [start, start + length] covers."""
    edges = torch.linspace(0.0, 1.0, cells + 1, dtype=torch.float64)
    lo = torch.clamp(edges[:-1], min=start)
    hi = torch.clamp(edges[1:], max=start + length)
    return torch.clamp(hi - lo, min=0.0) * cells


def box_coverage(box: tuple, h: int, w: int) -> torch.Tensor:
    x, y, width, height = box
    return axis_coverage(y, height, h)[:, None] * axis_coverage(x, width, w)[None, :]


def area_weights(pixels: int, cells: int) -> torch.Tensor:
    """(cells, pixels): how much of each of ``cells`` equal cells of [0, pixels) pixel j covers, over the
    cell's length; row i of it averages a line of pixels exactly over cell i (partly covered pixels
    weighted by the part inside)."""
    edges = torch.linspace(0.0, float(pixels), cells + 1, dtype=torch.float64)
    start = torch.arange(pixels, dtype=torch.float64)
    lo, hi = edges[:-1, None], edges[1:, None]
    return (torch.minimum(hi, start + 1) - torch.maximum(lo, start)).clamp(min=0.0) / (hi - lo)


def resize_mask(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Area-average a mask to (h, w): a cell's value is the mean of the mask over it, exactly, for any
    two sizes (whole pixels per cell: area pooling; otherwise the pixels a cell cuts count by the part
    inside it)."""
    mask = mask.to(torch.float32)
    if tuple(mask.shape) == (h, w):
        return mask.clamp(0.0, 1.0)
    if mask.shape[-2] % h == 0 and mask.shape[-1] % w == 0:  # whole pixels per cell: area pooling is exact
        return F.interpolate(mask[None, None], size=(h, w), mode="area")[0, 0].clamp(0.0, 1.0)
    rows, columns = area_weights(mask.shape[-2], h), area_weights(mask.shape[-1], w)
    return (rows @ mask.double() @ columns.T).to(torch.float32).clamp(0.0, 1.0)


def frame_times(frames: int) -> list[float]:
    """The clip fraction of each of ``frames`` frames: 0 for the first, 1 for the last (0 for a still)."""
    return [0.0] * frames if frames < 2 else [j / (frames - 1) for j in range(frames)]


def box_at(keyframes: tuple, at: float) -> tuple:
    """The box of a path of keyframes ((at, (x, y, w, h)), ...) sorted by ``at``, at clip fraction ``at``:
    linear between the keyframes around it, the first before and the last after them."""
    if at <= keyframes[0][0]:
        return keyframes[0][1]
    for (t0, box0), (t1, box1) in zip(keyframes, keyframes[1:]):
        if at <= t1:
            share = 0.0 if t1 == t0 else (at - t0) / (t1 - t0)
            return tuple(a + share * (b - a) for a, b in zip(box0, box1))
    return keyframes[-1][1]


def path_coverage(keyframes: tuple, frames: int, h: int, w: int) -> torch.Tensor:
    """(frames, h, w): each frame's cells covered by the box of the path at that frame's clip fraction."""
    return torch.stack([box_coverage(box_at(keyframes, at), h, w) for at in frame_times(frames)])


def masks_over_frames(masks: torch.Tensor, frames: int, h: int, w: int) -> torch.Tensor:
    """(frames, h, w) from a mask batch (F, H, W) spread evenly over the clip: each latent frame the mean of
    the masks over its stretch of the clip, each cell the mean over its area."""
    if masks.shape[0] == frames:
        over_time = masks.to(torch.float32)
    else:
        weights = area_weights(masks.shape[0], frames)  # (frames, F)
        over_time = torch.einsum("tf,fhw->thw", weights, masks.double()).to(torch.float32)
    return torch.stack([resize_mask(frame, h, w) for frame in over_time])
