"""AtelierBatchPrompts: one prompt per latent row, so a batch of N images gets N prompts."""
from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from .common import search_aliases

from ..attention.core.errors import AtelierError
from ..attention.prompt_batch import REPEAT_BOUND, common_length, cyclic_pad, inexact_rows
from ..attention.dispatch.prompt_count import PROMPT_COUNT_KEY
from .common import CATEGORY
from .input_guard import check_nesting, guarded, tokenize

NODE = "AtelierBatchPrompts"
log = logging.getLogger("attention_atelier")


def split_prompts(text: str, style: str) -> list[str]:
    lines = [line.strip() for line in (text or "").splitlines()]
    lines = [line for line in lines if line]
    style = (style or "").strip()
    return [f"{line}, {style}" if style else line for line in lines]


def stack_conditionings(encoded: list[dict]) -> tuple[torch.Tensor, dict]:
    """Stack per-prompt encodings (cond [1, T_i, D], pooled [1, P]) into one batch of rows, each
    padded cyclically to a common length (attention.prompt_batch)."""
    lengths = [e["cond"].shape[1] for e in encoded]
    length = common_length(lengths)
    inexact = inexact_rows(lengths, length)
    if inexact:
        log.warning("%s: prompts of %s tokens padded to %d tokens by repeating their own tokens; rows %s "
                    "(0-based) repeat their first tokens once more than the rest, which weights them a "
                    "little more. Prompts of equal chunk counts (75 words or fewer each) avoid this.",
                    NODE, lengths, length, inexact)
    cond = torch.cat([cyclic_pad(e["cond"], length) for e in encoded], dim=0)
    extra = {}
    for key, value in encoded[0].items():
        if key != "cond" and isinstance(value, torch.Tensor) and all(
                isinstance(e.get(key), torch.Tensor) and e[key].shape == value.shape for e in encoded):
            extra[key] = torch.cat([e[key] for e in encoded], dim=0)
    return cond, extra


class AtelierBatchPrompts(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE,
            **search_aliases("Atelier batch prompts", "Atelier one prompt per image"),
            display_name="Batch Prompts (one per row)",
            category=f"{CATEGORY}/conditioning",
            description=(
                "Encodes one prompt per line into a single CONDITIONING whose row i is prompt i (SDXL "
                "pooled output too), so a latent batch of N images gets N different prompts, e.g. N "
                "objects in one StyleAligned style. The optional style text is appended to every line. "
                "The latent batch size must equal the number of prompts (wire the count output to the "
                "latent's batch_size); Atelier-patched models check this when sampling starts. Prompts "
                "of different lengths (in 77-token chunks) are brought to one length by repeating each "
                "prompt's own tokens: exact (attention unchanged) when the common length is a multiple "
                f"of every prompt's, which holds while it stays within {REPEAT_BOUND}x the longest; "
                "beyond that rows are padded to the longest and a warning names the rows weighted "
                "slightly differently."),
            inputs=[
                io.Clip.Input("clip", tooltip="The text encoder (CLIP) of the checkpoint."),
                io.String.Input("prompts", multiline=True, default="a house\na tree\na car\na cat",
                                tooltip="One prompt per line; empty lines are skipped. Line 1 is row 0 "
                                        "(StyleAligned's reference row)."),
                io.String.Input("style", multiline=False, default="",
                                tooltip="Text appended to every prompt as ', <style>' (e.g. 'watercolor "
                                        "painting'); leave empty for none."),
            ],
            outputs=[
                io.Conditioning.Output(tooltip="One conditioning row per prompt, in line order."),
                io.Int.Output(display_name="count",
                              tooltip="Number of prompts; wire it to the latent's batch_size."),
            ],
        )

    @classmethod
    @guarded
    def execute(cls, clip, prompts, style) -> io.NodeOutput:
        texts = split_prompts(prompts, style)
        if not texts:
            raise AtelierError(NODE, "prompts", "no prompt was given.", "write one prompt per line.")
        if clip is None:
            raise AtelierError(NODE, "clip", "the checkpoint has no text encoder.",
                               "load a checkpoint with CLIP or use a CLIPLoader.")
        encoded = []
        for line, text in enumerate(texts, 1):  # the style appended can close what a line opens
            check_nesting(NODE, "prompts", text, f"prompt {line} (with the style appended)")
            out = clip.encode_from_tokens(tokenize(clip, text, NODE, "prompts"), return_pooled=True,
                                          return_dict=True)
            encoded.append(out)
        cond, extra = stack_conditionings(encoded)
        extra[PROMPT_COUNT_KEY] = len(texts)
        return io.NodeOutput([[cond, extra]], len(texts))


NODES = [AtelierBatchPrompts]
