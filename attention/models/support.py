"""Which control works on which model family: the table the README shows (a unit test keeps the two
equal, tests/unit/test_family_support.py).

A UNet family runs every control. A joint (DiT) family runs a control when the method has a joint
implementation (``core.joint_dispatcher`` registry) and the family's adapter does not refuse it.
Inversion and the reference-image mode drive any supported family through the sampler, unless the
adapter refuses them (``refused["inversion"]``).
"""
from __future__ import annotations

from . import FAMILIES

# README column -> the control classes (by name) a user turns on with it
FEATURES = (
    ("StyleAligned", ("SharedAttentionControl",)),
    ("GroupNorm sharing", ("GroupNormShareControl",)),
    ("ArtBN", ("ArtBNAttentionControl", "ArtBNNormControl")),
    ("image prompt / CreativeSynth", ("ImagePromptControl",)),
    ("regional attention", ("RegionalControl",)),
    ("aesthetic mixing", ("AestheticMixControl",)),
    ("inversion + reference image", ("inversion",)),
)


def _joint_implemented() -> set:
    from ..core import joint_dispatcher
    joint_dispatcher._load_implementations()
    return {cls.__name__ for cls in (*joint_dispatcher.DIT_ATTEND, *joint_dispatcher.DIT_PREPARE)} | {"inversion"}


def works(family, names: tuple) -> bool:
    if any(name in family.refused for name in names):
        return False
    return not family.joint or all(name in _joint_implemented() for name in names)


def support_table() -> str:
    """The README's markdown table: a row per family, a column per feature (yes / no)."""
    head = "| model family | " + " | ".join(name for name, _ in FEATURES) + " |"
    rule = "|---" * (len(FEATURES) + 1) + "|"
    rows = [f"| {family.name} | " + " | ".join("yes" if works(family, names) else "no" for _, names in FEATURES)
            + " |" for family in FAMILIES]
    return "\n".join([head, rule, *rows])
