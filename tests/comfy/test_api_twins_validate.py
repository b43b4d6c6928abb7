"""Every shipped API workflow, on the test bed's models, passes this ComfyUI version's own prompt validation
(node ids, inputs, types, combo values, links). The e2e tier runs every workflow over HTTP on the newest
test bed and one per model family on the older one; this holds the rest of them to the older version too."""
import pytest

from tests.harness import api_workflows


@pytest.mark.parametrize("workflow", api_workflows(), ids=lambda p: p.stem)
def test_api_twin_passes_this_comfyuis_validation(comfy, workflow):
    from run_workflow import load_workflow
    from tests.harness.paths import COMFY_DIR
    from tiny_models.template_swap import for_test_bed, unsupported
    reason = unsupported(workflow.stem, COMFY_DIR)
    if reason:
        pytest.skip(reason)
    valid, error, outputs, node_errors = comfy.validate(for_test_bed(load_workflow(workflow)))
    assert valid, f"{workflow.name}: {error}\n{node_errors}"
    assert outputs, f"{workflow.name} has no output node"
