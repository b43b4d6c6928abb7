"""Reference-image mode: a row that follows an inversion trajectory is put in front of every chunk.

Per model call of ``chunks`` chunks of B rows, the wrapper builds chunks of B + 1 rows: row 0 is the
reference x_ref(sigma) (from the trajectory) with the inversion's own conditioning, rows 1..B are the
caller's rows. The reference row gets no ControlNet residual, and its output is dropped, so the caller
gets back exactly B rows per chunk. Shared attention / GroupNorm sharing see row 0 as the reference
with no change of their own. ``cond_or_uncond`` is left as it is: chunk kinds do not change.

With a :class:`~.reference_cache.ReferenceCache` (``reference_cache_mb`` > 0) a call whose reference row
was recorded before runs the caller's rows only, the layers reading row 0 from the cache.
"""
from __future__ import annotations

import logging
import math

import torch

from ..attention.core.errors import AtelierError
from ..attention.core.keys import RECORD_KEY, REFERENCE_INSERTED_KEY, REPLAY_KEY
from ..attention.core.rows import chunk_first_rows, chunk_layout, insert_rows, strip_rows
from ..attention.models import family_of
from .reference_cache import ACTIVE, ReplayMissing, StepReplay, digest, sampling_context

log = logging.getLogger("attention_atelier")


def repeat_tokens(context: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat a whole token sequence to ``length`` tokens (attention is unchanged by it)."""
    return context.repeat(1, length // context.shape[1], 1)


def insert_context(context: torch.Tensor, references: list) -> torch.Tensor:
    """Cross-attention context with one reference row (1, T_c, D) per chunk; token lengths matched by
    lcm repeat."""
    length = math.lcm(context.shape[1], *[r.shape[1] for r in references])
    reference = torch.cat([repeat_tokens(r, length) for r in references]).to(context)
    return insert_rows(repeat_tokens(context, length), len(references), reference)


def insert_control(control, chunks: int, batch: int):
    """A ControlNet residual dict ({'input': [...], 'middle': [...], 'output': [...]}) with zero
    residuals for the reference rows. New lists: the UNet pops from them."""
    if control is None:
        return None
    out = {}
    for name, residuals in control.items():
        if isinstance(residuals, list):
            out[name] = [insert_rows(r, chunks, torch.zeros_like(chunk_first_rows(r, chunks)))
                         if isinstance(r, torch.Tensor) and r.shape[0] == batch else r for r in residuals]
        else:
            out[name] = residuals
    return out


class ReferenceRows:
    """APPLY_MODEL wrapper replaying a trajectory as row 0 of every chunk (key :data:`REFERENCE_KEY`)."""

    def __init__(self, trajectory, row: int = 0, cache=None, node: str = "AtelierStyleAligned",
                 input_name: str = "reference"):
        self.trajectory = trajectory
        self.row = row
        self.cache = cache  # a ReferenceCache, or None (off)
        self.node, self.input_name = node, input_name  # named by the errors of a model call
        self._warned = False

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
        batch = x.shape[0]
        layout = chunk_layout(batch, transformer_options.get("cond_or_uncond"))
        if tuple(x.shape[1:]) != self.trajectory.latent_shape:  # e.g. an area cond's cropped chunk
            if not self._warned:
                log.warning("reference row left out of a model call of size %s (reference %s)",
                            tuple(x.shape[1:]), self.trajectory.latent_shape)
                self._warned = True
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        chunks = layout.chunks
        chunk_sigmas = chunk_first_rows(t, chunks)
        conds = [self.trajectory.conds_for(kind) for kind in layout.cond_or_uncond]
        if c_crossattn is not None:
            self._check_text_width(c_crossattn, conds, getattr(getattr(executor, "class_obj", None), "diffusion_model", None))
        key = self._cache_key(layout, x, chunk_sigmas, conds, c_crossattn, c_concat, kwargs, transformer_options)
        recorder = None
        if key is not None:
            entry = self.cache.lookup(key)
            if entry is not None:
                transformer_options[REPLAY_KEY] = StepReplay(entry)
                try:  # the caller's rows only; ControlNet lists copied (the UNet pops from them)
                    return executor(x, t, c_concat, c_crossattn, _copied_control(control), transformer_options,
                                    **kwargs)
                except ReplayMissing as error:
                    self.cache.replay_failed(error)
                finally:
                    transformer_options.pop(REPLAY_KEY, None)
            recorder = self.cache.recorder()
        reference_x = torch.stack([self.trajectory.latent_at(float(s), self.row) for s in chunk_sigmas])

        x = insert_rows(x, chunks, reference_x.to(device=x.device, dtype=x.dtype))
        t = insert_rows(t, chunks, chunk_sigmas)
        if c_crossattn is not None:
            c_crossattn = insert_context(c_crossattn, [self._context(cond, c_crossattn, c, chunks)
                                                       for c, cond in enumerate(conds)])
        if isinstance(c_concat, torch.Tensor) and c_concat.shape[0] == batch:
            c_concat = insert_rows(c_concat, chunks, self._stack(conds, "c_concat", c_concat))
        for name, value in kwargs.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
                kwargs[name] = insert_rows(value, chunks, self._stack(conds, name, value))
            elif isinstance(value, list) and value and all(isinstance(r, torch.Tensor) and r.ndim > 0
                                                          and r.shape[0] == batch for r in value):
                # batch-shaped inputs in a list (an edit model's reference latents, Qwen-Image-Edit's
                # ref_latents): the reference row takes its chunk's first row's, so the rows of a call
                # keep one token count (the reference row's output is dropped)
                kwargs[name] = [insert_rows(r, chunks, chunk_first_rows(r, chunks)) for r in value]
        control = insert_control(control, chunks, batch)
        transformer_options[REFERENCE_INSERTED_KEY] = True
        if recorder is not None:
            transformer_options[RECORD_KEY] = recorder
        try:
            out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        finally:
            transformer_options.pop(REFERENCE_INSERTED_KEY, None)
            transformer_options.pop(RECORD_KEY, None)
        if recorder is not None:
            self.cache.store(key, recorder)
        return strip_rows(out, chunks)

    def _cache_key(self, layout, x, chunk_sigmas, conds, c_crossattn, c_concat, kwargs, transformer_options):
        """The step key of this call in the active cache, or None: no cache, not active for this sampling
        run (see :func:`reference_cache.sampling_context`), or per-call patches (e.g. GLIGEN)."""
        if self.cache is None or ACTIVE.get() is not self.cache or self.cache.disabled:
            return None
        if transformer_options.get("patches"):
            self.cache.log_once("patches", logging.INFO, "reference cache: not used for model calls with "
                                "conditioning patches (%s)", ", ".join(transformer_options["patches"]))
            return None
        chunks, batch = layout.chunks, x.shape[0]
        inputs = [("c_crossattn", c, None if cond.c_crossattn is not None else
                   digest(chunk_first_rows(c_crossattn, chunks)[c])) for c, cond in enumerate(conds)
                  if c_crossattn is not None]
        named = [("c_concat", c_concat)] if isinstance(c_concat, torch.Tensor) and c_concat.shape[0] == batch else []
        named += [(n, v) for n, v in kwargs.items() if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == batch]
        for name, value in named:
            fallback = chunk_first_rows(value, chunks)
            for c, cond in enumerate(conds):
                own = cond.c_concat if name == "c_concat" else cond.extra.get(name)
                usable = own is not None and tuple(own.shape[1:]) == tuple(value.shape[1:])
                inputs.append((name, c, None if usable else digest(fallback[c])))
        return (layout.cond_or_uncond, tuple(chunk_sigmas.tolist()), tuple(x.shape[1:]), str(x.dtype),
                str(x.device), str(getattr(c_crossattn, "dtype", None)), tuple(inputs))

    def _check_text_width(self, c_crossattn: torch.Tensor, conds: list, diffusion_model):
        """The reference row's text conditioning joins the sampler's in one tensor: both must be as wide
        as the model's text input. Else an AtelierError says which one is not (before torch.cat does)."""
        width = c_crossattn.shape[-1]
        wrong = sorted({c.c_crossattn.shape[-1] for c in conds if c.c_crossattn is not None} - {width})
        if not wrong:
            return
        model_width = text_width(diffusion_model)
        if model_width is not None and width != model_width:
            raise AtelierError(self.node, self.input_name,
                               f"the sampler's prompt conditioning is {width} wide ({describe_width(width)}) but "
                               f"this model reads {model_width}-wide text ({describe_width(model_width)}), as the "
                               "reference's inversion did.",
                               "encode the sampler's positive and negative prompts with the CLIP of the model's "
                               "own checkpoint.")
        raise AtelierError(self.node, self.input_name,
                           f"the reference was inverted with {wrong[0]}-wide prompt conditioning "
                           f"({describe_width(wrong[0])}) but the sampler's is {width} wide "
                           f"({describe_width(width)}); the reference row cannot join the sampler's rows.",
                           "invert the reference with prompts encoded by the CLIP of the checkpoint you "
                           "generate with (AtelierInvert's positive/negative).")

    @staticmethod
    def _context(cond, like: torch.Tensor, chunk: int, chunks: int) -> torch.Tensor:
        if cond.c_crossattn is None:
            return chunk_first_rows(like, chunks)[chunk:chunk + 1]
        return cond.c_crossattn.to(device=like.device, dtype=like.dtype)

    @staticmethod
    def _stack(conds, name: str, like: torch.Tensor) -> torch.Tensor:
        """The reference's own value of a model input, per chunk; the chunk's first row when the
        inversion recorded none (an input the inversion's model did not have)."""
        fallback = chunk_first_rows(like, len(conds))
        rows = []
        for c, cond in enumerate(conds):
            value = cond.c_concat if name == "c_concat" else cond.extra.get(name)
            usable = value is not None and tuple(value.shape[1:]) == tuple(like.shape[1:])
            rows.append(value[0].to(device=like.device, dtype=like.dtype) if usable else fallback[c])
        return torch.stack(rows)


WIDTHS = {768: "SD1.x's CLIP-L", 1024: "SD2.x's OpenCLIP-H", 1280: "SDXL refiner's OpenCLIP-G",
          2048: "SDXL's CLIP-L + CLIP-G", 4096: "a T5-XXL text encoder (Flux.1, SD3.5)"}


def describe_width(width: int) -> str:
    return f"as {WIDTHS[width]} gives" if width in WIDTHS else "another text encoder's"


def text_width(diffusion_model):
    """Channels of the text input of ``diffusion_model`` (its family's), or None when not known."""
    if diffusion_model is None:
        return None
    family = family_of(diffusion_model)
    try:
        return family.context_width(diffusion_model) if family is not None else None
    except (AttributeError, ValueError, NotImplementedError):
        return None


def check_conditioning_width(conditioning, diffusion_model, node: str, input_name: str, what: str):
    """Every entry of a CONDITIONING (``what`` names it) must be as wide as the model's text input."""
    model_width = text_width(diffusion_model)
    if model_width is None:
        return
    for entry in conditioning or ():
        width = entry[0].shape[-1] if isinstance(entry[0], torch.Tensor) and entry[0].ndim == 3 else model_width
        if width != model_width:
            raise AtelierError(node, input_name,
                               f"{what} is {width} wide ({describe_width(width)}) but this model reads "
                               f"{model_width}-wide text ({describe_width(model_width)}).",
                               "encode the prompt with the CLIP of the model's own checkpoint.")


def check_latent_size(trajectory, latent_image: torch.Tensor, node: str, input_name: str = "reference"):
    """The generated latent must have the reference's size: a clear error naming both."""
    got = tuple(latent_image.shape[1:])
    want = trajectory.latent_shape
    if got != want:
        raise AtelierError(node, input_name,
                           f"the reference was inverted from a {want[-1] * 8}x{want[-2] * 8} image (latent "
                           f"{list(want)}) but the sampler generates {got[-1] * 8}x{got[-2] * 8} (latent {list(got)}).",
                           "make the generated latent the reference's size (EmptyLatentImage width/height), "
                           "or resize the reference image before VAEEncode and AtelierInvert.")


def _copied_control(control):
    if control is None:
        return None
    return {name: list(value) if isinstance(value, list) else value for name, value in control.items()}


def size_check_wrapper(trajectory, node: str, cache=None):
    """OUTER_SAMPLE wrapper that checks the latent size before any model call and, with a cache,
    decides whether this sampling run may use it (and empties it for a new model or settings)."""
    def outer_sample(executor, noise, latent_image, *args, **kwargs):
        check_latent_size(trajectory, latent_image, node)
        if cache is None:
            return executor(noise, latent_image, *args, **kwargs)
        context, why_not = sampling_context(executor.class_obj, trajectory)
        if context is None:
            cache.log_once(why_not, logging.WARNING, "reference cache not used: %s", why_not)
        else:
            cache.use_context(context)
        token = ACTIVE.set(cache if context is not None else None)
        try:
            return executor(noise, latent_image, *args, **kwargs)
        finally:
            ACTIVE.reset(token)
    return outer_sample
