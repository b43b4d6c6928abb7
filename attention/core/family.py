"""The interface every model family implements: what the dispatcher must know about a model.

A family adapter (one module under ``attention/models/``) tells the dispatcher how it recognises
the model, its attention layer keys in execution order and how they are named in layer
selections, how the layer of an attention call in progress is known, the token layout of each
call, and which methods it cannot run and why. Methods (StyleAligned, regional attention, value
mixing, ...) are written once against this interface and never name a model class.

Three kinds of family exist (:attr:`ModelFamily.kind`):

- ``"unet"``: self- and cross-attention are separate calls of each transformer block; the dispatcher
  installs one ``patches_replace`` attention replace per layer and slot (``attn1`` / ``attn2``).
- ``"joint"`` (image diffusion transformers): text and image tokens meet in one attention call per
  block; the dispatcher installs one ``optimized_attention_override`` per model evaluation and asks
  the adapter for the call's layer (:meth:`ModelFamily.layer_key`) and tokens
  (:meth:`ModelFamily.token_layout`).
- ``"separate"`` (video transformers: Wan, LTX): self-attention over the video tokens and
  cross-attention to the prompt are separate calls, reached through the attention override; the adapter
  names each call's slot (:meth:`ModelFamily.separate_slot`) and the controls run as on a UNet's.
"""
from __future__ import annotations

import torch

from .tokens import TokenLayout

INVERSION = "inversion"  # the feature name of inversion and the reference-image mode (ModelFamily.refusal)


class ModelFamily:
    """One model family. Subclasses override what differs; instances are stateless singletons."""

    name: str = ""  # what users read in messages and the README table, e.g. "Flux.1"
    kind: str = "joint"  # "unet", "joint" or "separate" (see the module docstring)
    block_kinds: tuple = ()  # the words of its layer keys, e.g. ("double", "single")

    @property
    def joint(self) -> bool:
        """Text and image tokens in one attention call per block (an image DiT)."""
        return self.kind == "joint"

    def matches(self, diffusion_model) -> bool:
        raise NotImplementedError

    def layer_keys(self, diffusion_model) -> tuple:
        """Every attention layer key, in execution order."""
        raise NotImplementedError

    def layer_key(self, transformer_options: dict):
        """The layer key of the attention call in progress, or None (a call no layer key names, such
        as a refiner block, which then runs untouched)."""
        kind, index = transformer_options.get("block_type"), transformer_options.get("block_index")
        if kind in self.block_kinds and isinstance(index, int):
            return kind, index
        return None

    def call_key(self, transformer_options: dict, diffusion_model, tokens: int, layout: TokenLayout,
                 joint_calls: int):
        """The layer key of an attention call of ``tokens`` tokens in an evaluation of ``layout``;
        ``joint_calls`` is how many earlier calls of this evaluation held the whole layout (the
        ordinal of a joint block, for a model that writes no block index and offers no block replace).
        By default the key the model or :meth:`mark_blocks` wrote (:meth:`layer_key`)."""
        return self.layer_key(transformer_options)

    def text_only_call(self, transformer_options: dict, diffusion_model, tokens: int, layout: TokenLayout,
                       calls: int) -> bool:
        """Whether this call (``calls`` earlier calls in the evaluation) is a text refiner's, over the
        text tokens only ``[text | streams]`` in ``layout``'s order: the dispatcher then keeps the
        streams apart in it (each attends to itself). Families without a text refiner: False."""
        return False

    def stream_positions(self, q, k, layout: TokenLayout, diffusion_model):
        """q, k of a call of an evaluation carrying streams, with any position the streams shifted put
        back where the prompt and image see it as without them (a model whose positions of some
        tokens do not move with the text length). By default unchanged."""
        return q, k

    def stream_filler(self, diffusion_model, model_kwargs: dict, stream_tokens: int):
        """Tokens of filler (zero context, owned by no control) to carry after ``stream_tokens`` tokens of
        streams, e.g. so that a model padding its text to a multiple pads the prompt as without streams;
        None where this model call cannot carry streams (they are then left out, with a warning)."""
        return 0

    def stream_mask(self, attention_mask, stream_tokens: int):
        """The model's text mask (``attention_mask``) extended over ``stream_tokens`` tokens of streams
        appended after the prompt (they have no padding), or None where this family cannot carry streams
        beside a mask (they are then left out, with a warning)."""
        return None

    def mark_blocks(self, transformer_options: dict, diffusion_model):
        """Make the layer of each attention call known where the model itself writes no block index
        (a block replace that marks it). Called once per model evaluation with controls active."""

    def context_width(self, diffusion_model) -> int:
        """Channels of the model's text input (what a prompt's conditioning must have)."""
        raise NotImplementedError

    def token_layout(self, diffusion_model, x, context, model_kwargs: dict) -> TokenLayout:
        """Where a row's tokens sit in the joint attention calls of this evaluation (latent ``x``,
        the sampler's ``context``), before any appended text stream."""
        raise NotImplementedError

    def carry_streams(self, transformer_options: dict, diffusion_model, context, parts: list):
        """The context to call the model with so that the text ``parts`` (each (batch, T, channels of
        the context)) follow the prompt as streams in every joint attention call. By default they are
        appended to the context, which suits a text path that treats tokens one by one; a family whose
        text path attends across text tokens (a text refiner) carries them itself, e.g. with a patch
        after that path (this evaluation's ``transformer_options`` may be changed), so the prompt never
        meets them there."""
        return torch.cat([context, *parts], dim=1)

    def separate_slot(self, transformer_options: dict, q, k, seen: list, diffusion_model=None):
        """A "separate" family's attention call at a layer: "attn1" (self-attention over the video tokens),
        "attn2" (cross-attention to the prompt) or None (a call no control acts on: an image or audio
        cross-attention). ``seen``: (query tokens, key tokens, query width) of the block's earlier calls
        in this evaluation."""
        return None

    def refusal(self, feature: str, diffusion_model=None) -> str | None:
        """Why this family (this model of it, where given) cannot run ``feature`` (a control's
        ``feature``, or :data:`INVERSION`), or None when it can as far as the family knows."""
        return None

    def attention_module(self, diffusion_model, key: tuple, slot: str):
        """The attention module of layer ``key`` and ``slot`` ("attn1" / "attn2"), with its own
        projections (UNet families: a method that projects extra text through a layer's to_k / to_v)."""
        raise NotImplementedError(f"{self.name} has no per-layer {slot} module")


def patch_grid(x, patch: int) -> tuple:
    """(h, w) of the image tokens of latent ``x`` (…, H, W) cut into ``patch`` x ``patch`` patches
    (models pad the latent to whole patches)."""
    return -(-x.shape[-2] // patch), -(-x.shape[-1] // patch)


class BlockMarker:
    """``patches_replace["dit"]`` replace of block ``index``: runs the block (or the replace that was
    there) with ``options[key] = index`` in a copy of its transformer_options."""

    def __init__(self, index: int, base, key: str):
        self.index, self.base, self.key = index, base, key

    def __call__(self, args: dict, extra: dict):
        options = dict(args.get("transformer_options") or {})
        options[self.key] = self.index
        args = dict(args, transformer_options=options)
        if self.base is not None:
            return self.base(args, extra)
        return extra["original_block"](args)


def mark_dit_blocks(transformer_options: dict, replace_name: str, blocks: int, key: str):
    """A :class:`BlockMarker` on each of ``blocks`` blocks of ``patches_replace["dit"]``
    (``(replace_name, i)``), wrapping the replace already there."""
    replaces = dict(transformer_options.get("patches_replace", {}))
    table = dict(replaces.get("dit", {}))
    for i in range(blocks):
        table[(replace_name, i)] = BlockMarker(i, table.get((replace_name, i)), key)
    replaces["dit"] = table
    transformer_options["patches_replace"] = replaces
