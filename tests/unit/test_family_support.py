"""The README's family x control table says what the code does: it is generated from the family
adapters' refusals and the methods' joint implementations, and must appear in README.md verbatim."""
from pathlib import Path

from tests.pack import pack_module

support = pack_module("attention.models.support")
models = pack_module("attention.models")
README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_the_generated_one():
    table = support.support_table()
    assert table in README.read_text(), f"README.md lacks the current support table:\n{table}"


def test_every_family_is_a_row_and_unets_run_everything():
    lines = support.support_table().splitlines()[2:]
    assert [line.split(" | ")[0].lstrip("| ") for line in lines] == [f.name for f in models.FAMILIES]
    unet = models.FAMILIES[0]
    assert not unet.joint and all(support.works(unet, names) for _, names in support.FEATURES)


def test_a_refusal_removes_the_feature_from_the_table():
    class Refusing(type(models.FAMILIES[1])):
        refused = {"RegionalControl": "no text stream"}
    family = Refusing()
    assert not support.works(family, ("RegionalControl",))
    assert support.works(family, ("SharedAttentionControl",))
    assert not support.works(family, ("GroupNormShareControl",))  # no joint implementation at all
