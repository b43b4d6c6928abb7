"""In-process tier: what a test file loaded is freed when the file is done (see ComfyHarness.release)."""
import pytest


@pytest.fixture(scope="module", autouse=True)
def free_models_after_the_file():
    yield
    from tests.harness import inprocess
    if inprocess._HARNESS is not None:
        inprocess._HARNESS.release()


# What runs on both ComfyUI versions (time budget of `make test`): every family's invariants do (neutral =
# vanilla, row 0, the formula, regions, aesthetic mixing, overrides, refusals, reference tokens); its flow
# inversion and reference-image-mode runs (the slowest tests: many model calls, and the same pack code on
# both versions) run on the newest test bed only.
NEWEST = "0.33.0"
NEWEST_ONLY = ("inversion", "reference_image_mode")


def pytest_collection_modifyitems(config, items):
    from tiny_models import env
    if env.COMFYUI_VERSION == NEWEST:
        return
    skip = pytest.mark.skip(reason=f"a family's inversion and reference-image mode run on ComfyUI {NEWEST} only "
                                   "(time budget; the same pack code on both versions)")
    for item in items:
        if item.path.name.startswith("test_family_") and any(word in item.name for word in NEWEST_ONLY):
            item.add_marker(skip)
