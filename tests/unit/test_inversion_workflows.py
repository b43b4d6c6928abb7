"""The inversion family's UI templates and API twins describe the same graph."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "workflows"
NOTES = ("Note", "MarkdownNote")


@pytest.mark.parametrize("name", ["invert_and_reconstruct", "style_from_image", "z_image_invert_and_reconstruct"])
def test_ui_template_and_api_twin_are_the_same_graph(name):
    ui = json.loads((ROOT / f"{name}.json").read_text())
    api = json.loads((ROOT / "api" / f"{name}.json").read_text())
    assert ui["version"] == 0.4 and ui["last_node_id"] == max(n["id"] for n in ui["nodes"])
    nodes = {str(n["id"]): n for n in ui["nodes"] if n["type"] not in NOTES}  # notes live in the UI only
    assert {k: n["type"] for k, n in nodes.items()} == {k: v["class_type"] for k, v in api.items()}
    links = {link[0]: link for link in ui["links"]}
    assert ui["last_link_id"] == len(links)
    ui_edges = set()
    for node_id, node in nodes.items():
        for slot in node["inputs"]:
            if slot.get("link") is not None:
                _, src, src_slot, dst, dst_slot, _ = links[slot["link"]]
                assert str(dst) == node_id and node["inputs"][dst_slot] is slot
                ui_edges.add((node_id, slot["name"], str(src), src_slot))
    api_edges = {(k, name, v[0], v[1]) for k, n in api.items() for name, v in n["inputs"].items()
                 if isinstance(v, list)}
    assert ui_edges == api_edges
    for node_id, node in api.items():
        values = [v for v in node["inputs"].values() if not isinstance(v, list)]
        widgets = iter(nodes[node_id]["widgets_values"])
        assert all(any(w == v for w in widgets) for v in values), (node_id, values, nodes[node_id]["widgets_values"])
