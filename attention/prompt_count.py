"""Check that a per-row prompt batch matches the latent batch when sampling starts.

ComfyUI silently repeats or truncates a conditioning whose batch differs from the latent's; for
per-row prompts that would give the wrong prompt to some images, so Atelier models refuse it.
"""
from __future__ import annotations

from .errors import AtelierError

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


def outer_sample_wrapper(executor, noise, latent_image, *args, **kwargs):
    check_prompt_counts(getattr(executor.class_obj, "conds", None), latent_image.shape[0])
    return executor(noise, latent_image, *args, **kwargs)
