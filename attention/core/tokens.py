"""Where the tokens of one row sit in a joint (text + image) attention call.

Every joint attention call of a diffusion transformer sees the tokens of one row in the order
``[text | streams | image | extra]``: ``text`` is the sampler's prompt (as the model lays it out,
register or padding tokens included), the streams are extra prompts the pack appended to the
context for this evaluation (regional local prompts, an aesthetic prompt), ``image`` the
patchified latent (row-major grid), ``extra`` whatever a model appends after the image (an edit
model's reference latents, padding). Family adapters (``attention/models/``) build it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenLayout:
    """Where the tokens of one row sit in a joint attention call:
    ``[text | stream_1 | ... | stream_n | image | extra]``.

    ``text`` is the sampler's prompt; the streams are extra prompts the pack appended to the context
    for this evaluation (regional local prompts, an aesthetic prompt), each carried through the
    model's text stream like the prompt, and kept apart from it in every attention call."""

    text: int  # number of prompt tokens, first in the sequence
    image: int  # number of image tokens
    grid: tuple  # (h, w) of the image tokens, row-major
    streams: tuple = ()  # token count of each appended stream, in order
    stream_keys: tuple = ()  # what each stream belongs to (id of a region or control)
    # tokens a model appends after the image (an edit model's reference latents), when the family
    # declares them: no control acts on their queries (their outputs are the base attention's)
    extra: int = 0
    # the streams come before the prompt, ``[streams | text | image | extra]``: a family whose text
    # positions (RoPE) or padding depend on the text length before the image sets it, so the prompt,
    # its padding and the image keep their relative positions whatever streams are carried
    streams_first: bool = False

    @property
    def text_total(self) -> int:
        return self.text + sum(self.streams)

    @property
    def image_slice(self) -> slice:
        return slice(self.text_total, self.text_total + self.image)

    def matches(self, tokens: int) -> bool:
        """True when a call of ``tokens`` tokens holds at least [text | streams | image] (exactly
        [text | streams | image | extra] where the family declares extra tokens)."""
        if self.extra:
            return tokens == self.text_total + self.image + self.extra
        return tokens >= self.text_total + self.image

    @property
    def main(self) -> "TokenLayout":
        """The layout once the streams are taken out: [text | image | extra]."""
        return TokenLayout(self.text, self.image, self.grid, extra=self.extra)

    def stream_slices(self) -> list:
        slices, start = [], 0 if self.streams_first else self.text
        for length in self.streams:
            slices.append(slice(start, start + length))
            start += length
        return slices

    def split(self, x):
        """(…, tokens, C) -> (main tokens [text | image | extra], [stream tokens, ...]) along dim -2."""
        if not self.streams:
            return x, []
        if self.streams_first:
            return x[..., sum(self.streams):, :], [x[..., s, :] for s in self.stream_slices()]
        main = torch.cat([x[..., :self.text, :], x[..., self.text_total:, :]], dim=-2)
        return main, [x[..., s, :] for s in self.stream_slices()]

    def assemble(self, main_out, stream_outs):
        """Outputs (batch, tokens, C) back in the call's token order."""
        if not self.streams:
            return main_out
        if self.streams_first:
            return torch.cat([*stream_outs, main_out], dim=1)
        return torch.cat([main_out[:, :self.text], *stream_outs, main_out[:, self.text:]], dim=1)
