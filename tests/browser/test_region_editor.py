"""The AtelierBoxRegions editor in the real frontend, on the classic canvas and (where the frontend has
it) in Nodes 2.0: everything it draws lies inside its node, also after a box is selected and after the
aspect changes; the box count is right; ids and colours of the other boxes survive a deletion; Delete
acts only while the box canvas has focus; regions chained in from AtelierRegion are shown read-only;
the aspect can be taken from the latent. Screenshots go to .cache/screenshots/<frontend>/<mode>/."""
from __future__ import annotations

import json
import time

import pytest

from tests.browser import views
from tests.harness import REPO_ROOT

REGIONAL = REPO_ROOT / "workflows" / "regional_layout.json"
EDITOR = "(id) => window.app.graph.getNodeById(id).atelierRegionEditor"
# The editor canvas is 300 px wide and a whole number of pixels high (drawn at the graph's zoom): its aspect
# on screen is the latent's to a pixel or two of its height.
ASPECT_SLACK = 0.02


@pytest.fixture(params=["classic", "nodes2"])
def mode(request, frontend):
    supported = views.vue_nodes_supported(frontend)
    if request.param == "nodes2" and not supported:
        pytest.skip(f"frontend {views.frontend_version(frontend)} has no {views.VUE_NODES} (Nodes 2.0)")
    if supported:
        views.set_vue_nodes(frontend, request.param == "nodes2")
    try:
        yield request.param
    finally:
        if supported:
            views.set_vue_nodes(frontend, False)  # the setting is stored on the server


def editor_rect(frontend, node_id: int) -> dict:
    locator = frontend.page.locator(f'.atelier-regions-editor[data-node-id="{node_id}"]')
    locator.wait_for(state="visible", timeout=20_000)
    return locator.bounding_box()


PARTS = (".atelier-regions-toolbar", ".atelier-regions-canvas", ".atelier-regions-fields", ".atelier-regions-plot")


def assert_inside(frontend, node_id: int, when: str):
    """The editor and each of its parts (the plot at the bottom included) lie inside the node."""
    time.sleep(0.6)  # the node grows on the next frame
    inner, outer = editor_rect(frontend, node_id), views.node_rect(frontend, node_id)
    assert views.within(inner, outer), f"{when}: editor {inner} is not inside its node {outer}"
    for part in PARTS:
        box = frontend.page.locator(f'.atelier-regions-editor[data-node-id="{node_id}"] {part}').first.bounding_box()
        assert views.within(box, outer), f"{when}: {part} {box} is not inside its node {outer}"
        assert views.within(box, {"x": inner["x"], "y": inner["y"], "right": inner["x"] + inner["width"],
                                  "bottom": inner["y"] + inner["height"]}), f"{when}: {part} {box} overflows the editor {inner}"


def boxes(frontend, node_id: int) -> list:
    return json.loads(frontend.evaluate(
        "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === 'regions_json').value", node_id))["boxes"]


def canvas_of(frontend, node_id: int):
    return frontend.page.locator(f'canvas.atelier-regions-canvas[data-node-id="{node_id}"]')


def on_top(frontend, node_id, x, y, timeout=5.0) -> dict:
    """The box canvas's rectangle once nothing (a toast, a dialog) covers the point (x, y) of it."""
    deadline = time.time() + timeout
    while True:
        r = canvas_of(frontend, node_id).bounding_box()
        hit = frontend.evaluate("([x, y]) => document.elementFromPoint(x, y)?.className ?? ''",
                                [r["x"] + x * r["width"], r["y"] + y * r["height"]])
        if "atelier-regions-canvas" in str(hit) or time.time() > deadline:
            return r
        time.sleep(0.2)


def drag(frontend, node_id, x0, y0, x1, y1):
    """Drag on the box canvas, in fractions of it."""
    r = on_top(frontend, node_id, x0, y0)
    mouse = frontend.page.mouse
    mouse.move(r["x"] + x0 * r["width"], r["y"] + y0 * r["height"])
    mouse.down()
    mouse.move(r["x"] + (x0 + x1) / 2 * r["width"], r["y"] + (y0 + y1) / 2 * r["height"], steps=4)
    mouse.move(r["x"] + x1 * r["width"], r["y"] + y1 * r["height"], steps=4)
    mouse.up()


def click(frontend, node_id, x, y):
    r = on_top(frontend, node_id, x, y)
    frontend.page.mouse.click(r["x"] + x * r["width"], r["y"] + y * r["height"])


def status(frontend, node_id) -> str:
    return frontend.page.locator(f'.atelier-regions-editor[data-node-id="{node_id}"] .atelier-regions-status').inner_text()


@pytest.mark.all_frontends
def test_a_fresh_editor_lies_inside_its_node(frontend, mode):
    node_id = frontend.evaluate("""() => { window.app.graph.clear(); const n = window.LiteGraph.createNode('AtelierBoxRegions');
        n.pos = [200, 200]; window.app.graph.add(n); return n.id; }""")
    views.show_node(frontend, node_id)
    assert_inside(frontend, node_id, "fresh node")
    drag(frontend, node_id, 0.3, 0.05, 0.6, 0.3)  # a new box, selected: its fields are enabled
    assert len(boxes(frontend, node_id)) == 3
    assert frontend.page.locator(f'.atelier-regions-editor[data-node-id="{node_id}"] .atelier-regions-prompt').is_enabled()
    assert_inside(frontend, node_id, "fresh node, box selected")
    node = views.fit_node(frontend, node_id)
    views.screenshot(frontend, "region_editor_fresh", mode, clip={
        "x": node["x"] - 10, "y": node["y"] - 10, "width": node["right"] - node["x"] + 20,
        "height": node["bottom"] - node["y"] + 20})


@pytest.mark.all_frontends
def test_editor_on_the_regional_template(frontend, mode):
    frontend.load_workflow(json.loads(REGIONAL.read_text()), REGIONAL.name)
    views.close_dialogs(frontend)  # the missing-models dialog: the test bed has no SDXL base
    node_id = frontend.evaluate("window.app.graph.nodes.find(n => n.type === 'AtelierBoxRegions').id")
    views.show_node(frontend, node_id)
    assert_inside(frontend, node_id, "template")

    chained = frontend.evaluate(f"(id) => ({EDITOR})(id).chained", node_id)
    assert len(chained) == 1 and "cloud" in chained[0]["label"], chained  # AtelierRegion, read-only
    assert len(boxes(frontend, node_id)) == 2 and status(frontend, node_id).startswith("2 boxes + 1 chained")

    drag(frontend, node_id, 0.05, 0.05, 0.25, 0.25)
    assert len(boxes(frontend, node_id)) == 3 and status(frontend, node_id).startswith("3 boxes")
    ids = frontend.evaluate(f"(id) => ({EDITOR})(id).ids", node_id)
    colors = frontend.evaluate(f"(id) => {{ const e = ({EDITOR})(id); return e.ids.map((_, i) => e.colorOf(i)); }}", node_id)
    assert len(set(ids)) == 3

    first = boxes(frontend, node_id)[0]  # select the first box, then type Delete in its prompt field
    click(frontend, node_id, first["x"] + first["w"] / 2, first["y"] + first["h"] / 2)
    field = frontend.page.locator(f'.atelier-regions-editor[data-node-id="{node_id}"] .atelier-regions-prompt')
    field.click()
    frontend.page.keyboard.press("End")
    frontend.page.keyboard.press("Delete")
    assert len(boxes(frontend, node_id)) == 3, "Delete in a text field deleted a box"
    assert frontend.evaluate("(id) => !!window.app.graph.getNodeById(id)", node_id), "Delete in a field removed the node"

    click(frontend, node_id, first["x"] + first["w"] / 2, first["y"] + first["h"] / 2)  # focus the box canvas
    frontend.page.keyboard.press("Delete")
    assert len(boxes(frontend, node_id)) == 2 and status(frontend, node_id).startswith("2 boxes")
    assert frontend.evaluate("(id) => !!window.app.graph.getNodeById(id)", node_id), "Delete removed the node"
    after = frontend.evaluate(f"(id) => {{ const e = ({EDITOR})(id); return [e.ids, e.ids.map((_, i) => e.colorOf(i))]; }}", node_id)
    assert after == [ids[1:], colors[1:]], "the other boxes changed id or colour"

    latent = frontend.evaluate("window.app.graph.nodes.find(n => n.type === 'EmptyLatentImage').id")
    frontend.evaluate("""(id) => { const n = window.app.graph.getNodeById(id);
        n.widgets.find(w => w.name === 'width').value = 1024; n.widgets.find(w => w.name === 'height').value = 576; }""", latent)
    frontend.page.locator(f'.atelier-regions-editor[data-node-id="{node_id}"] .atelier-regions-latent').click()
    data = json.loads(frontend.evaluate(
        "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === 'regions_json').value", node_id))
    assert (data["width"], data["height"]) == (1024, 576)
    box = canvas_of(frontend, node_id).bounding_box()
    assert box["height"] / box["width"] == pytest.approx(576 / 1024, abs=ASPECT_SLACK)
    assert_inside(frontend, node_id, "after the aspect changed")
    first = boxes(frontend, node_id)[0]
    click(frontend, node_id, first["x"] + first["w"] / 2, first["y"] + first["h"] / 2)
    time.sleep(0.3)
    node = views.fit_node(frontend, node_id)
    assert_inside(frontend, node_id, "zoomed out")
    views.screenshot(frontend, "region_editor_template", mode, clip={
        "x": node["x"] - 10, "y": node["y"] - 10, "width": node["right"] - node["x"] + 20,
        "height": node["bottom"] - node["y"] + 20})
