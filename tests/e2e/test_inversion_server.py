"""Reference-image mode over HTTP: a reference of another size comes back as a clear error naming the
node, the input and both sizes; re-queuing the graph reuses the cached inversion."""
import json
import uuid

import pytest

from tests.harness import WORKFLOWS_API_DIR
from tiny_models.template_swap import for_test_bed

STYLE_FROM_IMAGE = WORKFLOWS_API_DIR / "style_from_image.json"


def small_graph(width: int, seed: int = 0) -> dict:
    """The shipped style_from_image graph, made cheap: 2 steps, no refinement, one prompt."""
    graph = for_test_bed(json.loads(STYLE_FROM_IMAGE.read_text()))
    graph["5"]["inputs"].update(steps=2, refine_iterations=0)
    graph["7"]["inputs"]["prompts"] = "a lighthouse"
    graph["9"]["inputs"].update(width=width, height=256)
    graph["10"]["inputs"].update(steps=2, seed=seed)
    return graph


def test_a_reference_of_another_size_is_a_clear_node_error(comfy_server):
    from run_workflow import WorkflowError, queue_prompt, wait_for
    prompt_id = queue_prompt(comfy_server.url, small_graph(width=320))
    with pytest.raises(WorkflowError) as info:
        wait_for(comfy_server.url, prompt_id, timeout=600, log=lambda m: None)
    message = str(info.value)
    assert info.value.kind == "execution"
    assert "AtelierStyleAligned" in message and "'reference'" in message, message
    assert "256x256" in message and "320x256" in message, message
    assert comfy_server.alive()


def test_requeuing_the_graph_reuses_the_inversion(comfy_server):
    from run_workflow import connect_ws, queue_prompt, wait_for
    client = uuid.uuid4().hex
    wait_for(comfy_server.url, queue_prompt(comfy_server.url, small_graph(256, seed=1), client), timeout=600,
             log=lambda m: None)
    ws = connect_ws(comfy_server.url, client)
    logs = []
    try:
        wait_for(comfy_server.url, queue_prompt(comfy_server.url, small_graph(256, seed=2), client), ws=ws,
                 timeout=600, log=logs.append)
    finally:
        ws.close()
    cached = [line for line in logs if line.startswith("  cached nodes")]
    assert cached and "5" in cached[0].split("cached nodes", 1)[1].replace(",", " ").split(), logs
    assert "  executing node 5" not in logs and "  executing node 10" in logs, logs
