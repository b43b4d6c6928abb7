"""The pack in the real ComfyUI frontend in Chromium (the test bed's own, and for tests marked
all_frontends the newer ones too: 1.32.9 on ComfyUI 0.3.75, 1.49.6 and 1.58.1 on 0.33.0): the region
editor extension loads cleanly, uses no deprecated frontend API and edits the JSON widget, every shipped
UI template loads with all its node types and converts to exactly its API twin, and the regional template
queued from the browser produces an image."""
from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.harness import PACK_DIR, REPO_ROOT

WORKFLOWS = REPO_ROOT / "workflows"
TEMPLATES = sorted(WORKFLOWS.glob("*.json"))
EXTENSION = "attention_atelier.regions"
REGIONAL = WORKFLOWS / "regional_layout.json"
# Where a mouse drag lands in the region editor, as a fraction of its canvas: within a few of the canvas's 300
# pixels (drawn at the graph's zoom) of the fraction asked for, and the editor rounds boxes to 0.001.
DRAG_SLACK = 0.02


def ours(text: str) -> bool:
    text = text.lower()
    return "atelier" in text or f"/extensions/{PACK_DIR.name.lower()}/" in text


@pytest.mark.all_frontends
def test_region_editor_extension_loads_without_errors(frontend):
    assert EXTENSION in frontend.evaluate("window.app.extensions.map(e => e.name)")
    errors = [c for c in frontend.console if c[0] in ("error", "pageerror") and (ours(c[1]) or ours(c[2]))]
    assert not errors, errors
    assert not [r for r in frontend.failed_responses if ours(r[1])], frontend.failed_responses
    served = frontend.evaluate("(pack) => fetch(`/extensions/${pack}/atelier_regions.js`).then(r => r.status)",
                               PACK_DIR.name)
    assert served == 200


# Every LiteGraph deprecation warning (repeated, not only the first of each kind) whose stack passes
# through one of our extension's files: frontend 1.58 deprecates input.link / output.links, for example.
RECORD_DEPRECATIONS = """(pack) => {
    const LG = window.LiteGraph, found = window.__atelierDeprecations = [];
    if (!Array.isArray(LG.onDeprecationWarning)) return false;
    LG.alwaysRepeatWarnings = true;
    LG.onDeprecationWarning.push(window.__atelierRecord = (message) => {
        const stack = new Error().stack ?? '';
        if (stack.includes(`/extensions/${pack}/`)) found.push(`${message}\n${stack}`);
    });
    return true;
}"""
STOP_RECORDING = """() => { const LG = window.LiteGraph; LG.alwaysRepeatWarnings = false;
    const i = (LG.onDeprecationWarning ?? []).indexOf(window.__atelierRecord); if (i >= 0) LG.onDeprecationWarning.splice(i, 1); }"""


@pytest.mark.all_frontends
def test_region_editor_uses_no_deprecated_frontend_api(frontend):
    """The editor on the regional template (chained regions read through the graph's links, the latent
    size found downstream, boxes drawn) triggers no deprecation warning of the frontend from our files."""
    from tests.browser.views import close_dialogs
    if not frontend.evaluate(RECORD_DEPRECATIONS, PACK_DIR.name):
        pytest.skip("this frontend has no LiteGraph.onDeprecationWarning")
    try:
        frontend.load_workflow(json.loads(REGIONAL.read_text()), REGIONAL.name)
        close_dialogs(frontend)
        node_id = frontend.evaluate("window.app.graph.nodes.find(n => n.type === 'AtelierBoxRegions').id")
        show_node(frontend, node_id)
        editor = f'.atelier-regions-editor[data-node-id="{node_id}"]'
        frontend.page.locator(f"{editor} .atelier-regions-latent").click()
        time.sleep(1.0)  # the editor re-reads the graph every 400 ms
        chained = frontend.evaluate("(id) => window.app.graph.getNodeById(id).atelierRegionEditor.chained", node_id)
        assert len(chained) == 1, chained  # the graph was really read
        found = frontend.evaluate("window.__atelierDeprecations")
    finally:
        frontend.evaluate(STOP_RECORDING)
    assert not found, "\n\n".join(found[:3])


def box_json(frontend, node_id: int) -> dict:
    return json.loads(frontend.evaluate(
        "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === 'regions_json').value", node_id))


def show_node(frontend, node_id: int):
    frontend.evaluate("""(id) => { const c = window.app.canvas; const n = window.app.graph.getNodeById(id);
        c.ds.scale = 1; c.ds.offset = [-n.pos[0] + 60, -n.pos[1] + 80]; c.setDirty(true, true); }""", node_id)
    time.sleep(0.8)  # DOM widgets are placed on the next frames


def test_drawing_moving_and_deleting_boxes_edit_the_widget_json(frontend):
    from tests.browser.views import close_dialogs
    frontend.load_workflow(json.loads(REGIONAL.read_text()), REGIONAL.name)
    close_dialogs(frontend)  # the missing-models dialog: the test bed has no SDXL base
    node_id = frontend.evaluate("window.app.graph.nodes.find(n => n.type === 'AtelierBoxRegions').id")
    show_node(frontend, node_id)
    before = box_json(frontend, node_id)
    canvas = frontend.page.locator(f'canvas.atelier-regions-canvas[data-node-id="{node_id}"]')
    try:
        canvas.wait_for(state="visible", timeout=20_000)
    except Exception:
        frontend.page.screenshot(path="/tmp/atelier_editor_not_visible.png")
        raise
    mouse = frontend.page.mouse

    def drag(x0, y0, x1, y1):  # in fractions of the editor canvas, which may move as the node resizes
        r = canvas.bounding_box()
        mouse.move(r["x"] + x0 * r["width"], r["y"] + y0 * r["height"])
        mouse.down()
        mouse.move(r["x"] + (x0 + x1) / 2 * r["width"], r["y"] + (y0 + y1) / 2 * r["height"], steps=4)
        mouse.move(r["x"] + x1 * r["width"], r["y"] + y1 * r["height"], steps=4)
        mouse.up()

    drag(0.1, 0.05, 0.4, 0.3)  # empty area in the template: draws a new box
    drawn = box_json(frontend, node_id)
    assert len(drawn["boxes"]) == len(before["boxes"]) + 1
    new = drawn["boxes"][-1]
    assert new["x"] == pytest.approx(0.1, abs=DRAG_SLACK) and new["y"] == pytest.approx(0.05, abs=DRAG_SLACK)
    assert new["w"] == pytest.approx(0.3, abs=DRAG_SLACK) and new["h"] == pytest.approx(0.25, abs=DRAG_SLACK)
    assert drawn["boxes"][:-1] == before["boxes"]

    frontend.page.locator(".atelier-regions-prompt").fill("a yellow sun")
    assert box_json(frontend, node_id)["boxes"][-1]["prompt"] == "a yellow sun"

    drag(0.25, 0.2, 0.35, 0.3)  # grab the new box's inside: moves it by (0.1, 0.1)
    moved = box_json(frontend, node_id)["boxes"][-1]
    assert moved["x"] == pytest.approx(new["x"] + 0.1, abs=DRAG_SLACK)
    assert moved["w"] == new["w"]  # a move sets x and y only

    drag(moved["x"] + moved["w"], moved["y"] + moved["h"], 0.9, 0.38)  # bottom-right corner: resizes
    resized = box_json(frontend, node_id)["boxes"][-1]
    assert resized["x"] == moved["x"]  # the bottom-right corner leaves x (already rounded to 0.001) as it was
    assert resized["x"] + resized["w"] == pytest.approx(0.9, abs=DRAG_SLACK)

    frontend.page.locator(".atelier-regions-delete").click()
    assert box_json(frontend, node_id)["boxes"] == before["boxes"]


def merkle_labels(prompt: dict) -> list[str]:
    """Each node's label hashes its class and inputs, with links replaced by the label of their source
    (node ids and titles play no part), so two graphs match iff their label multisets match."""
    labels: dict[str, str] = {}

    def label(node_id: str) -> str:
        if node_id not in labels:
            node = prompt[node_id]
            inputs = {}
            for name, value in sorted(node["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
                    value = ["link", label(str(value[0])), value[1]]
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = float(value)  # JSON from JavaScript writes 1.0 as 1
                inputs[name] = value
            text = json.dumps([node["class_type"], inputs], sort_keys=True)
            labels[node_id] = hashlib.sha256(text.encode()).hexdigest()
        return labels[node_id]

    return sorted(label(n) for n in prompt)


def describe(prompt: dict) -> list:
    return sorted((n["class_type"], json.dumps(n["inputs"], sort_keys=True)[:300]) for n in prompt.values())


NODE_INPUTS = "async (type) => (await (await fetch(`/object_info/${encodeURIComponent(type)}`)).json())[type].input"


def input_default(spec: dict, name: str, inputs: dict):
    """The default this server declares for input ``name`` of a node whose object_info inputs are ``spec``
    (a dotted name is an input of a dynamic combo's chosen option, e.g. SaveVideo's ``format.codec``);
    ``KeyError`` where it declares none."""
    head, _, rest = name.partition(".")
    kind, *options = ({**spec.get("required", {}), **spec.get("optional", {})})[head]
    options = options[0] if options else {}
    if rest:
        chosen = next(o for o in options["options"] if o["key"] == inputs[head])["inputs"]
        return input_default(chosen, rest, {k.partition(".")[2]: v for k, v in inputs.items() if k.startswith(head + ".")})
    if "default" in options:
        return options["default"]
    if kind == "COMFY_DYNAMICCOMBO_V3":
        return options["options"][0]["key"]
    if isinstance(kind, list):
        return kind[0]
    raise KeyError(name)


def without_newer_inputs_at_default(frontend, prompt: dict, twin: dict) -> dict:
    """The frontend's prompt less the inputs its node has and the twin's lacks, where they hold this server's
    default: what a newer ComfyUI added to a core node (0.33.0's CreateVideo ``bit_depth``, SaveVideo's
    ``format.codec``). The twins are written for the oldest supported ComfyUI, which has no such inputs, and
    run the same on the newer one (tests/e2e); an input set to anything else still counts."""
    specs = {}
    for node_id, node in prompt.items():
        theirs = twin.get(node_id, {})
        if theirs.get("class_type") != node["class_type"]:
            continue
        extra = [name for name in node["inputs"] if name not in theirs["inputs"]]
        if extra and node["class_type"] not in specs:
            specs[node["class_type"]] = frontend.evaluate(NODE_INPUTS, node["class_type"])
        for name in extra:
            try:
                default = input_default(specs[node["class_type"]], name, node["inputs"])
            except (KeyError, StopIteration):
                continue
            if node["inputs"][name] == default:
                del node["inputs"][name]
    return prompt


def assert_converts_to_its_api_twin(frontend, template: Path):
    """The loaded template's node types are all known to the server and the frontend's API prompt of it
    equals workflows/api/<name>.json (same nodes, inputs and links)."""
    twin_path = WORKFLOWS / "api" / template.name
    assert twin_path.exists(), f"{template.name} has no API twin at workflows/api/{template.name}"
    missing = frontend.evaluate("window.app.graph.nodes.filter(n => !window.LiteGraph.registered_node_types[n.type])"
                                ".map(n => n.type)")
    assert not missing, f"{template.name}: node types the server does not know: {missing}"
    prompt = frontend.evaluate("async () => (await window.app.graphToPrompt()).output")
    twin = json.loads(twin_path.read_text())
    prompt = without_newer_inputs_at_default(frontend, prompt, twin)
    for graph in (prompt, twin):
        for node in graph.values():
            node.pop("_meta", None)
    assert merkle_labels(prompt) == merkle_labels(twin), (
        f"{template.name}: the frontend's API prompt differs from workflows/api/{template.name}\n"
        f"frontend: {describe(prompt)}\ntwin:     {describe(twin)}")


LIVE_BOXES = """() => window.app.graph.nodes.map(n => [n.id, n.type, n.pos[0], n.pos[1] - window.LiteGraph.NODE_TITLE_HEIGHT,
    n.pos[0] + n.size[0], n.pos[1] + n.size[1]])"""


# The text of what lists the missing models: a dialog (frontend 1.32) or the errors panel (1.49, 1.58), i.e. the
# largest element around the "Missing Models" heading that holds no canvas and no node.
MISSING_MODELS = """() => {
    const heading = Array.from(document.querySelectorAll('body *'))
        .find(e => e.children.length === 0 && e.textContent.trim() === 'Missing Models');
    let box = heading;
    while (box?.parentElement && !box.parentElement.querySelector('canvas, [data-node-id]')) box = box.parentElement;
    return box ? box.innerText : '';
}"""
GROUP_TITLES = """() => (window.app.graph.groups ?? window.app.graph._groups).map(g => {
    const [x, y, w] = g._bounding ?? g.bounding; return [g.title, x, y, x + w, y + (g.titleHeight ?? 34)]; })"""


@pytest.mark.all_frontends
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
def test_template_loads_converts_and_opens_without_overlapping_nodes(frontend, template: Path):
    """Loaded in the classic canvas, the template converts to its API twin; the missing-models dialog offers
    every model the template declares (the test bed has none of the public files); it opens framed: at its
    saved view its note and model loaders lie whole in the window, under no sidebar, bar or toolbar
    (views.assert_opens_framed); after the frontend has laid the nodes out (widgets may grow a node), no two
    overlap; screenshots of what opens and of the whole template go to .cache/screenshots/<frontend>/classic/.
    (One load per template and frontend: the browser tier's time.)"""
    from tests.browser import views
    workflow = json.loads(template.read_text())
    frontend.load_workflow(workflow, template.name)
    assert_converts_to_its_api_twin(frontend, template)
    time.sleep(1.0)
    dialog = frontend.evaluate(MISSING_MODELS)
    details = frontend.page.get_by_text("View details")
    if not dialog and details.count():  # frontends 1.49, 1.58: a toast "errors found" opens the errors panel
        details.first.click()
        time.sleep(1.0)
        dialog = frontend.evaluate(MISSING_MODELS)
    declared = {m["name"] for n in workflow["nodes"] for m in n.get("properties", {}).get("models", [])}
    assert declared and all(name in dialog for name in declared), (declared, dialog)
    views.close_dialogs(frontend)
    views.close_side_panels(frontend)  # 1.49, 1.58: the errors panel would cover the graph's right side
    views.assert_opens_framed(frontend, workflow, template.stem, "classic")
    views.screenshot_whole_graph(frontend, f"template_{template.stem}", "classic")
    boxes = frontend.evaluate(LIVE_BOXES)
    clashes = [(a[:2], b[:2]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
               if a[2] < b[4] and b[2] < a[4] and a[3] < b[5] and b[3] < a[5]]
    assert not clashes, f"{template.name}: overlapping nodes after load: {clashes}"
    titles = frontend.evaluate(GROUP_TITLES)
    covered = [(t[0], b[:2]) for t in titles for b in boxes if t[1] < b[4] and b[2] < t[3] and t[2] < b[5] and b[3] < t[4]]
    assert not covered, f"{template.name}: group titles covered by nodes after load: {covered}"


def history(url: str) -> dict:
    with urllib.request.urlopen(url + "/history", timeout=30) as response:
        return json.loads(response.read())


def test_regional_template_queued_from_the_browser_makes_an_image(frontend, comfy_server):
    """The browser turns the template into a prompt; the test bed's tiny models and pictures are swapped
    in (the template names the public ones) and the browser queues it."""
    from tiny_models.template_swap import for_test_bed
    frontend.load_workflow(json.loads(REGIONAL.read_text()), REGIONAL.name)
    prompt = for_test_bed(frontend.evaluate("async () => (await window.app.graphToPrompt()).output"))
    seen = set(history(comfy_server.url))
    status = frontend.evaluate("""async (prompt) => (await fetch('/prompt', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({prompt})})).status""", prompt)
    assert status == 200
    deadline = time.time() + 600
    entry = None
    while time.time() < deadline:
        new = {k: v for k, v in history(comfy_server.url).items() if k not in seen}
        entry = next((v for v in new.values() if v.get("status", {}).get("completed") is not None
                      or v.get("status", {}).get("status_str") == "error"), None)
        if entry:
            break
        time.sleep(1.0)
    assert entry, f"no finished prompt after 600 s\n{comfy_server.log_tail()}"
    assert entry["status"]["status_str"] == "success", (entry["status"], comfy_server.log_tail())
    images = [img for out in entry["outputs"].values() for img in out.get("images", [])]
    assert images, entry["outputs"]
    query = urllib.parse.urlencode({k: images[0][k] for k in ("filename", "subfolder", "type")})
    with urllib.request.urlopen(f"{comfy_server.url}/view?{query}", timeout=30) as response:
        assert response.read()[:8] == b"\x89PNG\r\n\x1a\n"
