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
    assert frontend.evaluate(f"(id) => ({EDITOR})(id).ids", node_id) == [1, 2], "a loaded layout's boxes are 1..N"

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


# Video models: the editor's video mode (a second toolbar row with the "moving" toggle; each box's end box,
# dashed, and its path). Fractions of the box canvas: a drag lands within a few of its 300 pixels.
DRAG_SLACK = 0.02
VIDEO_GRAPH = """(length) => {
    const g = window.app.graph, LG = window.LiteGraph;
    g.clear();
    const add = (type, x, y) => { const n = LG.createNode(type); n.pos = [x, y]; g.add(n); return n; };
    const boxes = add('AtelierBoxRegions', 200, 200), attention = add('AtelierRegionalAttention', 800, 200);
    const sampler = add('KSampler', 1150, 200), latent = add('EmptyHunyuanLatentVideo', 800, 450);
    latent.widgets.find(w => w.name === 'length').value = length;
    boxes.connect(0, attention, attention.findInputSlot('regions'));
    attention.connect(0, sampler, sampler.findInputSlot('model'));
    latent.connect(0, sampler, sampler.findInputSlot('latent_image'));
    boxes.widgets.find(w => w.name === 'regions_json').value = JSON.stringify({width: 512, height: 512, boxes: []});
    return [boxes.id, latent.id];
}"""
VIDEO_BAR = ".atelier-regions-videobar"


def editor_part(frontend, node_id: int, part: str):
    return frontend.page.locator(f'.atelier-regions-editor[data-node-id="{node_id}"] {part}')


def regions_json(frontend, node_id: int) -> str:
    return frontend.evaluate(
        "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === 'regions_json').value", node_id)


def pack_keyframes(frontend, node_id: int) -> list:
    """Each box's keyframes as the pack reads them: ((at, (x, y, w, h)), ...), () for a box that stays."""
    from attention.region_json import parse_region_json
    return [box.keyframes for box in parse_region_json(regions_json(frontend, node_id), "AtelierBoxRegions")]


def set_json(frontend, node_id: int, data: dict):
    frontend.evaluate("([id, text]) => window.app.graph.getNodeById(id).widgets.find(w => w.name === 'regions_json').value = text",
                      [node_id, json.dumps(data)])
    time.sleep(0.9)  # the editor re-reads the widget every 400 ms


def screenshot_node(frontend, node_id: int, name: str, mode: str):
    node = views.fit_node(frontend, node_id)
    assert_inside(frontend, node_id, f"{name}, zoomed out")
    assert views.within(editor_part(frontend, node_id, VIDEO_BAR).bounding_box(), node), f"{name}: the video row is outside its node"
    views.screenshot(frontend, name, mode, clip={
        "x": node["x"] - 10, "y": node["y"] - 10, "width": node["right"] - node["x"] + 20,
        "height": node["bottom"] - node["y"] + 20})


@pytest.mark.all_frontends
def test_video_model_shows_start_and_end_boxes_and_writes_the_end_keyframe(frontend, mode):
    """A sampler fed by a video latent (EmptyHunyuanLatentVideo, 25 frames) puts the editor in video mode; a
    one-frame latent leaves it as it is for images. Drawing a box, then dragging its tab writes the keyframe
    at 1 (the pack reads it); moving the end box moves only that keyframe, moving the start box only the box;
    the "moving" toggle removes the keyframe and adds one again. No deprecated frontend API is called."""
    from tests.browser.test_frontend import RECORD_DEPRECATIONS, STOP_RECORDING
    from tests.harness import PACK_DIR
    recording = frontend.evaluate(RECORD_DEPRECATIONS, PACK_DIR.name)
    try:
        node_id, latent_id = frontend.evaluate(VIDEO_GRAPH, 1)
        views.show_node(frontend, node_id)
        editor_rect(frontend, node_id)
        time.sleep(0.6)
        assert editor_part(frontend, node_id, VIDEO_BAR).count() == 0, "a one-frame latent is an image"
        image_height = frontend.evaluate(f"(id) => ({EDITOR})(id).height", node_id)
        assert status(frontend, node_id) == "0 boxes, 512x512"

        frontend.evaluate("(id) => { window.app.graph.getNodeById(id).widgets.find(w => w.name === 'length').value = 25; }", latent_id)
        editor_part(frontend, node_id, VIDEO_BAR).wait_for(state="visible", timeout=5_000)
        assert frontend.evaluate(f"(id) => ({EDITOR})(id).height", node_id) == image_height + 32  # one more toolbar row
        editor_part(frontend, node_id, ".atelier-regions-latent").click()  # the aspect of the video latent
        assert status(frontend, node_id) == "0 boxes, 848x480, 25 frames"
        assert_inside(frontend, node_id, "video mode")

        drag(frontend, node_id, 0.08, 0.2, 0.33, 0.6)  # a new box stays until told otherwise
        start = boxes(frontend, node_id)[0]
        assert "keyframes" not in start and pack_keyframes(frontend, node_id) == [()]
        assert not editor_part(frontend, node_id, ".atelier-regions-moving").is_checked()
        screenshot_node(frontend, node_id, "region_editor_video_static", mode)  # the selected box's tab
        views.show_node(frontend, node_id)

        tab = (start["x"] + start["w"] - 8 / 300, start["y"] + start["h"] / 2)  # the selected box's tab
        drag(frontend, node_id, *tab, tab[0] + 0.45, tab[1] + 0.1)
        box = boxes(frontend, node_id)[0]
        assert {k: box[k] for k in "xywh"} == {k: start[k] for k in "xywh"}, "the start box moved"
        [end] = box["keyframes"]
        assert end["at"] == 1 and (end["w"], end["h"]) == (start["w"], start["h"])
        assert end["x"] == pytest.approx(start["x"] + 0.45, abs=DRAG_SLACK)
        assert end["y"] == pytest.approx(start["y"] + 0.1, abs=DRAG_SLACK)
        rect = (start["x"], start["y"], start["w"], start["h"])
        assert pack_keyframes(frontend, node_id) == [((0.0, rect), (1.0, (end["x"], end["y"], end["w"], end["h"])))]
        assert editor_part(frontend, node_id, ".atelier-regions-moving").is_checked()

        drag(frontend, node_id, end["x"] + end["w"] / 2, end["y"] + end["h"] / 2,
             end["x"] + end["w"] / 2 - 0.05, end["y"] + end["h"] / 2 - 0.2)  # the end box: its keyframe only
        box = boxes(frontend, node_id)[0]
        [moved] = box["keyframes"]
        assert {k: box[k] for k in "xywh"} == {k: start[k] for k in "xywh"}
        assert moved["x"] == pytest.approx(end["x"] - 0.05, abs=DRAG_SLACK)
        assert moved["y"] == pytest.approx(end["y"] - 0.2, abs=DRAG_SLACK)
        assert (moved["w"], moved["h"]) == (end["w"], end["h"])

        drag(frontend, node_id, moved["x"] + moved["w"], moved["y"] + moved["h"], 0.95, 0.75)  # its corner: resizes it
        box = boxes(frontend, node_id)[0]
        [resized] = box["keyframes"]
        assert (resized["x"], resized["y"]) == (moved["x"], moved["y"])
        assert resized["x"] + resized["w"] == pytest.approx(0.95, abs=DRAG_SLACK)
        assert resized["y"] + resized["h"] == pytest.approx(0.75, abs=DRAG_SLACK)

        drag(frontend, node_id, start["x"] + start["w"] / 2, start["y"] + start["h"] / 2,
             start["x"] + start["w"] / 2 + 0.04, start["y"] + start["h"] / 2 + 0.15)  # the start box: the box only
        box = boxes(frontend, node_id)[0]
        assert box["keyframes"] == [resized]
        assert box["x"] == pytest.approx(start["x"] + 0.04, abs=DRAG_SLACK)
        assert box["y"] == pytest.approx(start["y"] + 0.15, abs=DRAG_SLACK)
        editor_part(frontend, node_id, ".atelier-regions-prompt").fill("a red car")
        screenshot_node(frontend, node_id, "region_editor_video", mode)

        views.show_node(frontend, node_id)
        editor_part(frontend, node_id, ".atelier-regions-moving").click()  # off: the box stays, where it starts
        box = boxes(frontend, node_id)[0]
        assert "keyframes" not in box and pack_keyframes(frontend, node_id) == [()]
        assert box["x"] == pytest.approx(start["x"] + 0.04, abs=DRAG_SLACK)
        editor_part(frontend, node_id, ".atelier-regions-moving").click()  # on again: an end box beside it
        [again] = boxes(frontend, node_id)[0]["keyframes"]
        assert again["at"] == 1 and again["x"] != box["x"] and (again["w"], again["h"]) == (box["w"], box["h"])
        assert len(pack_keyframes(frontend, node_id)[0]) == 2
        found = frontend.evaluate("window.__atelierDeprecations") if recording else []
    finally:
        if recording:
            frontend.evaluate(STOP_RECORDING)
    assert not found, "\n\n".join(found[:3])


@pytest.mark.all_frontends
def test_hand_written_keyframes_are_shown_and_kept(frontend, mode):
    """No video latent wired, but a box with keyframes (at 0.5 and 1, written by hand): video mode shows its
    path with the keyframe between; dragging the end box changes the keyframe at 1 only, the one at 0.5 stays;
    unticking "moving" makes the box stay and says which keyframes went with the end."""
    node_id = frontend.evaluate("""() => { window.app.graph.clear(); const n = window.LiteGraph.createNode('AtelierBoxRegions');
        n.pos = [200, 200]; window.app.graph.add(n); return n.id; }""")
    views.show_node(frontend, node_id)
    middle = {"at": 0.5, "x": 0.38, "y": 0.05, "w": 0.25, "h": 0.25}
    end = {"at": 1, "x": 0.7, "y": 0.55, "w": 0.25, "h": 0.3}
    set_json(frontend, node_id, {"width": 768, "height": 512, "boxes": [
        {"x": 0.05, "y": 0.5, "w": 0.25, "h": 0.3, "prompt": "a bird", "weight": 1.0, "keyframes": [middle, end]},
        {"x": 0.05, "y": 0.05, "w": 0.2, "h": 0.3, "prompt": "a tree", "weight": 0.8}]})
    editor_part(frontend, node_id, VIDEO_BAR).wait_for(state="visible", timeout=5_000)
    assert status(frontend, node_id) == "2 boxes, 768x512, video"
    assert_inside(frontend, node_id, "hand-written keyframes")

    drag(frontend, node_id, 0.82, 0.7, 0.77, 0.75)  # the end box
    box = boxes(frontend, node_id)[0]
    assert box["keyframes"][0] == middle, "the keyframe between was changed"
    assert box["keyframes"][1]["x"] == pytest.approx(end["x"] - 0.05, abs=DRAG_SLACK)
    assert box["keyframes"][1]["y"] == pytest.approx(end["y"] + 0.05, abs=DRAG_SLACK)
    assert [at for at, _ in pack_keyframes(frontend, node_id)[0]] == [0.0, 0.5, 1.0]
    assert "keyframes at 0, 0.5, 1" in editor_part(frontend, node_id, ".atelier-regions-videoinfo").inner_text()
    screenshot_node(frontend, node_id, "region_editor_keyframes", mode)

    views.show_node(frontend, node_id)
    editor_part(frontend, node_id, ".atelier-regions-moving").click()
    box = boxes(frontend, node_id)[0]
    assert "keyframes" not in box and (box["x"], box["y"]) == (0.05, 0.5)
    assert "0.5" in editor_part(frontend, node_id, ".atelier-regions-videoinfo").inner_text()  # said, not silent
    assert pack_keyframes(frontend, node_id) == [(), ()]
    assert editor_part(frontend, node_id, VIDEO_BAR).count() == 1  # the toggle stays at hand
