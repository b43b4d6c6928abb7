"""Every shipped template in the frontend's Nodes 2.0 mode (Vue nodes, setting Comfy.VueNodes.Enabled):
it loads, opens framed (at its saved view its note and model loaders, measured as the browser lays out
their node elements, lie whole in the window under no sidebar, bar or toolbar), no two node elements
overlap as the browser lays them out nor cover a group's title, and screenshots of what opens and of the whole graph go to
.cache/screenshots/<frontend>/nodes2/."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.browser import views
from tests.harness import REPO_ROOT

TEMPLATES = sorted((REPO_ROOT / "workflows").glob("*.json"))
NODE_ELEMENTS = """() => Array.from(document.querySelectorAll('[data-node-id]'))
    .filter(e => !e.closest('.atelier-regions-editor') && e.getBoundingClientRect().width > 0)
    .map(e => { const r = e.getBoundingClientRect(); return [e.dataset.nodeId, r.left, r.top, r.right, r.bottom]; })"""
# Each group's title band on the page (the canvas draws groups in Nodes 2.0 too): [title, left, top, right, bottom]
GROUP_TITLES = """() => { const c = window.app.canvas, box = c.canvas.getBoundingClientRect(), k = box.width / c.canvas.width;
    return (window.app.graph.groups ?? window.app.graph._groups).map(g => {
        const [x, y, w] = g._bounding ?? g.bounding, h = g.titleHeight ?? 34;
        const [x0, y0] = c.ds.convertOffsetToCanvas([x, y]), [x1, y1] = c.ds.convertOffsetToCanvas([x + w, y + h]);
        return [g.title, box.left + x0 * k, box.top + y0 * k, box.left + x1 * k, box.top + y1 * k]; }); }"""


@pytest.fixture
def nodes2(frontend):
    if not views.vue_nodes_supported(frontend):
        pytest.skip(f"frontend {views.frontend_version(frontend)} has no {views.VUE_NODES}")
    views.set_vue_nodes(frontend, True)
    try:
        yield frontend
    finally:
        views.set_vue_nodes(frontend, False)  # the setting is stored on the server


@pytest.mark.all_frontends
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
def test_template_in_nodes_2(nodes2, template: Path):
    frontend = nodes2
    workflow = json.loads(template.read_text())
    frontend.load_workflow(workflow, template.name)
    views.close_dialogs(frontend)
    views.close_side_panels(frontend)
    views.assert_opens_framed(frontend, workflow, template.stem, "nodes2")
    size = frontend.page.viewport_size
    frontend.page.set_viewport_size({"width": 3000, "height": 1700})
    try:
        views.fit_all(frontend)
        time.sleep(1.0)
        views.screenshot(frontend, f"template_{template.stem}", "nodes2")
        elements = {e[0]: e for e in frontend.evaluate(NODE_ELEMENTS)}  # one per node id
        titles = frontend.evaluate(GROUP_TITLES)
    finally:
        frontend.page.set_viewport_size(size)
    boxes = list(elements.values())
    assert len(boxes) == len(workflow["nodes"]), sorted(elements)
    clashes = [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
               if a[1] < b[3] - 1 and b[1] < a[3] - 1 and a[2] < b[4] - 1 and b[2] < a[4] - 1]
    assert not clashes, f"{template.name}: node elements overlap in Nodes 2.0: {clashes}"
    covered = [(t[0], b[0]) for t in titles for b in boxes if t[1] < b[3] - 1 and b[1] < t[3] - 1 and t[2] < b[4] - 1
               and b[2] < t[4] - 1]
    assert not covered, f"{template.name}: group titles covered by node elements in Nodes 2.0: {covered}"
