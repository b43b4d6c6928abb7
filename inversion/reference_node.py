"""Put a reference trajectory on a (cloned) model: checks, then the keyed wrappers."""
from __future__ import annotations

from ..attention.core.errors import AtelierError
from ..attention.core.keys import PACK_KEY, REFERENCE_KEY
from .reference import ReferenceRows, check_conditioning_width, size_check_wrapper
from .reference_cache import MAX_CACHE_MB, ReferenceCache
from .trajectory import UNCOND, Trajectory

try:  # guarded: imports without ComfyUI
    import comfy.patcher_extension as patcher_extension
except ImportError:  # pragma: no cover
    patcher_extension = None


def attach_reference(model, trajectory, node: str, input_name: str = "reference", cache_mb: int = 0,
                     cache_input: str = "reference_cache_mb"):
    """Install reference-image mode on ``model`` (already a clone); one reference per model. With
    ``cache_mb`` > 0 the reference row is recorded on the first run and replayed from the CPU after."""
    if not isinstance(trajectory, Trajectory):
        raise AtelierError(node, input_name, f"got a {type(trajectory).__name__}, not an inversion trajectory.",
                           "wire AtelierInvert's trajectory output here.")
    family = type(model.model.model_config).__name__
    if family != trajectory.model_family:
        raise AtelierError(node, input_name, f"the reference was inverted with a {trajectory.model_family} model "
                           f"but this model is {family}.",
                           "invert the reference with the same checkpoint family as the one you generate with.")
    if isinstance(cache_mb, bool) or not isinstance(cache_mb, int) or not 0 <= cache_mb <= MAX_CACHE_MB:
        raise AtelierError(node, cache_input, f"got {cache_mb!r}; it is a whole number of MiB from 0 to {MAX_CACHE_MB}.",
                           "use 0 to turn the cache off, or the CPU memory (MiB) it may keep.")
    diffusion_model = model.get_model_object("diffusion_model")
    for kind, cond in sorted(trajectory.conds.items()):
        if cond.c_crossattn is not None:
            check_conditioning_width([[cond.c_crossattn, {}]], diffusion_model, node, input_name,
                                     f"the {'negative' if kind == UNCOND else 'positive'} prompt the reference was "
                                     "inverted with")
    cache = ReferenceCache(cache_mb) if cache_mb > 0 else None
    for kind in (patcher_extension.WrappersMP.APPLY_MODEL, patcher_extension.WrappersMP.OUTER_SAMPLE):
        model.remove_wrappers_with_key(kind, REFERENCE_KEY)
    model.add_wrapper_with_key(patcher_extension.WrappersMP.APPLY_MODEL, REFERENCE_KEY,
                               ReferenceRows(trajectory, cache=cache, node=node, input_name=input_name))
    run_controls_inside(model)
    model.add_wrapper_with_key(patcher_extension.WrappersMP.OUTER_SAMPLE, REFERENCE_KEY,
                               size_check_wrapper(trajectory, node, cache))
    return model


def run_controls_inside(model):
    """Put the pack's control wrapper inside the reference wrapper (ComfyUI runs a model's wrappers in the
    order their keys were added, the first outermost): the controls then see each model call as the
    model runs it, the reference row in front of every chunk and the prompts repeated to its length, so
    every token layout (where the prompt ends, where the image begins) is the attention call's own, and
    the regional / aesthetic prompt streams are appended after that repeat instead of repeated with it."""
    kind = patcher_extension.WrappersMP.APPLY_MODEL
    controls = list(model.get_wrappers(kind, PACK_KEY))
    model.remove_wrappers_with_key(kind, PACK_KEY)
    for wrapper in controls:
        model.add_wrapper_with_key(kind, PACK_KEY, wrapper)
