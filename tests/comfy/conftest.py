"""In-process tier: what a test file loaded is freed when the file is done (see ComfyHarness.release)."""
import pytest


@pytest.fixture(scope="module", autouse=True)
def free_models_after_the_file():
    yield
    from tests.harness import inprocess
    if inprocess._HARNESS is not None:
        inprocess._HARNESS.release()
