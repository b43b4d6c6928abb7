"""MiniMax H3 (audio + video; ComfyUI 0.33 only): comfy/ldm/minimax/model.py ``MiniMaxH3Model``.

Recognised so that what it cannot run is refused by name with the reason (every method, so far): each
model call holds one clip (batch 1; ComfyUI runs its cond and uncond in separate calls), so there is no
second clip in a call to share a style with; its one attention per block runs over a packed sequence
[prompt | keyframes or references | audio | video] whose prompt is refined once before sampling, so a
local or aesthetic prompt has no place in it yet; and its latent carries the audio with the video.
Layers would be its blocks, ``("block", i)``.
"""
from __future__ import annotations

from ..core.family import INVERSION, ModelFamily

try:  # guarded: the maths in this package imports without ComfyUI, and only ComfyUI 0.33 has MiniMax H3
    from comfy.ldm.minimax.model import MiniMaxH3Model
except ImportError:  # pragma: no cover - ComfyUI versions without it
    MiniMaxH3Model = None

ONE_CLIP = ("a MiniMax H3 model call holds one clip (batch 1, cond and uncond in separate calls), so no "
            "other clip is there to share a style or statistics with")
PACKED = ("MiniMax H3 packs prompt, keyframes, audio and video into one sequence whose prompt is refined "
          "once before sampling: a local or aesthetic prompt has no place in it yet")
AUDIO = "a MiniMax H3 clip's latent carries its audio with the video: not supported yet"
REASONS = {"StyleAligned": ONE_CLIP, "ArtBN": ONE_CLIP, "regional attention": PACKED, "aesthetic mixing": PACKED,
           INVERSION: AUDIO}


class MiniMaxFamily(ModelFamily):
    name = "MiniMax H3"
    kind = "joint"  # one attention per block over the packed sequence
    block_kinds = ("block",)

    def matches(self, diffusion_model) -> bool:
        return MiniMaxH3Model is not None and isinstance(diffusion_model, MiniMaxH3Model)

    def layer_keys(self, diffusion_model) -> tuple:
        return tuple(("block", i) for i in range(len(diffusion_model.blocks)))

    def context_width(self, diffusion_model) -> int:
        return diffusion_model.condition_proj.in_features

    def refusal(self, feature: str, diffusion_model=None):
        return REASONS.get(feature)


FAMILY = MiniMaxFamily()
