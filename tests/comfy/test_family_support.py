"""The README's family x method table says what the code does: it is built from the family adapters'
refusals and the control classes the nodes make (their ``feature`` and ``joint_attention``), and must
appear in README.md verbatim. The families' names reach every place a user reads which models work."""
from pathlib import Path

import pytest

from tests.pack import pack_module

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


@pytest.fixture(scope="module")
def parts(comfy):
    comfy.load_nodes()
    return (pack_module("attention.dispatch.support"), pack_module("attention.models"), pack_module("nodes"),
            pack_module("attention.core.family"))


def table(parts):
    support, models, nodes, _ = parts
    return support.support_table(models.FAMILIES, nodes.controls())


def test_readme_table_is_the_generated_one(parts):
    assert table(parts) in README.read_text(), f"README.md lacks the current support table:\n{table(parts)}"


def test_every_family_is_a_row_and_unets_run_everything(parts):
    support, models, nodes, _ = parts
    lines = table(parts).splitlines()[2:]
    assert [line.split(" | ")[0].lstrip("| ") for line in lines] == [f.name for f in models.FAMILIES]
    unet = models.FAMILIES[0]
    assert not unet.joint and "| no" not in lines[0]


def test_a_refusal_removes_the_method_from_the_table(parts):
    support, models, nodes, family_module = parts

    class Refusing(type(models.FAMILIES[1])):
        def refusal(self, feature, diffusion_model=None):
            return "no text stream" if feature in ("regional attention", family_module.INVERSION) else None
    refusing = Refusing()
    regional = [c for c in nodes.controls() if c.feature == "regional attention"]
    style = [c for c in nodes.controls() if c.feature == "StyleAligned"]
    group_norm = [c for c in nodes.controls() if c.feature == "GroupNorm sharing"]
    assert not support.works(refusing, "regional attention", regional)
    assert support.works(refusing, "StyleAligned", style)
    assert not support.works(refusing, "GroupNorm sharing", group_norm)  # no joint-attention path at all
    row = support.support_table([refusing], nodes.controls()).splitlines()[2]
    assert row == "| Flux.1 | yes | no | no | no | no | yes | no |"  # regional attention and inversion refused


def test_every_place_that_names_the_supported_models_names_every_family(parts, comfy):
    """Tooltips of the MODEL inputs, the help pages of the nodes that take a model, the README's opening
    paragraph and the pyproject description name every family a node runs on (the same table)."""
    support, models, nodes, family = parts
    methods = dict(support.features(nodes.controls()), **{family.INVERSION: ()})
    names = [f.name for f in models.FAMILIES if any(support.works(f, m, c) for m, c in methods.items())]
    assert "SD1.x / SD2.x / SDXL (UNet)" in names and "MiniMax H3" not in names  # MiniMax H3 runs nothing yet
    opening = README.read_text().split("\n\n")[1]
    description = next(line for line in (REPO / "pyproject.toml").read_text().splitlines()
                       if line.startswith("description"))
    for where, text in (("README's opening paragraph", opening), ("pyproject description", description)):
        missing = [n for n in names if n not in text]
        assert not missing, f"{where} does not name {missing}"
    for node in nodes.node_list():
        schema = node.define_schema()
        model = next((i for i in schema.inputs if i.id == "model"), None)
        if model is None:
            continue
        page = (REPO / "web" / "docs" / f"{schema.node_id}.md").read_text()
        runs_on = [n for n in names if n in model.tooltip]
        assert runs_on, f"{schema.node_id}'s model tooltip names no family: {model.tooltip}"
        missing = [n for n in runs_on if n not in page]
        assert not missing, f"web/docs/{schema.node_id}.md does not name {missing} (its node runs on them)"
