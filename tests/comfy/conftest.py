"""In-process tier: what a test file loaded is freed when the file is done (see ComfyHarness.release)."""
import pytest


@pytest.fixture(scope="session", autouse=True)
def no_autograd():
    """As ComfyUI runs every node (under torch.inference_mode): tests that call nodes, models and encoders
    directly would otherwise record autograd graphs, whose saved activations and weights outlive the test
    (C++-held, out of the garbage collector's reach): 2-3 GB per tiny-SDXL or CLIP-vision file on 2026-12-03."""
    import torch
    with torch.no_grad():
        yield


@pytest.fixture(scope="module", autouse=True)
def free_models_after_the_file():
    yield
    from tests.harness import inprocess
    if inprocess._HARNESS is not None:
        inprocess._HARNESS.release()


# What runs on both ComfyUI versions (time budget of `make test`, CI's 90 minutes on 2 cores). On the older
# test bed (0.3.75) the in-process tier leaves out:
# - a family's flow inversion and reference-image-mode runs (the slowest tests; the same pack code on both
#   versions), while every family's invariants run on both;
# - tests marked slow (the tiny SDXL loads), the input-error tests of pack-only logic on the tiny SDXL, and
#   the longest files whose code does not differ between the versions (listed below).
NEWEST_ONLY_TESTS = ("inversion", "reference_image_mode")
NEWEST_ONLY_FILES = ("test_prompt_and_width_errors.py",
                     # the longest version-independent files (2026-12-03, 0.3.75 tier: 410/176/148/128/122/61 s);
                     # their workflows still run over HTTP on 0.3.75 in the e2e tier
                     "test_all_in_one.py", "test_inversion.py", "test_creative_synth.py", "test_reference_cache.py",
                     "test_nothing_kept_between_prompts.py", "test_fuzz_inputs.py",
                     # every family's 20-step round trip (~8 min); the same solver code on both versions
                     "test_inversion_round_trips.py")


def pytest_collection_modifyitems(config, items):
    from tiny_models import env
    if env.COMFYUI_VERSION == env.NEWEST_COMFYUI:
        return
    skip = pytest.mark.skip(reason=f"runs on ComfyUI {env.NEWEST_COMFYUI} only (time budget; tests/comfy/conftest.py says why)")
    for item in items:
        family_heavy = item.path.name.startswith("test_family_") and any(w in item.name for w in NEWEST_ONLY_TESTS)
        if family_heavy or item.path.name in NEWEST_ONLY_FILES or item.get_closest_marker("slow"):
            item.add_marker(skip)
