#!/usr/bin/env python3
"""Turn an API-format graph into a litegraph 0.4 UI workflow (same node ids), reading each node's
inputs from the in-process ComfyUI so widgets_values follow the node's own widget order.

    .venv/bin/python scripts/api_to_ui_workflow.py workflows/api/NAME.json workflows/NAME.json \
        --layout layout.json   # optional {node_id: [x, y, w, h]}, {"groups": [...]}

Used to write the shipped templates; the e2e tests run the API twins.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def input_defs(node_class) -> list[tuple[str, str, dict]]:
    spec = node_class.INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, value in (spec.get(section) or {}).items():
            kind, opts = value[0], (value[1] if len(value) > 1 else {}) or {}
            out.append((name, "COMBO" if isinstance(kind, list) else kind, opts))
    return out


def is_widget(kind: str, opts: dict) -> bool:
    return kind in WIDGET_TYPES and not opts.get("forceInput")


def convert(api: dict, layout: dict) -> dict:
    import nodes
    ui_nodes, links = [], []
    incoming = {}  # (to_node, input name) -> link id
    outgoing = {}  # (from_node, slot) -> [link ids]
    for node_id, node in api.items():
        cls = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
        for name, kind, _ in input_defs(cls):
            value = node["inputs"].get(name)
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                link_id = len(links) + 1
                src_cls = nodes.NODE_CLASS_MAPPINGS[api[value[0]]["class_type"]]
                links.append([link_id, int(value[0]), value[1], int(node_id), None, src_cls.RETURN_TYPES[value[1]]])
                incoming[(node_id, name)] = link_id
                outgoing.setdefault((value[0], value[1]), []).append(link_id)
    order = {nid: i for i, nid in enumerate(api)}
    for node_id, node in api.items():
        cls = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
        inputs, widgets = [], []
        for name, kind, opts in input_defs(cls):
            value = node["inputs"].get(name)
            linked = (node_id, name) in incoming
            entry = {"name": name, "type": kind, "link": incoming.get((node_id, name)), "localized_name": name}
            if is_widget(kind, opts):
                entry["widget"] = {"name": name}
                widgets.append(value if not linked else opts.get("default"))
                if opts.get("control_after_generate") or name in ("seed", "noise_seed"):
                    widgets.append("fixed")
                if opts.get("image_upload"):
                    widgets.append("image")
            inputs.append(entry)
        inputs.sort(key=lambda entry: "widget" in entry)  # the frontend lists sockets first, then widgets
        for slot, entry in enumerate(inputs):
            if entry["link"] is not None:
                links[entry["link"] - 1][4] = slot
        names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
        outputs = [{"name": names[i], "type": t, "slot_index": i, "links": outgoing.get((node_id, i), []),
                    "localized_name": names[i]} for i, t in enumerate(cls.RETURN_TYPES)]
        x, y, w, h = layout.get(node_id, [40 + 320 * order[node_id], 60, 300, 120])
        ui = {"id": int(node_id), "type": node["class_type"], "pos": [x, y], "size": [w, h], "flags": {},
              "order": order[node_id], "mode": 0, "inputs": inputs, "outputs": outputs,
              "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets}
        title = node.get("_meta", {}).get("title")
        if title:
            ui["title"] = title
        ui_nodes.append(ui)
    return {"last_node_id": max(int(k) for k in api), "last_link_id": len(links), "nodes": ui_nodes,
            "links": links, "groups": layout.get("groups", []), "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [20, 40]}}, "version": 0.4}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("api")
    ap.add_argument("ui")
    ap.add_argument("--layout")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.harness.inprocess import get_harness
    get_harness().load_nodes()
    layout = json.loads(Path(a.layout).read_text()) if a.layout else {}
    api = json.loads(Path(a.api).read_text())
    Path(a.ui).write_text(json.dumps(convert(api, layout), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
