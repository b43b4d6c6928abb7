"""Checks when sampling starts: a per-row prompt batch matches the latent batch, and a batch of one
with nothing to align to is reported.

ComfyUI silently repeats or truncates a conditioning whose batch differs from the latent's; for
per-row prompts that would give the wrong prompt to some images, so Atelier models refuse it.
"""
from __future__ import annotations

import logging

from ..core.errors import AtelierError
from ..core.keys import PACK_KEY, REFERENCE_KEY

try:  # guarded: the maths in this package imports without ComfyUI
    import comfy.patcher_extension as patcher_extension
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    patcher_extension = None

log = logging.getLogger("attention_atelier")

PROMPT_COUNT_KEY = "atelier_prompt_count"


def check_prompt_counts(conds: dict, latent_rows: int):
    for name, entries in (conds or {}).items():
        for entry in entries or []:
            count = entry.get(PROMPT_COUNT_KEY) if isinstance(entry, dict) else None
            if count is not None and count != latent_rows:
                raise AtelierError("AtelierBatchPrompts", "prompts",
                                   f"{count} prompts reach the sampler ({name}) but the latent batch has "
                                   f"{latent_rows} rows.",
                                   f"give {latent_rows} prompts or set the latent batch_size to {count} "
                                   "(wire AtelierBatchPrompts' count output to it).")


def nodes_needing_a_reference_row(controls) -> list[str]:
    """The nodes whose controls align rows 1..B-1 with row 0 (nothing to do in a batch of one)."""
    return sorted({c.reference_node for c in controls if c.reference_node})


def warn_if_nothing_to_align(model_patcher, latent_rows: int):
    """A batch of one with StyleAligned / ArtBN and no reference image: the output is vanilla; say so
    once per sampling run."""
    if latent_rows != 1 or model_patcher is None:
        return
    if model_patcher.get_wrappers(patcher_extension.WrappersMP.OUTER_SAMPLE, REFERENCE_KEY):
        return
    controls = model_patcher.model_options.get("transformer_options", {}).get(PACK_KEY, ())
    names = nodes_needing_a_reference_row(controls)
    if names:
        log.warning("%s: the latent batch has one image and no reference image is wired, so there is no "
                    "row 0 to align with and the output is the unpatched model's. Generate 2 or more "
                    "images (row 0 sets the style) or wire AtelierInvert's trajectory to StyleAligned's "
                    "reference input.", " and ".join(names))


def outer_sample_wrapper(executor, noise, latent_image, *args, **kwargs):
    guider = executor.class_obj
    check_prompt_counts(getattr(guider, "conds", None), latent_image.shape[0])
    warn_if_nothing_to_align(getattr(guider, "model_patcher", None), latent_image.shape[0])
    return executor(noise, latent_image, *args, **kwargs)
