"""Which attention layers a control acts on.

A layer is named by its replace key ``(block, block_id, index)``, e.g. ``("input", 4, 1)``. A selection
string is a comma-separated list of: ``all``, a block kind (``input``, ``middle``, ``output``), a block
(``input.4``) or a single layer (``output.2.7``). ``unshared_fraction`` then leaves that fraction of
the selected layers out, spread evenly as StyleAligned's ``only_self_level`` does: counted in diffusers'
``attn_processors`` order (down blocks = input, up blocks = output, then the mid block), which is not
ComfyUI's execution order (input, middle, output).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import AtelierError


def parse_layer_spec(text: str, node: str, block_kinds: tuple, input_name: str = "layers") -> tuple:
    """Parse a selection string into a tuple of key prefixes (an empty tuple means all); ``block_kinds``:
    the words layer keys begin with (every supported family's, e.g. ``input``, ``double``)."""
    prefixes = []
    for raw in (text or "all").split(","):
        token = raw.strip().lower()
        if not token:
            continue
        if token == "all":
            return ()
        parts = token.split(".")
        # isdigit() alone accepts superscripts and other Unicode digits that int() refuses
        ok = parts[0] in block_kinds and len(parts) <= 3 and all(p.isascii() and p.isdigit() and len(p) <= 4
                                                           for p in parts[1:])
        if not ok:
            raise AtelierError(node, input_name, f"'{raw.strip()}' is not a layer selection.",
                               "use 'all', 'input', 'middle', 'output', a block like 'input.4' or a "
                               "layer like 'output.2.7', separated by commas.")
        prefixes.append((parts[0],) + tuple(int(p) for p in parts[1:]))
    return tuple(prefixes)


def spread_mask(n: int, fraction: float) -> list[bool]:
    """True for layers kept (shared); ``fraction`` of the n layers left out, evenly spaced.

    The official rule (StyleAligned's ``_get_switch_vec``): for f <= 0.5, k = int(f n) layers are left
    out, those at positions i with i % (n // k) == 0; for f > 0.5 the same with 1 - f, flipped (the
    layers at those positions are the only ones kept). Where the official code divides by zero
    (k = 0: f < 1/n, or f > 1 - 1/n) the limit is taken: no layer left out for a small f, every layer
    left out for an f close to 1.
    """
    if fraction <= 0.0:
        return [True] * n
    if fraction >= 1.0:
        return [False] * n
    flip = fraction > 0.5
    level = 1.0 - fraction if flip else fraction
    count = int(level * n)
    period = n // count if count else 0
    left_out = [period > 0 and i % period == 0 for i in range(n)]
    if flip:
        left_out = [not x for x in left_out]
    return [not x for x in left_out]


# diffusers registers a UNet's down blocks, then its up blocks, then its mid block
OFFICIAL_ORDER = {"input": 0, "output": 1, "middle": 2}


def official_order(keys: list) -> list:
    """Layer keys in diffusers' attn_processors order (stable: execution order within a block kind)."""
    return sorted(keys, key=lambda k: OFFICIAL_ORDER.get(k[0], 0))


def unmatched_prefixes(prefixes: tuple, all_keys) -> list:
    """The prefixes of a selection that match none of a model's layer keys."""
    return [p for p in prefixes if not any(tuple(k[: len(p)]) == p for k in all_keys)]


def describe_layers(all_keys) -> str:
    """A model's layer names, compactly: 'input.1.0, input.4.0-1, middle.0.0-9, ...'."""
    groups: dict = {}
    for key in all_keys:
        groups.setdefault(tuple(key[:-1]), []).append(key[-1])
    names = []
    for prefix, indices in groups.items():
        low, high = min(indices), max(indices)
        names.append(".".join(map(str, prefix + (low,))) + (f"-{high}" if high != low else ""))
    return ", ".join(names)


@dataclass(frozen=True)
class LayerSelection:
    prefixes: tuple = ()  # empty: every layer
    unshared_fraction: float = 0.0

    def matches(self, key: tuple) -> bool:
        return not self.prefixes or any(key[: len(p)] == p for p in self.prefixes)

    def resolve(self, all_keys: list) -> frozenset:
        """The selected keys among all of a model's layer keys (given in execution order); the unshared
        fraction is spread in the official order (see :func:`official_order`)."""
        chosen = official_order([k for k in all_keys if self.matches(k)])
        keep = spread_mask(len(chosen), self.unshared_fraction)
        return frozenset(k for k, kept in zip(chosen, keep) if kept)
