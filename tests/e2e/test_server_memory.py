"""A server that keeps running does not grow: a shipped API workflow per model family (reference cache on
wherever a reference is wired) queued round after round on one real server over HTTP, each round with new seeds and
one Atelier input changed (so ComfyUI re-runs the patch nodes and drops the previous round's patched
models), leaves the server's resident memory flat after the first round has loaded everything."""
import json

import pytest

from tests.harness import api_workflows
from tests.harness.paths import one_per_model
from tiny_models.template_swap import for_test_bed

ROUNDS = 2  # the first loads the models; the second must not add to the server's memory
SIZE = 128  # px
MAX_GROWTH_MIB = 300  # after the first round; a kept set of patched models would be far more (~0.3 GB each)


def server_rss_mib(server) -> float:
    psutil = pytest.importorskip("psutil")
    return psutil.Process(server.proc.pid).memory_info().rss / 2 ** 20


def round_of(workflow, round_index: int) -> dict:
    """The workflow on the test bed (its step counts); seeds moved by the round; every Atelier node's end_percent
    alternates between 1.0 and 0.99 (a different patched model every round); reference cache on."""
    graph = for_test_bed(json.loads(workflow.read_text()), size=SIZE)
    for node in graph.values():
        inputs = node["inputs"]
        for name in ("seed", "noise_seed"):
            if isinstance(inputs.get(name), int):
                inputs[name] += round_index
        if node["class_type"].startswith("Atelier"):
            if isinstance(inputs.get("end_percent"), float):
                inputs["end_percent"] = 1.0 - 0.01 * (round_index % 2)
            if "reference_cache_mb" in inputs and isinstance(inputs.get("reference"), list):
                inputs["reference_cache_mb"] = 512
    return graph


@pytest.mark.slow
def test_server_memory_stays_flat_while_workflows_are_requeued(comfy_server, tmp_path):
    from tiny_models import env
    if env.COMFYUI_VERSION != env.NEWEST_COMFYUI:  # a server that runs for days runs a current ComfyUI
        pytest.skip(f"the soak runs on the newest test bed ({env.NEWEST_COMFYUI}) only, to keep make test within its time")
    from run_workflow import run_prompt
    workflows = one_per_model(api_workflows())
    assert workflows, "no shipped API workflows"
    after_round = []
    for round_index in range(ROUNDS):
        for workflow in workflows:
            entry, _ = run_prompt(comfy_server.url, round_of(workflow, round_index), out_dir=tmp_path,
                                  timeout=900, log=lambda m: None)
            assert entry["status"]["status_str"] == "success", (workflow.name, entry["status"])
        after_round.append(server_rss_mib(comfy_server))
    growth = max(after_round[1:]) - after_round[0]
    assert growth < MAX_GROWTH_MIB, (
        f"server RSS after each round (MiB): {[round(r) for r in after_round]}; grew {growth:.0f} MiB after "
        f"the first round\n{comfy_server.log_tail()}")
