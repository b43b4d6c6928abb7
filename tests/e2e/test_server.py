"""A real ComfyUI server with the pack linked: node ids listed, shipped API workflows run over HTTP,
bad input comes back as ComfyUI's node error (HTTP 400), not a crash."""
import json
import urllib.error
import urllib.request

import pytest

from tests.harness import PACK_DIR, api_workflows, graphs
from tests.harness.paths import one_per_model

PACK_MODULE = f"custom_nodes.{PACK_DIR.name}"
SHIPPED = api_workflows()
ONE_PER_MODEL = one_per_model(SHIPPED)  # what the older test bed runs over HTTP


def declared_ids():
    if not (PACK_DIR / "__init__.py").exists():
        pytest.skip("the pack has no __init__.py yet")
    from tests.harness.inprocess import declared_pack_node_ids
    ids = declared_pack_node_ids()  # raises with ComfyUI's warning text if the pack does not import
    if not ids:
        pytest.skip("the pack declares no nodes yet")
    return ids


def test_every_declared_node_is_listed(comfy_server):
    ids = declared_ids()
    info = comfy_server.object_info()
    missing = [i for i in ids if i not in info]
    assert not missing, f"not in /object_info: {missing}\nserver log:\n{comfy_server.log_tail()}"
    failed = [l for l in comfy_server.log_tail(2000).splitlines() if PACK_DIR.name in l and ("IMPORT FAILED" in l or "Cannot import" in l)]
    assert not failed, failed
    for node_id in ids:
        d = info[node_id]
        assert node_id.startswith("Atelier"), node_id
        assert d.get("python_module") == PACK_MODULE, (node_id, d.get("python_module"))
        assert d.get("description"), f"{node_id} has no description"
        assert d.get("category"), f"{node_id} has no category"
    served = sorted(k for k, v in info.items() if v.get("python_module") == PACK_MODULE)
    assert served == ids, f"served {served} != declared {ids}"


@pytest.mark.parametrize("workflow", SHIPPED or [pytest.param(None, marks=pytest.mark.skip("no workflows/api/*.json yet"))],
                         ids=lambda p: p.stem if p else "none")
def test_shipped_api_workflow_runs(comfy_server, workflow, tmp_path):
    from run_workflow import load_workflow, run_prompt
    from tests.harness.paths import COMFY_DIR
    from tiny_models.template_swap import for_test_bed, unsupported
    from tiny_models import env
    reason = unsupported(workflow.stem, COMFY_DIR)
    if reason:
        pytest.skip(reason)
    if env.COMFYUI_VERSION != env.NEWEST_COMFYUI and workflow not in ONE_PER_MODEL:
        pytest.skip(f"on ComfyUI {env.COMFYUI_VERSION} one workflow per model family runs over HTTP (make test's "
                    f"time); every API twin passes this version's validation in tests/comfy/test_api_twins_validate.py")
    logs = []
    entry, saved = run_prompt(comfy_server.url, for_test_bed(load_workflow(workflow)), out_dir=tmp_path, timeout=600, log=logs.append)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert saved, f"{workflow.name} produced no output image; outputs: {json.dumps(entry.get('outputs'))[:500]}"
    for p in saved:
        assert p.stat().st_size > 100 and (p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" or video_clips(p)), p


def video_clips(path) -> int:
    """How many whole test-bed clips (template_swap.TEST_FRAMES frames each) a saved MP4 holds; 0 if not a video."""
    from tiny_models.template_swap import TEST_FRAMES
    if path.suffix != ".mp4" or path.read_bytes()[4:8] != b"ftyp":
        return 0
    import av
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    return frames // TEST_FRAMES if frames % TEST_FRAMES == 0 else 0


@pytest.mark.slow
def test_an_sdxl_template_runs_on_the_tiny_sdxl(comfy_server, tmp_path):
    """The other shipped workflows run with SD1.5 stand-ins for speed; this one keeps SDXL (reference
    inversion, StyleAligned with the reference row, a batch of prompts) at 128 px. On the newest test bed
    only (make test's time); the older one runs the tiny SDXL in-process (tests/comfy)."""
    from tiny_models import env
    if env.COMFYUI_VERSION != env.NEWEST_COMFYUI:
        pytest.skip(f"runs on ComfyUI {env.NEWEST_COMFYUI} only (make test's time)")
    from run_workflow import load_workflow, run_prompt
    from tiny_models.template_swap import for_test_bed
    from tests.harness import SDXL, WORKFLOWS_API_DIR
    graph = for_test_bed(load_workflow(WORKFLOWS_API_DIR / "style_from_image.json"), size=128, fast=False)
    assert graph["1"]["inputs"]["ckpt_name"] == SDXL
    entry, saved = run_prompt(comfy_server.url, graph, out_dir=tmp_path, timeout=900, log=lambda m: None)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert len(saved) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in saved)


def post_prompt(url, prompt):
    req = urllib.request.Request(url + "/prompt", data=json.dumps({"prompt": prompt, "client_id": "e2e"}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("breakage", ["steps is not a number", "missing required link"])
def test_bad_input_is_a_node_error(comfy_server, breakage):
    g = graphs.txt2img(steps=1)
    if breakage == "steps is not a number":
        g["5"]["inputs"]["steps"] = "abc"
    else:
        del g["5"]["inputs"]["positive"]
    status, body = post_prompt(comfy_server.url, g)
    assert status == 400, body
    assert "5" in body["node_errors"], body
    assert body["node_errors"]["5"]["class_type"] == "KSampler"
    from run_workflow import WorkflowError, queue_prompt
    with pytest.raises(WorkflowError) as e:
        queue_prompt(comfy_server.url, g)
    assert e.value.kind == "validation" and "KSampler" in str(e.value)
    assert comfy_server.alive()


def test_tiny_txt2img_runs_over_http(comfy_server, tmp_path):
    from run_workflow import run_prompt
    entry, saved = run_prompt(comfy_server.url, graphs.txt2img(steps=2, seed=7), out_dir=tmp_path, log=lambda m: None)
    assert len(saved) == 1 and saved[0].read_bytes()[:4] == b"\x89PNG"
