"""AtelierStyleAligned: a batch that shares one style with its first image (or a reference)."""
from __future__ import annotations

import logging

from comfy_api.latest import io

from .common import search_aliases

from ..attention.dispatch import dispatcher
from ..attention.group_norm import GroupNormShareControl
from ..attention.style_aligned import SharedAttentionControl, SharingSettings
from ..inversion.reference_cache import MAX_CACHE_MB
from ..inversion.reference_node import attach_reference
from .inversion import TrajectoryType
from .common import CATEGORY, layers_input, make_layers, make_window, model_input, model_output, window_inputs
from .input_guard import guarded

NODE = "AtelierStyleAligned"
log = logging.getLogger("attention_atelier")


class AtelierStyleAligned(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE,
            **search_aliases("Atelier StyleAligned", "Atelier style aligned shared attention", "Atelier consistent style"),
            display_name="StyleAligned (shared attention)",
            category=f"{CATEGORY}/style",
            description=(
                "StyleAligned set generation: every image of the batch shares the style of batch row 0. "
                "In self-attention, rows 1..B-1 also attend to row 0's keys/values (scaled by "
                "shared_score_scale, shifted by shared_score_shift) after AdaIN gives their queries/keys "
                "row 0's per-channel statistics. Row 0 itself is generated as without the node (where it shares "
                "the generated rows' attention call, as in the official code: up to float rounding). "
                "Works at any cfg and with cond/uncond run separately. Wire one prompt per row with "
                "AtelierBatchPrompts. With a reference trajectory (AtelierInvert) the reference is a real "
                "image instead: it is added as row 0 of every model call and removed from the output."),
            inputs=[
                model_input(SharedAttentionControl),
                io.Boolean.Input("share_attention", default=True,
                                 tooltip="Let rows 1..B-1 attend to row 0's keys and values (the core of StyleAligned)."),
                io.Boolean.Input("adain_queries", default=True,
                                 tooltip="Give each row's queries row 0's per-channel mean and std (AdaIN)."),
                io.Boolean.Input("adain_keys", default=True,
                                 tooltip="Give each row's keys row 0's per-channel mean and std (AdaIN)."),
                io.Boolean.Input("adain_values", default=False,
                                 tooltip="Give each row's values row 0's statistics too (off in the paper)."),
                io.Boolean.Input("share_group_norm", default=False,
                                 tooltip="Normalise each row's ResBlock/transformer GroupNorms with statistics "
                                         "joined with row 0's (stronger colour/texture transfer)."),
                io.Float.Input("shared_score_scale", default=1.0, min=0.0, max=10.0, step=0.01,
                               tooltip="Multiplies the reference keys: >1 sharpens attention to the reference."),
                io.Float.Input("shared_score_shift", default=0.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="Added to attention scores on the reference tokens (log 2 = 0.693 "
                                       "doubles their weight); 0 for none."),
                layers_input(),
                io.Float.Input("unshared_fraction", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the selected self-attention layers left unshared, spread "
                                       "evenly (the official only_self_level). 0 shares them all."),
                *window_inputs(),
                TrajectoryType.Input(
                    "reference", optional=True,
                    tooltip="Optional: AtelierInvert's trajectory of a real image. Then the reference row is "
                            "that image (following its inversion at every step, with the inversion's "
                            "prompt) and is left out of the output: a batch of N gives N styled images."),
                io.Int.Input(
                    "reference_cache_mb", default=0, min=0, max=MAX_CACHE_MB, step=64, optional=True,
                    tooltip="Reference-image mode only (UNet models): CPU memory in MiB for a cache of what the "
                            "reference row gives the other rows (its self-attention q/k/v and GroupNorm "
                            "statistics, per step). The first run records it; queuing again with a new seed or "
                            "prompts skips the reference row's pass. Same images. 0 = off."),
            ],
            outputs=[model_output()],
        )

    @classmethod
    @guarded
    def execute(cls, model, share_attention, adain_queries, adain_keys, adain_values, share_group_norm,
                shared_score_scale, shared_score_shift, layers, unshared_fraction, start_percent,
                end_percent, reference=None, reference_cache_mb=0) -> io.NodeOutput:
        window = make_window(NODE, start_percent, end_percent)
        selection = make_layers(NODE, layers, unshared_fraction, model=model)
        settings = SharingSettings(share_attention, adain_queries, adain_keys, adain_values,
                                   shared_score_scale, shared_score_shift)
        controls = []
        if not settings.neutral:
            controls.append(SharedAttentionControl(settings=settings, layers=selection, window=window))
        if share_group_norm:
            controls.append(GroupNormShareControl(window=window))
        patched = dispatcher.attach(model, *controls, node=NODE)
        if reference is not None:
            attach_reference(patched, reference, NODE, cache_mb=reference_cache_mb)
        elif reference_cache_mb:
            log.warning("%s: reference_cache_mb is set but no reference is wired; it has nothing to cache", NODE)
        return io.NodeOutput(patched)


NODES = [AtelierStyleAligned]
CONTROLS = (SharedAttentionControl, GroupNormShareControl)  # what its nodes make (README support table)
