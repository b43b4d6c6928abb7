"""Helpers for browser tests: where nodes and DOM widgets are on screen (classic canvas and Nodes 2.0),
showing a node or the whole graph, Nodes 2.0 on/off, and screenshots under .cache/screenshots/."""
from __future__ import annotations

import time
from pathlib import Path

from tests.harness import REPO_ROOT

SCREENSHOTS = REPO_ROOT / ".cache" / "screenshots"  # .cache/ is git-ignored
VUE_NODES = "Comfy.VueNodes.Enabled"

# The node's rectangle on the page (title bar included): the Vue component's element in Nodes 2.0,
# else the LiteGraph node converted from graph to page coordinates.
NODE_RECT = """(id) => {
    const el = Array.from(document.querySelectorAll(`[data-node-id="${id}"]`))
        .find(e => !e.closest('.atelier-regions-editor'));  // the Vue node, not our own marked elements
    if (el && el.getBoundingClientRect().width > 0) {
        const r = el.getBoundingClientRect();
        return {x: r.left, y: r.top, right: r.right, bottom: r.bottom, vue: true};
    }
    const c = window.app.canvas, n = window.app.graph.getNodeById(id), box = c.canvas.getBoundingClientRect();
    const title = window.LiteGraph.NODE_TITLE_HEIGHT;
    const [x0, y0] = c.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - title]);
    const [x1, y1] = c.ds.convertOffsetToCanvas([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
    const k = box.width / c.canvas.width;  // canvas pixels -> CSS pixels
    return {x: box.left + x0 * k, y: box.top + y0 * k, right: box.left + x1 * k, bottom: box.top + y1 * k, vue: false};
}"""

FIT_ALL = """() => {
    const c = window.app.canvas, nodes = window.app.graph.nodes, groups = window.app.graph.groups ?? window.app.graph._groups ?? [];
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of nodes) {
        x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 40);
        x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    for (const g of groups) {
        const [gx, gy, gw, gh] = g._bounding ?? g.bounding ?? [g.pos[0], g.pos[1], g.size[0], g.size[1]];
        x0 = Math.min(x0, gx); y0 = Math.min(y0, gy); x1 = Math.max(x1, gx + gw); y1 = Math.max(y1, gy + gh);
    }
    const box = c.canvas.getBoundingClientRect();
    const [left, top] = [90, 150];  // the side bar and the menu/tab bars lie over the canvas
    const scale = Math.min((box.width - left - 20) / (x1 - x0), (box.height - top - 20) / (y1 - y0), 1);
    c.ds.scale = scale;
    c.ds.offset = [-x0 + left / scale, -y0 + top / scale];
    c.setDirty(true, true);
}"""


def frontend_version(frontend) -> str:
    return frontend.evaluate("window.__COMFYUI_FRONTEND_VERSION__ ?? 'unknown'")


def vue_nodes_supported(frontend) -> bool:
    return bool(frontend.evaluate(
        "(id) => !!(window.app.ui?.settings?.settingsLookup?.[id] ?? window.app.extensionManager?.setting?.get?.(id) !== undefined)",
        VUE_NODES))


def set_vue_nodes(frontend, enabled: bool):
    frontend.evaluate("async ([id, on]) => { await window.app.extensionManager.setting.set(id, on); }",
                      [VUE_NODES, enabled])
    time.sleep(1.0)


# PrimeVue dialogs (the missing-models dialog of 1.32, the template browser of 1.49) and the reka-ui
# dialogs of 1.58 (its template browser)
DIALOGS = '.p-dialog-mask, .p-dialog, [data-slot="dialog-overlay"], [data-slot="dialog-content"]'
RIGHT_PANEL = "Comfy.RightSidePanel.IsOpen"  # the panel 1.49 and 1.58 list a workflow's errors in


def close_dialogs(frontend):
    """Close what opened with a workflow (the missing-models dialog) so the canvas gets the mouse."""
    for _ in range(3):
        if not frontend.evaluate("(s) => document.querySelectorAll(s).length", DIALOGS):
            return
        frontend.page.keyboard.press("Escape")
        time.sleep(0.4)


def close_side_panels(frontend):
    """Close the right side panel (1.49, 1.58: workflow errors, missing models) where the frontend has one."""
    frontend.evaluate("""async (id) => { const s = window.app.extensionManager?.setting;
        if (s?.get?.(id)) await s.set(id, false); }""", RIGHT_PANEL)


def node_rect(frontend, node_id: int) -> dict:
    return frontend.evaluate(NODE_RECT, node_id)


def show_node(frontend, node_id: int):
    frontend.evaluate("""(id) => { const c = window.app.canvas; const n = window.app.graph.getNodeById(id);
        c.ds.scale = 1; c.ds.offset = [-n.pos[0] + 60, -n.pos[1] + 80]; c.setDirty(true, true); }""", node_id)
    time.sleep(0.8)  # DOM widgets are placed on the next frames


def fit_node(frontend, node_id: int):
    """Zoom out until the whole node (as the frontend now lays it out) fits the viewport, for a screenshot."""
    rect = node_rect(frontend, node_id)
    height = frontend.evaluate("window.innerHeight")
    scale = min(1.0, (height - 160) / max(1.0, rect["bottom"] - rect["y"]))
    frontend.evaluate("""([id, scale]) => { const c = window.app.canvas; const n = window.app.graph.getNodeById(id);
        c.ds.scale = scale; c.ds.offset = [-n.pos[0] + 300 / scale, -n.pos[1] + 110 / scale]; c.setDirty(true, true); }""",
                      [node_id, scale])
    time.sleep(1.0)
    return node_rect(frontend, node_id)


def fit_all(frontend):
    frontend.evaluate(FIT_ALL)
    time.sleep(1.0)


def screenshot_whole_graph(frontend, name: str, mode: str) -> Path:
    """A big viewport, so that the whole graph fits at a zoom where LiteGraph still draws text."""
    size = frontend.page.viewport_size
    frontend.page.set_viewport_size({"width": 3000, "height": 1700})
    time.sleep(0.5)
    try:
        fit_all(frontend)
        return screenshot(frontend, name, mode)
    finally:
        frontend.page.set_viewport_size(size)
        time.sleep(0.5)


def screenshot(frontend, name: str, mode: str, clip: dict | None = None) -> Path:
    folder = SCREENSHOTS / frontend_version(frontend) / mode
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    frontend.page.screenshot(path=str(path), clip=clip)
    return path


def within(inner: dict, outer: dict, tolerance: float = 1.0) -> bool:
    return (inner["x"] >= outer["x"] - tolerance and inner["y"] >= outer["y"] - tolerance
            and inner["x"] + inner["width"] <= outer["right"] + tolerance
            and inner["y"] + inner["height"] <= outer["bottom"] + tolerance)


# What floats over the canvas: the frontends (1.32-1.58) draw the canvas under the whole window and lay
# their chrome over it in pointer-events:none layers; each piece of it (left sidebar, top banner and tab
# bar, the graph toolbar / breadcrumb, action bar, minimap, zoom toolbar) is an element with pointer
# events in such a layer. Every such element's page rect and what it is: "sidebar", "top bar" (spans the
# window), "graph toolbar" (floats at the top, next to the sidebar: the graph breadcrumb / toolbar of 1.32-1.58),
# else "toolbar". Notifications (role status/alert, PrimeVue toasts) are left out: they go away.
FLOATING_UI = """() => {
    const canvas = window.app.canvas.canvas, found = [];
    for (const e of document.querySelectorAll('body *')) {
        if (e === canvas || e.contains(canvas)) continue;
        if (e.closest('[data-node-id], .dom-widget, .lg-node, .p-toast, [role="status"], [role="alert"]')) continue;
        const style = getComputedStyle(e);
        if (style.pointerEvents === 'none' || style.visibility !== 'visible' || style.display === 'none' || +style.opacity === 0) continue;
        const parent = e.parentElement;  // only the outermost element with pointer events of a layer
        if (parent && parent !== document.body && !parent.contains(canvas) && getComputedStyle(parent).pointerEvents !== 'none') continue;
        const r = e.getBoundingClientRect();
        if (r.width < 4 || r.height < 4 || r.right <= 0 || r.bottom <= 0 || r.left >= innerWidth || r.top >= innerHeight) continue;
        const kind = e.matches('.side-tool-bar-container') ? 'sidebar'
            : r.width >= 0.9 * innerWidth && r.top < 0.15 * innerHeight ? 'top bar' : 'toolbar';
        const label = `${e.tagName.toLowerCase()}.${(e.className?.toString?.() ?? '').split(' ').slice(0, 3).join('.')}`;
        found.push({kind, label, x: r.left, y: r.top, right: r.right, bottom: r.bottom});
    }
    const sidebar = found.find(f => f.kind === 'sidebar');
    for (const f of found) {
        if (sidebar && f.kind === 'toolbar' && Math.abs(f.x - sidebar.right) <= 24 && f.y < 0.2 * innerHeight) f.kind = 'graph toolbar';
        f.label = `${f.kind}: ${f.label}`;
    }
    return found;
}"""


def floating_ui(frontend) -> list[dict]:
    return frontend.evaluate(FLOATING_UI)


def first_shown(workflow: dict) -> list[tuple[int, str]]:
    """What a template shows first: its notes and its model loaders (the nodes declaring model files)."""
    return [(n["id"], n.get("title") or n["type"]) for n in workflow["nodes"]
            if n["type"] in ("Note", "MarkdownNote") or n.get("properties", {}).get("models")]


# The text of a note that does not fit its node (the element that holds it scrolls): [scrollHeight, clientHeight]
# of every such element of node ``id``: its DOM widgets (classic) or its element (Nodes 2.0).
CUT_TEXT = """(id) => {
    const node = window.app.graph.getNodeById(id);
    const roots = [...document.querySelectorAll(`[data-node-id="${id}"]`), ...(node.widgets ?? []).map(w => w.element).filter(Boolean)];
    const cut = [];
    for (const root of roots) for (const e of [root, ...root.querySelectorAll('*')]) {
        const style = getComputedStyle(e);
        if (['auto', 'scroll', 'hidden'].includes(style.overflowY) && e.clientHeight > 0 && e.scrollHeight > e.clientHeight + 2
            && (e.innerText ?? '').trim()) cut.push([e.tagName, e.className?.toString?.().slice(0, 60), e.scrollHeight, e.clientHeight]);
    }
    return cut;
}"""


def intersects(a: dict, b: dict) -> bool:
    return a["x"] < b["right"] and b["x"] < a["right"] and a["y"] < b["bottom"] and b["y"] < a["bottom"]


def assert_opens_framed(frontend, workflow: dict, name: str, mode: str):
    """At the saved view (extra.ds, as the frontend restored it on load), every note and model loader lies
    whole inside the window and under no sidebar, bar or toolbar, and shows all its text (nothing to scroll
    to). Node rects: the node's element in Nodes 2.0, the graph's node through the canvas's transform in
    classic. A screenshot of what opens goes to .cache/screenshots/<frontend>/<mode>/opened_<name>.png."""
    saved = workflow["extra"]["ds"]
    ds = frontend.evaluate("() => [window.app.canvas.ds.scale, ...window.app.canvas.ds.offset]")
    assert ds == [saved["scale"], *saved["offset"]], f"{name}: the frontend did not open the saved view {saved}: {ds}"
    time.sleep(0.5)  # DOM widgets and Vue nodes are placed on the next frames
    screenshot(frontend, f"opened_{name}", mode)
    chrome = floating_ui(frontend)
    kinds = {c["kind"] for c in chrome}
    assert {"sidebar", "graph toolbar"} <= kinds, f"{name}: the sidebar or the graph toolbar was not found: {chrome}"
    window = frontend.evaluate("() => ({x: 0, y: 0, right: innerWidth, bottom: innerHeight})")
    problems = []
    for node_id, title in first_shown(workflow):
        rect = node_rect(frontend, node_id)  # Nodes 2.0: the node's element; classic: the graph's node on the canvas
        assert rect["vue"] == (mode == "nodes2"), f"{name}: node {node_id} measured as {rect} in {mode}"
        if not within({"x": rect["x"], "y": rect["y"], "width": rect["right"] - rect["x"],
                       "height": rect["bottom"] - rect["y"]}, window, tolerance=0):
            problems.append(f"{title!r} {_rect(rect)} is not whole inside the window {_rect(window)}")
        for piece in chrome:
            if intersects(rect, piece):
                problems.append(f"{title!r} {_rect(rect)} lies under {piece['label']} {_rect(piece)}")
        cut = frontend.evaluate(CUT_TEXT, node_id)
        if cut:
            problems.append(f"{title!r}: its text does not fit the node (scroll height, height): {cut}")
    assert not problems, f"{name} opens with what it shows first covered ({mode}):\n" + "\n".join(problems)


def _rect(r: dict) -> str:
    return f"[{r['x']:.0f}, {r['y']:.0f}, {r['right']:.0f}, {r['bottom']:.0f}]"
