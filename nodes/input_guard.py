"""One guard for the inputs of every Atelier node, run before the node's own code.

ComfyUI's prompt validation lets through what a node must still refuse: NaN and inf pass its min/max
check (every comparison with NaN is false), ComfyUI 0.3.75 checks neither the options of a V3 combo
nor the type of a value given where a link (MODEL, CLIP, LATENT, ...) belongs, and in-process callers
skip validation altogether. :func:`guarded` wraps a node's ``execute``: each argument is checked
against the input of the same name in the node's own schema and an :class:`AtelierError` names the
node, the input and the fix. Numbers come back as ``float`` / ``int``; everything else unchanged.
"""
from __future__ import annotations

import functools
import inspect
import math
import numbers

import torch

from ..attention.core.errors import AtelierError
from ..attention.ip_adapter_file import ImageAdapter
from ..attention.regional import Region
from ..inversion.trajectory import Trajectory

MAX_TEXT = 1_000_000  # characters in one text input; a prompt never needs more
# Levels of nested "( )" in one text. ComfyUI's prompt weighting reads each level as a further x1.1 on the
# words inside (1.1 ** 32 = 21) and its tokenizer (comfy/sd1_clip.py token_weights, every text encoder)
# recurses once per level: a few hundred levels end in Python's RecursionError.
MAX_NESTING = 32
NESTING_FIX = ("use fewer levels of ( ), give a weight explicitly such as (word:1.5), or write literal "
               "parentheses as \\( and \\).")


def guarded(execute):
    """Decorator for a node's ``execute`` (put it under ``@classmethod``)."""
    signature = inspect.signature(execute)

    @functools.wraps(execute)
    def checked_execute(cls, *args, **kwargs):
        bound = signature.bind(cls, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        values.pop(next(iter(signature.parameters)))
        return execute(cls, **check_inputs(cls.define_schema(), values))

    return checked_execute


def check_inputs(schema, values: dict) -> dict:
    """``values`` with every input checked against ``schema`` (an io.Schema); raises AtelierError."""
    checked = dict(values)
    for spec in schema.inputs:
        if spec.id in values:
            checked[spec.id] = check_value(schema.node_id, spec, values[spec.id])
    return checked


def check_value(node: str, spec, value):
    io_type = str(spec.get_io_type())
    if value is None:
        if getattr(spec, "optional", False) or io_type == "CLIP":  # CLIP: the nodes say "no text encoder"
            return None
        raise AtelierError(node, spec.id, "no value was given (null).", f"give a {describe(spec)}.")
    check = SCALARS.get(io_type)
    if check is not None:
        return check(node, spec, value)
    if hasattr(spec, "options"):
        return check_option(node, spec, value)
    accepts = LINKED.get(io_type)
    if accepts is not None and not accepts(value):
        raise AtelierError(node, spec.id, f"got {shown(value)}, which is not a {io_type}.",
                           f"connect the {io_type} output of a node (e.g. {SOURCES.get(io_type, 'a loader')}).")
    if accepts is None and isinstance(value, (str, numbers.Number, list, dict)):
        raise AtelierError(node, spec.id, f"got the literal {shown(value)} where a {io_type} link belongs.",
                           f"connect a node's {io_type} output.")
    return value


def check_float(node: str, spec, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AtelierError(node, spec.id, f"{shown(value)} is not a number.", f"give a {describe(spec)}.")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise AtelierError(node, spec.id, f"{shown(value)} is not a finite number.", f"give a {describe(spec)}.")
    return check_range(node, spec, number)


def check_int(node: str, spec, value) -> int:
    whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole:
        raise AtelierError(node, spec.id, f"{shown(value)} is not a whole number.", f"give a {describe(spec)}.")
    return check_range(node, spec, int(value))


def check_range(node: str, spec, number):
    low, high = getattr(spec, "min", None), getattr(spec, "max", None)
    if (low is not None and number < low) or (high is not None and number > high):
        raise AtelierError(node, spec.id, f"{number} is outside {low}..{high}.", f"give a {describe(spec)}.")
    return number


def check_boolean(node: str, spec, value) -> bool:
    if not isinstance(value, bool):
        raise AtelierError(node, spec.id, f"{shown(value)} is not true or false.", "give true or false.")
    return value


def check_string(node: str, spec, value) -> str:
    if not isinstance(value, str):
        raise AtelierError(node, spec.id, f"{shown(value)} is not text.", "give a text (a JSON string).")
    check_text(node, spec.id, value)
    return value


def check_text(node: str, input_name: str, text: str):
    """Refuse what no text encoder can take: over-long text, lone UTF-16 surrogates, and parentheses
    nested deeper than ComfyUI's prompt weighting can read."""
    if len(text) > MAX_TEXT:
        raise AtelierError(node, input_name, f"the text has {len(text):,} characters (at most {MAX_TEXT:,}).",
                           "shorten it.")
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            raise AtelierError(node, input_name, f"character {index + 1} is a lone surrogate (U+{ord(char):04X}), "
                               "half of a UTF-16 pair that no text encoder can read.",
                               "retype or remove that character (it usually comes from a broken copy/paste).")
    check_nesting(node, input_name, text)


def check_nesting(node: str, input_name: str, text: str, what: str = "the text"):
    """Refuse parentheses nested deeper than :data:`MAX_NESTING` levels (``what`` names the text)."""
    depth = parenthesis_depth(text) if text.count("(") > MAX_NESTING else 0  # fewer cannot nest deeper
    if depth > MAX_NESTING:
        raise AtelierError(node, input_name, f"{what} nests parentheses {depth} levels deep (at most "
                           f"{MAX_NESTING}): ComfyUI's prompt weighting multiplies the weight by 1.1 per level and "
                           "its tokenizer recurses once per level.", NESTING_FIX)


def tokenize(clip, text: str, node: str, input_name: str):
    """``clip.tokenize(text)``; the tokenizer's RecursionError (deeply nested parentheses that slipped
    past :func:`check_nesting`, e.g. on a deep call stack) becomes an AtelierError."""
    try:
        return clip.tokenize(text)
    except RecursionError:
        raise AtelierError(node, input_name, "ComfyUI's tokenizer ran out of recursion depth reading the "
                           "parentheses of the prompt.", NESTING_FIX) from None


def parenthesis_depth(text: str) -> int:
    """How many unescaped ( are open where a ) closes one, at most: a bound on the levels of ComfyUI's
    prompt weighting (escaped \\( \\) are literal; a ( that nothing closes adds no level)."""
    text = text.replace("\\(", "").replace("\\)", "")
    depth = deepest = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            deepest = max(deepest, depth)
            depth -= 1
    return deepest


def check_option(node: str, spec, value):
    options = list(spec.options or [])
    if isinstance(value, (str, int)) and not isinstance(value, bool) and value in options:
        return value
    listed = ", ".join(map(str, options[:20])) + (f" ... ({len(options)} in all)" if len(options) > 20 else "")
    raise AtelierError(node, spec.id, f"{shown(value)} is not one of its options ({listed or 'none'}).",
                       "pick one from the list." if options else
                       "put a matching file in the models folder and refresh the node list (press R).")


def describe(spec) -> str:
    kind = {"FLOAT": "number", "INT": "whole number"}.get(str(spec.get_io_type()), str(spec.get_io_type()))
    low, high = getattr(spec, "min", None), getattr(spec, "max", None)
    return f"{kind} from {low} to {high}" if low is not None and high is not None else kind


def shown(value, limit: int = 60) -> str:
    text = repr(value)
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{text} ({type(value).__name__})"


def is_conditioning(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], torch.Tensor)
        and isinstance(entry[1], dict) for entry in value)


SCALARS = {"FLOAT": check_float, "INT": check_int, "BOOLEAN": check_boolean, "STRING": check_string}
LINKED = {
    "MODEL": lambda v: hasattr(v, "get_model_object") and hasattr(v, "clone"),
    "CLIP": lambda v: hasattr(v, "tokenize") and hasattr(v, "encode_from_tokens"),
    "CONDITIONING": is_conditioning,
    "LATENT": lambda v: isinstance(v, dict) and isinstance(v.get("samples"), torch.Tensor),
    "MASK": lambda v: isinstance(v, torch.Tensor),
    "IMAGE": lambda v: isinstance(v, torch.Tensor),
    "CLIP_VISION": lambda v: hasattr(v, "encode_image"),
    "CLIP_VISION_OUTPUT": lambda v: not isinstance(v, (str, numbers.Number, list, tuple)) and (
        hasattr(v, "image_embeds") or hasattr(v, "penultimate_hidden_states") or hasattr(v, "last_hidden_state")),
    "ATELIER_TRAJECTORY": lambda v: isinstance(v, Trajectory),
    "ATELIER_REGIONS": lambda v: isinstance(v, tuple) and all(isinstance(r, Region) for r in v),
    "ATELIER_IPADAPTER": lambda v: isinstance(v, ImageAdapter),
}
SOURCES = {
    "MODEL": "Load Checkpoint", "CLIP": "Load Checkpoint", "CONDITIONING": "CLIP Text Encode",
    "LATENT": "Empty Latent Image or VAE Encode", "MASK": "a mask loader", "IMAGE": "Load Image",
    "CLIP_VISION": "Load CLIP Vision", "CLIP_VISION_OUTPUT": "CLIP Vision Encode",
    "ATELIER_TRAJECTORY": "AtelierInvert", "ATELIER_REGIONS": "AtelierRegion or AtelierBoxRegions",
    "ATELIER_IPADAPTER": "AtelierIPAdapterLoader",
}
