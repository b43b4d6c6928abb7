"""The JSON of AtelierBoxRegions (written by its editor or by hand), read strictly.

    {"width": 512, "height": 512,                      (optional: the editor's aspect, in pixels)
     "boxes": [{"x": 0.1, "y": 0.2, "w": 0.4, "h": 0.5, "prompt": "a red house",
                "weight": 1.0, "curve": "cosine", "end_weight": 0.3, "switch_at": 0.5,
                "weights": "1, 0.8, 0.5",
                "keyframes": [{"at": 1.0, "x": 0.5, "y": 0.2, "w": 0.4, "h": 0.5}]}]}
                                                      (a bare list of boxes is read too)

``keyframes`` (optional, for video) move the box over the clip: the box's own x, y, w, h hold at frame
fraction 0 (the first frame) unless a keyframe says otherwise, each keyframe holds at its ``at`` (0 = the
first frame, 1 = the last), linear in between (see ``attention/region_masks.py``).

Every number is bounded (the same ranges as AtelierRegion's inputs), every key known, at most
:data:`MAX_BOXES` boxes and :data:`MAX_LIST_WEIGHTS` list weights; an error names the box and the
field: ``regions_json box 2: weight ...``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .core.errors import AtelierError
from .weight_curves import CURVE_KINDS, WeightCurve

MAX_BOXES = 64
MAX_LIST_WEIGHTS = 10_000
MAX_SIDE = 16_384  # editor width/height in pixels
MAX_PROMPT = 10_000  # characters
WEIGHT_RANGE = (-2.0, 5.0)  # AtelierRegion's weight / end_weight
UNIT = (0.0, 1.0)
TOP_KEYS = ("width", "height", "boxes")
BOX_KEYS = ("x", "y", "w", "h", "prompt", "weight", "curve", "end_weight", "switch_at", "weights", "keyframes")
KEYFRAME_KEYS = ("at", "x", "y", "w", "h")
MAX_KEYFRAMES = 256
EXAMPLE = ('{"boxes": [{"x": 0.1, "y": 0.2, "w": 0.4, "h": 0.5, "prompt": "a red house", "weight": 1.0}]} '
           '(fractions of the image), or draw the boxes in the node\'s editor')


@dataclass(frozen=True)
class Box:
    prompt: str
    rect: tuple  # (x, y, w, h) in fractions of the image
    curve: WeightCurve
    keyframes: tuple = ()  # ((at, (x, y, w, h)), ...) sorted by at, the box at 0 included; () = it stays


class BoxReader:
    def __init__(self, node: str, input_name: str):
        self.node, self.input_name = node, input_name

    def error(self, where: str, problem: str, fix: str = f"write {EXAMPLE}."):
        return AtelierError(self.node, self.input_name, f"{where}{problem}".strip(), fix)

    def number(self, where: str, box: dict, key: str, default, bounds: tuple) -> float:
        value = box.get(key, default)
        low, high = bounds
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and (isinstance(value, int) or math.isfinite(value)) and low <= value <= high):
            raise self.error(where, f"{key} {json.dumps(value)} is not a number from {low:g} to {high:g}.",
                             f"give {key} a number from {low:g} to {high:g}.")
        return float(value)

    def known_keys(self, where: str, data: dict, known: tuple):
        unknown = [k for k in data if k not in known]
        if unknown:
            raise self.error(where, f"has unknown key(s) {', '.join(map(json.dumps, unknown[:5]))}.",
                             f"use only {', '.join(known)} (check the spelling).")


def parse_region_json(text: str, node: str, input_name: str = "regions_json") -> list[Box]:
    reader = BoxReader(node, input_name)
    try:
        data = json.loads(text or "{}")
    except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than Python's stack
        detail = "it is nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise reader.error("", f"the text is not valid JSON ({detail}).") from None
    if isinstance(data, dict):
        reader.known_keys("", data, TOP_KEYS)
        for side in ("width", "height"):
            if side in data:
                reader.number("", data, side, None, (1, MAX_SIDE))
        boxes = data.get("boxes", [])
    else:
        boxes = data
    if not isinstance(boxes, list) or not all(isinstance(b, dict) for b in boxes):
        raise reader.error("", 'there is no list of boxes under "boxes".')
    if len(boxes) > MAX_BOXES:
        raise reader.error("", f"it has {len(boxes)} boxes (at most {MAX_BOXES}).",
                           f"keep at most {MAX_BOXES} boxes, or chain several AtelierBoxRegions.")
    return [read_box(reader, f"box {i + 1}: ", box) for i, box in enumerate(boxes)]


def read_box(reader: BoxReader, where: str, box: dict) -> Box:
    reader.known_keys(where, box, BOX_KEYS)
    prompt = box.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise reader.error(where, "has no prompt.", 'give each box a "prompt" text.')
    if len(prompt) > MAX_PROMPT:
        raise reader.error(where, f"its prompt has {len(prompt):,} characters (at most {MAX_PROMPT:,}).",
                           "shorten the prompt.")
    check_surrogates(reader, where, prompt)
    rect = read_rect(reader, where, box)
    kind = box.get("curve", "constant")
    if kind not in CURVE_KINDS:
        raise reader.error(where, f"curve {json.dumps(kind)} is not a weight curve.",
                           f"use one of: {', '.join(CURVE_KINDS)}.")
    weight = reader.number(where, box, "weight", 1.0, WEIGHT_RANGE)
    end = reader.number(where, box, "end_weight", weight, WEIGHT_RANGE)
    switch_at = reader.number(where, box, "switch_at", 0.5, UNIT)
    values = read_list_weights(reader, where, box.get("weights", "")) if kind == "list" else ()
    keyframes = read_keyframes(reader, where, rect, box.get("keyframes", []))
    return Box(prompt.strip(), rect, WeightCurve(kind, weight, end, switch_at, values), keyframes)


def read_rect(reader: BoxReader, where: str, box: dict) -> tuple:
    x, y, w, h = (reader.number(where, box, key, None, UNIT) for key in ("x", "y", "w", "h"))
    if w <= 0 or h <= 0 or x + w > 1.0 + 1e-6 or y + h > 1.0 + 1e-6:
        raise reader.error(where, f"the box x={x}, y={y}, w={w}, h={h} is empty or reaches outside the image.",
                           "keep 0 <= x, y and x + w <= 1, y + h <= 1 with w, h > 0.")
    return x, y, w, h


def read_keyframes(reader: BoxReader, where: str, rect: tuple, raw) -> tuple:
    """((at, (x, y, w, h)), ...) sorted by at with the box itself at 0 unless a keyframe is there; ()
    when there are none (a box that stays)."""
    if not isinstance(raw, list) or not all(isinstance(k, dict) for k in raw):
        raise reader.error(where, "keyframes is not a list of {at, x, y, w, h}.",
                           'write "keyframes": [{"at": 1.0, "x": 0.5, "y": 0.2, "w": 0.4, "h": 0.5}].')
    if len(raw) > MAX_KEYFRAMES:
        raise reader.error(where, f"it has {len(raw)} keyframes (at most {MAX_KEYFRAMES}).", "keep fewer keyframes.")
    frames = {}
    for index, keyframe in enumerate(raw, 1):
        at_where = f"{where}keyframe {index}: "
        reader.known_keys(at_where, keyframe, KEYFRAME_KEYS)
        at = reader.number(at_where, keyframe, "at", None, UNIT)
        if at in frames:
            raise reader.error(at_where, f"a second keyframe at {at:g}.", "give each keyframe its own 'at'.")
        frames[at] = read_rect(reader, at_where, keyframe)
    if not frames:
        return ()
    frames.setdefault(0.0, rect)
    return tuple(sorted(frames.items()))


def read_list_weights(reader: BoxReader, where: str, raw) -> tuple:
    if isinstance(raw, str):
        items = [item for item in raw.replace(";", ",").split(",") if item.strip()]
    elif isinstance(raw, list):
        items = raw
    else:
        raise reader.error(where, f"weights {json.dumps(raw)} is neither a list nor a text of numbers.",
                           'write "weights": "1, 0.8, 0.5, 0" or [1, 0.8, 0.5, 0].')
    if not items:
        raise reader.error(where, "the 'list' curve has no weights.",
                           "write one weight per step, e.g. '1, 1, 0.5, 0', or pick another curve.")
    if len(items) > MAX_LIST_WEIGHTS:
        raise reader.error(where, f"it has {len(items)} list weights (at most {MAX_LIST_WEIGHTS}).",
                           "give one weight per step.")
    values = []
    for index, item in enumerate(items):
        try:
            value = float(item) if isinstance(item, str) else item
        except ValueError:
            value = None
        values.append(reader.number(where, {f"weights[{index + 1}]": value}, f"weights[{index + 1}]", None,
                                    WEIGHT_RANGE))
    return tuple(values)


def check_surrogates(reader: BoxReader, where: str, text: str):
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            raise reader.error(where, f"character {index + 1} of its prompt is a lone surrogate "
                               f"(U+{ord(char):04X}), half of a UTF-16 pair that no text encoder can read.",
                               "retype or remove that character.")


def parse_keyframe_text(text: str, node: str, input_name: str, rect: tuple) -> tuple:
    """AtelierRegion's ``keyframes`` text, "at: x, y, width, height; ..." (e.g. "1: 0.5, 0.2, 0.4, 0.5"), as
    :func:`read_keyframes` reads a box's JSON keyframes: the box ``rect`` at 0 unless given, () when empty."""
    reader = BoxReader(node, input_name)
    entries = [entry for entry in (text or "").replace("\n", ";").split(";") if entry.strip()]
    raw = []
    for index, entry in enumerate(entries, 1):
        at, sep, numbers = entry.partition(":")
        values = [part.strip() for part in numbers.split(",")]
        if not sep or len(values) != 4:
            raise reader.error(f"keyframe {index}: ", f"'{entry.strip()}' is not 'at: x, y, width, height'.",
                               "write e.g. '1: 0.5, 0.2, 0.4, 0.5' (at 1 = the last frame), entries separated by ';'.")
        try:
            numbers = [float(at)] + [float(v) for v in values]
        except ValueError:
            raise reader.error(f"keyframe {index}: ", f"'{entry.strip()}' holds something that is not a number.",
                               "write e.g. '1: 0.5, 0.2, 0.4, 0.5'.") from None
        raw.append(dict(zip(KEYFRAME_KEYS, numbers)))
    return read_keyframes(reader, "", rect, raw)
