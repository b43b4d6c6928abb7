"""The shipped UI templates (workflows/*.json) open readable for a real user, computed from the JSON:
every model file a loader names is declared for ComfyUI's missing-models dialog, no test-bed file is
named, no two nodes overlap, no group title is covered, every node sits in a titled group, a note
explains the workflow, every template opens framed (its note and model loaders in the part of the window no
frontend covers, at a scale where text is drawn; tests/browser measures it in the frontends) and every
template has its own small thumbnail."""
from __future__ import annotations

import hashlib
import json
from itertools import combinations
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
TEMPLATES = sorted(WORKFLOWS.glob("*.json"))
NODE_TITLE_HEIGHT = 30  # LiteGraph.NODE_TITLE_HEIGHT: a node's title bar is drawn above pos[1]
GROUP_TITLE_HEIGHT = 34  # a group's title band (font_size 22 and its padding)
NOTES = ("Note", "MarkdownNote")
MODEL_FOLDER = {"CheckpointLoaderSimple": "checkpoints", "LoraLoader": "loras", "CLIPVisionLoader": "clip_vision",
                "ControlNetLoader": "controlnet", "AtelierIPAdapterLoader": "ipadapter",
                "UNETLoader": "diffusion_models", "DualCLIPLoader": "text_encoders", "CLIPLoader": "text_encoders",
                "VAELoader": "vae"}
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")
THUMBNAIL_MAX_BYTES = 40_000


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def node_box(node: dict) -> tuple:
    x, y = node["pos"]
    w, h = node["size"]
    return (x, y - NODE_TITLE_HEIGHT, x + w, y + h)


def overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(inner: tuple, outer: tuple) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def group_box(group: dict) -> tuple:
    x, y, w, h = group["bounding"]
    return (x, y, x + w, y + h)


def model_names(node: dict) -> list[str]:
    return [v for v in node.get("widgets_values") or [] if isinstance(v, str) and v.lower().endswith(MODEL_SUFFIXES)]


ids = [p.stem for p in TEMPLATES]


def test_there_are_templates_each_with_an_api_twin():
    assert len(TEMPLATES) >= 8
    for template in TEMPLATES:
        assert (WORKFLOWS / "api" / template.name).is_file(), template.name


@pytest.mark.parametrize("template", TEMPLATES, ids=ids)
def test_every_model_a_loader_names_is_declared_with_url_and_directory(template):
    workflow = load(template)
    named = 0
    for node in workflow["nodes"]:
        for name in model_names(node):
            named += 1
            declared = {m["name"]: m for m in node.get("properties", {}).get("models", [])}
            assert name in declared, f"{template.stem}: node {node['id']} ({node['type']}) names {name} undeclared"
            entry = declared[name]
            assert entry["url"].startswith("https://huggingface.co/") and entry["url"].endswith(".safetensors"), entry
            assert entry["directory"] == MODEL_FOLDER[node["type"]], (node["type"], entry)
    assert named, f"{template.stem} names no model file"


@pytest.mark.parametrize("path", TEMPLATES + sorted((WORKFLOWS / "api").glob("*.json")),
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_no_test_bed_file_is_named(path):
    text = path.read_text()
    assert "atelier_tiny_" not in text and "atelier_reference.png" not in text and "atelier_content.png" not in text


@pytest.mark.parametrize("template", TEMPLATES, ids=ids)
def test_template_names_the_same_files_as_its_api_twin(template):
    twin = load(WORKFLOWS / "api" / template.name)
    api_names = {v for n in twin.values() for v in n["inputs"].values() if isinstance(v, str)
                 and v.lower().endswith(MODEL_SUFFIXES + (".png", ".jpg"))}
    ui_names = {v for n in load(template)["nodes"] for v in n.get("widgets_values") or [] if isinstance(v, str)
                and v.lower().endswith(MODEL_SUFFIXES + (".png", ".jpg"))}
    assert ui_names == api_names


@pytest.mark.parametrize("template", TEMPLATES, ids=ids)
def test_no_two_nodes_overlap(template):
    nodes = load(template)["nodes"]
    clashes = [(a["id"], b["id"]) for a, b in combinations(nodes, 2) if overlap(node_box(a), node_box(b))]
    assert not clashes, f"{template.stem}: overlapping nodes (ids) {clashes}"


@pytest.mark.parametrize("template", TEMPLATES, ids=ids)
def test_groups_are_titled_hold_every_node_and_no_node_covers_a_title(template):
    workflow = load(template)
    groups = workflow["groups"]
    assert groups and all(g.get("title", "").strip() for g in groups)
    for group in groups:
        x0, y0, x1, _ = group_box(group)
        band = (x0, y0, x1, y0 + GROUP_TITLE_HEIGHT)
        covering = [n["id"] for n in workflow["nodes"] if overlap(node_box(n), band)]
        assert not covering, f"{template.stem}: nodes {covering} cover the title of group {group['title']!r}"
        width = len(group["title"]) * group.get("font_size", 24) * 0.55  # a generous glyph width
        assert width <= group["bounding"][2] - 10, f"{template.stem}: title {group['title']!r} is wider than its group"
    for a, b in combinations(groups, 2):
        assert not overlap(group_box(a), group_box(b)), (a["title"], b["title"])
    for node in workflow["nodes"]:
        if node["type"] not in NOTES:
            homes = [g["title"] for g in groups if inside(node_box(node), group_box(g))]
            assert len(homes) == 1, f"{template.stem}: node {node['id']} ({node['type']}) in groups {homes}"


@pytest.mark.parametrize("template", TEMPLATES, ids=ids)
def test_a_note_says_what_it_does_what_to_change_and_what_must_match(template):
    workflow = load(template)
    notes = [n for n in workflow["nodes"] if n["type"] in NOTES]
    assert notes, f"{template.stem} has no Note or MarkdownNote"
    text = "\n".join(str(v) for n in notes for v in n["widgets_values"])
    assert "Change first" in text and "Models" in text
    for name in {v for n in workflow["nodes"] for v in model_names(n)}:
        assert name in text, f"{template.stem}: the note does not name {name}"
    types = {n["type"] for n in workflow["nodes"]}
    if "AtelierInvert" in types:
        assert "Must match" in text
    if {"AtelierInvert", "KSamplerAdvanced"} <= types:  # regenerating from x_T: the schedule must be the same
        assert "**steps**" in text and "**scheduler**" in text


def test_every_template_has_its_own_small_thumbnail():
    digests = {}
    for template in TEMPLATES:
        thumb = template.with_suffix(".jpg")
        assert thumb.is_file(), f"no thumbnail {thumb.name}"
        data = thumb.read_bytes()
        assert data[:3] == b"\xff\xd8\xff" and len(data) <= THUMBNAIL_MAX_BYTES, (thumb.name, len(data))
        digests.setdefault(hashlib.sha256(data).hexdigest(), []).append(thumb.name)
    assert len(digests) == len(TEMPLATES), [names for names in digests.values() if len(names) > 1]


def screen_box(box: tuple, ds: dict) -> tuple:
    """A graph-space box on the page at view ``ds`` (LiteGraph: page = (graph + offset) * scale)."""
    (dx, dy), k = ds["offset"], ds["scale"]
    return ((box[0] + dx) * k, (box[1] + dy) * k, (box[2] + dx) * k, (box[3] + dy) * k)


@pytest.mark.parametrize("template", TEMPLATES, ids=ids)
def test_the_saved_view_frames_the_note_and_the_model_loaders(template, monkeypatch):
    """At extra.ds the notes and loaders lie in build_templates.VIEW_SAFE (1600 x 1000 less sidebar, bars and
    toolbars), still lie in the window when frontend 1.32 spreads the layout by 1.2 for Nodes 2.0, and the scale
    is one at which LiteGraph draws text."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import build_templates as bt
    workflow = load(template)
    ds = workflow["extra"]["ds"]
    assert bt.MIN_VIEW_SCALE <= ds["scale"] <= 1.0
    first = [node_box(n) for n in workflow["nodes"] if n["type"] in NOTES or n.get("properties", {}).get("models")]
    assert any(n["type"] in NOTES for n in workflow["nodes"]) and len(first) >= 2
    anchor = (min(node_box(n)[0] for n in workflow["nodes"]), min(node_box(n)[1] for n in workflow["nodes"]))
    safe, tolerance = bt.VIEW_SAFE, 1.0  # px: the offset is whole graph units, rounded up
    for box in first:
        x0, y0, x1, y1 = screen_box(box, ds)
        assert (safe["left"] <= x0 and safe["top"] <= y0 and x1 <= safe["right"] + tolerance
                and y1 <= safe["bottom"] + tolerance), (template.stem, box, (x0, y0, x1, y1), safe)
        spread = tuple(anchor[i % 2] + bt.NODES2_SPREAD * (box[i] - anchor[i % 2]) for i in range(4))
        assert screen_box(spread, ds)[3] <= bt.NODES2_BOTTOM + tolerance, (template.stem, "1.32 Nodes 2.0", spread)
