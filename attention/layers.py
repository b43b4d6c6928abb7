"""Which attention layers a control acts on.

A layer is named by its replace key ``(block, block_id, index)``, e.g. ``("input", 4, 1)``. A selection
string is a comma-separated list of: ``all``, a block kind (``input``, ``middle``, ``output``), a block
(``input.4``) or a single layer (``output.2.7``). ``unshared_fraction`` then leaves that fraction of
the selected layers out, spread evenly along the execution order, as StyleAligned's ``only_self_level``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import AtelierError

KINDS = ("input", "middle", "output")


def parse_layer_spec(text: str, node: str, input_name: str = "layers") -> tuple:
    """Parse a selection string into a tuple of key prefixes (an empty tuple means all)."""
    prefixes = []
    for raw in (text or "all").split(","):
        token = raw.strip().lower()
        if not token:
            continue
        if token == "all":
            return ()
        parts = token.split(".")
        ok = parts[0] in KINDS and len(parts) <= 3 and all(p.isdigit() for p in parts[1:])
        if not ok:
            raise AtelierError(node, input_name, f"'{raw.strip()}' is not a layer selection.",
                               "use 'all', 'input', 'middle', 'output', a block like 'input.4' or a "
                               "layer like 'output.2.7', separated by commas.")
        prefixes.append((parts[0],) + tuple(int(p) for p in parts[1:]))
    return tuple(prefixes)


def spread_mask(n: int, fraction: float) -> list[bool]:
    """True for layers kept; ``fraction`` of n left out, evenly spaced (official StyleAligned rule)."""
    if fraction <= 0.0:
        return [True] * n
    if fraction >= 1.0:
        return [False] * n
    flip = fraction > 0.5
    level = 1.0 - fraction if flip else fraction
    count = int(level * n)
    if count == 0:
        return [True] * n
    period = max(n // count, 1)
    left_out = [i % period == 0 for i in range(n)]
    if flip:
        left_out = [not x for x in left_out]
    return [not x for x in left_out]


@dataclass(frozen=True)
class LayerSelection:
    prefixes: tuple = ()  # empty: every layer
    unshared_fraction: float = 0.0

    def matches(self, key: tuple) -> bool:
        return not self.prefixes or any(key[: len(p)] == p for p in self.prefixes)

    def resolve(self, all_keys: list) -> frozenset:
        """The selected keys among all of a model's layer keys (given in execution order)."""
        chosen = [k for k in all_keys if self.matches(k)]
        keep = spread_mask(len(chosen), self.unshared_fraction)
        return frozenset(k for k, kept in zip(chosen, keep) if kept)
