"""Which method works on which model family: the table the README shows, built from the families' and
the controls' own attributes (tests/comfy/test_family_support.py keeps README and code equal).

A column is a method as users know it (a control class's ``feature``; several classes may share one,
e.g. ArtBN on attention and on GroupNorms), then inversion with the reference-image mode. A family runs
a method when every control class of it has a path for the family's kind of attention (every control
runs on UNets; on an image DiT it needs ``joint_attention``, on a video transformer
``separate_attention``) and the family's adapter does not refuse it.
"""
from __future__ import annotations

from ..core.family import INVERSION
from .dispatcher import runs_on

INVERSION_COLUMN = "inversion + reference image"


def features(controls) -> dict:
    """Method (``feature``) -> its control classes, in the order ``controls`` first names them."""
    columns: dict = {}
    for control in controls:
        columns.setdefault(control.feature, []).append(control)
    return columns


def works(family, feature: str, classes=()) -> bool:
    """Whether ``family`` runs ``feature`` (made of the control ``classes``)."""
    if family.refusal(feature) is not None:
        return False
    return all(runs_on(c, family) for c in classes)


def support_table(families, controls) -> str:
    """The README's markdown table: a row per family, a column per method (yes / no). ``controls``: the
    control classes the nodes make (``nodes.controls()``)."""
    columns = [(name, name, classes) for name, classes in features(controls).items()]
    columns.append((INVERSION_COLUMN, INVERSION, ()))
    head = "| model family | " + " | ".join(title for title, _, _ in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    rows = [f"| {family.name} | " + " | ".join("yes" if works(family, feature, classes) else "no"
                                               for _, feature, classes in columns) + " |" for family in families]
    return "\n".join([head, rule, *rows])
