#!/usr/bin/env python3
"""Write the shipped UI templates workflows/<name>.json from their API twins workflows/api/<name>.json:
nodes laid out in titled groups (columns, no overlaps), a MarkdownNote saying what the workflow does,
what to change first and which settings must match, and every model file a loader names declared the
way ComfyUI's own templates do (node ``properties.models`` = [{name, url, directory}]), so the
frontend's missing-models dialog offers the download.

    .venv/bin/python scripts/build_templates.py [NAME ...]     # then: scripts/make_thumbnails.py

The notes and layouts live in scripts/template_specs.py.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from template_specs import MODELS, SPECS  # noqa: E402

WORKFLOWS = HERE.parent / "workflows"
TITLE_H = 30  # LiteGraph.NODE_TITLE_HEIGHT: the title bar sits above pos[1]
GROUP_TITLE_H = 40  # a group's title band (font 22 px and padding)
GAP = 30  # between nodes, groups and columns
PAD = 12  # group border around its nodes
NOTE_COLOR, NOTE_BG = "#432", "#653"
# The first column holds the note: as wide as frontend 1.32's Nodes 2.0 needs to show a note's text in the
# note's height (its markdown sets larger type than the classic canvas and 1.49 / 1.58; a note whose text is
# longer grows over what lies below it)
NOTE_COLUMN_WIDTH = 380
# The saved view (extra.ds, restored when a template opens). What a template shows first, its note and its model
# loaders, is framed in the part of a 1600 x 1000 window (CSS px) that no tested frontend covers: the left sidebar
# ends at x 59 (1.32.9, 1.49.6; 56 in 1.58.1); the top ends at y 130 in 1.32.9 (its Nodes 2.0 banner, tab bar and
# the floating graph breadcrumb below them) and at 86 in 1.49.6 / 1.58.1 (tab bar, floating graph toolbar);
# 1.58.1's zoom toolbar starts at y 952 and the classic canvas writes its info lines at its bottom left from
# ~y 925; the minimap starts at x 1339. Measured by tests/browser (views.FLOATING_UI), which holds every
# template to it in all three frontends, classic and Nodes 2.0.
VIEW_SAFE = {"left": 59 + 16, "top": 130 + 8, "right": 1339 - 16, "bottom": 925}
# Frontend 1.32 opens a classic layout in Nodes 2.0 spread by 1.2 (positions and sizes, about the top left of its
# nodes; ensureCorrectLayoutScale) at the same saved view: there the spread note and loaders must fit the window
# (the canvas's info lines lie under the nodes' elements; 1.32 has no bottom toolbar).
NODES2_SPREAD, NODES2_BOTTOM = 1.2, 1000 - 4
# LiteGraph draws a node's text only at scale >= its min font size for LOD / text size (8 / 14 = 0.571 at device
# pixel ratio 1, all three frontends): below that the note and the loaders' file names would open unreadable.
MIN_VIEW_SCALE = 0.58
OVERVIEW_SCALE = 0.65  # where the rest of the graph does not fit at a readable scale: as much of it as 0.65 shows


def widget_height(kind: str, opts: dict) -> int:
    if kind == "STRING" and opts.get("multiline"):
        return 100
    return 30  # Nodes 2.0 draws a widget row ~28 px (LiteGraph 24)


def node_height(node_class, class_type: str) -> int:
    """A generous estimate of the node's height on both canvases (LiteGraph's computeSize: slots, then
    widgets; Nodes 2.0 lays the same rows out a little taller)."""
    from api_to_ui_workflow import input_defs, is_widget
    fixed = {"LoadImage": 340, "AtelierBoxRegions": 800}  # the region editor at aspect 1
    if class_type in fixed:
        return fixed[class_type]
    defs = input_defs(node_class)
    sockets = sum(1 for _, kind, opts in defs if not is_widget(kind, opts))
    slots = max(sockets, len(node_class.RETURN_TYPES))
    widgets = sum(widget_height(kind, opts) for _, kind, opts in defs if is_widget(kind, opts))
    return 22 * slots + widgets + 50  # + the Nodes 2.0 badge row and a margin: a node may grow on load


def layout(name: str, api: dict) -> tuple[dict, list, dict]:
    """{node_id: [x, y, w, h]}, groups, the note's [x, y, w, h]."""
    import nodes
    spec = SPECS[name]
    positions, groups = {}, []
    x = 0
    note_box = None
    for column_index, column in enumerate(spec["columns"]):
        width = column.get("width", NOTE_COLUMN_WIDTH if column_index == 0 else 340)
        y = 0
        if column_index == 0:
            note_h = spec.get("note_height", 420)
            note_box = [x, y + TITLE_H, width, note_h]
            y += TITLE_H + note_h + GAP
        for title, ids in column["groups"]:
            top = y
            y += GROUP_TITLE_H + PAD
            for node_id in ids:
                cls = nodes.NODE_CLASS_MAPPINGS[api[node_id]["class_type"]]
                h = spec.get("heights", {}).get(node_id) or node_height(cls, api[node_id]["class_type"])
                positions[node_id] = [x + PAD, y + TITLE_H, width - 2 * PAD, h]
                y += TITLE_H + h + GAP
            y += PAD - GAP
            groups.append({"title": title, "bounding": [x, top, width, y - top], "color": "#3f789e",
                           "font_size": 22, "flags": {}})
            y += GAP
        x += width + GAP
    return positions, groups, note_box


def declare_models(ui: dict, own: dict | None = None):
    """``own``: the template's own downloads of files other templates name too (SPECS "models")."""
    models = {**MODELS, **(own or {})}
    for node in ui["nodes"]:
        named = [v for v in node.get("widgets_values", []) if isinstance(v, str) and v in models]
        if named:
            node["properties"]["models"] = [{"name": v, **models[v]} for v in named]


def build(name: str) -> dict:
    from api_to_ui_workflow import convert
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    positions, groups, note_box = layout(name, api)
    missing = sorted(set(api) - set(positions), key=int)
    if missing:
        raise SystemExit(f"{name}: nodes {missing} are in no group of template_specs.SPECS")
    ui = convert(api, {**positions, "groups": groups})
    declare_models(ui, SPECS[name].get("models"))
    note_id = ui["last_node_id"] + 1
    x, y, w, h = note_box
    ui["nodes"].append({"id": note_id, "type": "MarkdownNote", "title": "Read me first", "pos": [x, y],
                        "size": [w, h], "flags": {}, "order": len(ui["nodes"]), "mode": 0, "inputs": [],
                        "outputs": [], "properties": {}, "widgets_values": [SPECS[name]["note"].strip() + "\n"],
                        "color": NOTE_COLOR, "bgcolor": NOTE_BG})
    ui["last_node_id"] = note_id
    ui["extra"] = {"ds": saved_view(ui, name)}
    return ui


def bounds(boxes) -> tuple:
    boxes = list(boxes)
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def saved_view(ui: dict, name: str) -> dict:
    """The view a template opens at: its notes and model loaders (the nodes declaring model files) whole in
    VIEW_SAFE, their top left at its top left, and whole in the window when frontend 1.32 spreads them for
    Nodes 2.0; as large as shows the whole graph there, no larger than 1; where the whole graph does not fit at
    OVERVIEW_SCALE, at most that; never below MIN_VIEW_SCALE (refused: the first column must get shorter)."""
    def box(node):  # the node as drawn, its title bar above pos[1]
        (x, y), (w, h) = node["pos"], node["size"]
        return (x, y - TITLE_H, x + w, y + h)

    first = bounds(box(n) for n in ui["nodes"] if n["type"] == "MarkdownNote" or n["properties"].get("models"))
    nodes = bounds(box(n) for n in ui["nodes"])
    whole = bounds([nodes, *((x, y, x + w, y + h) for x, y, w, h in (g["bounding"] for g in ui["groups"]))])
    left, top = VIEW_SAFE["left"], VIEW_SAFE["top"]

    def fit(b, right=VIEW_SAFE["right"], bottom=VIEW_SAFE["bottom"]):  # the largest scale showing b[2:] in the box
        return min((right - left) / (b[2] - first[0]), (bottom - top) / (b[3] - first[1]))

    spread = [nodes[i % 2] + NODES2_SPREAD * (first[i] - nodes[i % 2]) for i in range(4)]
    largest = min(fit(first), fit(spread, bottom=NODES2_BOTTOM))
    scale = math.floor(100 * min(largest, max(fit(whole), OVERVIEW_SCALE), 1.0)) / 100
    if scale < MIN_VIEW_SCALE:
        raise SystemExit(f"{name}: its note and model loaders {first} fit the window's free part only at scale "
                         f"{largest:.3f} < {MIN_VIEW_SCALE}, where the frontend draws no text: shorten the first column")
    return {"scale": scale, "offset": [math.ceil(left / scale - first[0]), math.ceil(top / scale - first[1])]}


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or sorted(SPECS)
    sys.path.insert(0, str(HERE.parent))
    from tests.harness.inprocess import get_harness
    get_harness().load_nodes()
    for name in names:
        (WORKFLOWS / f"{name}.json").write_text(json.dumps(build(name), indent=1) + "\n")
        print(f"wrote workflows/{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
