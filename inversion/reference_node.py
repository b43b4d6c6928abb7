"""Put a reference trajectory on a (cloned) model: checks, then the keyed wrappers."""
from __future__ import annotations

from ..attention.errors import AtelierError
from .reference import REFERENCE_KEY, ReferenceRows, size_check_wrapper
from .trajectory import Trajectory

try:  # guarded: imports without ComfyUI
    import comfy.patcher_extension as patcher_extension
except ImportError:  # pragma: no cover
    patcher_extension = None


def attach_reference(model, trajectory, node: str, input_name: str = "reference"):
    """Install reference-image mode on ``model`` (already a clone); one reference per model."""
    if not isinstance(trajectory, Trajectory):
        raise AtelierError(node, input_name, f"got a {type(trajectory).__name__}, not an inversion trajectory.",
                           "wire AtelierInvert's trajectory output here.")
    family = type(model.model.model_config).__name__
    if family != trajectory.model_family:
        raise AtelierError(node, input_name, f"the reference was inverted with a {trajectory.model_family} model "
                           f"but this model is {family}.",
                           "invert the reference with the same checkpoint family as the one you generate with.")
    for kind in (patcher_extension.WrappersMP.APPLY_MODEL, patcher_extension.WrappersMP.OUTER_SAMPLE):
        model.remove_wrappers_with_key(kind, REFERENCE_KEY)
    model.add_wrapper_with_key(patcher_extension.WrappersMP.APPLY_MODEL, REFERENCE_KEY, ReferenceRows(trajectory))
    model.add_wrapper_with_key(patcher_extension.WrappersMP.OUTER_SAMPLE, REFERENCE_KEY,
                               size_check_wrapper(trajectory, node))
    return model
