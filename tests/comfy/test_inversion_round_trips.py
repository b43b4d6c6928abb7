"""The inversion's round trip inside a real ComfyUI, on every family AtelierInvert supports: invert a
latent of model-space std 1 (8x8, 16x16 or 32x32, seeds drawn by hypothesis) at 20 steps with the family's
usual shift and the settings the README's table recommends (refine_iterations 2, max_evaluations 20), then
regenerate with ComfyUI's own sampler over the inversion's sigmas (flow models: euler from x_T as the
noise; UNets: ddim from x_T with noise off). The relative RMS error in model space stays within the 1 %
target, every step converged, and no step spent more than its budget.

Hypothesis runs derandomized (a fixed seed): per family one drawn example plus explicit ones (the issue's
failing Z-Image seed 6 at 8x8, and 32x32). The tiny SD1.5 costs ~0.2 s a model evaluation at 8x8 and
~10x that at 32x32 (~95 evaluations a round trip), so its UNet cases draw 8x8 and 16x16 and the 32x32 case
is marked slow; scripts/inversion_round_trips.py measures every size (README table)."""
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from tests.comfy.inversion_families import FAMILIES, round_trip

STEPS = 20
TARGET = 0.01  # the bar: 1 % relative RMS round trip at 20 steps (measured 1e-4..3.4e-3, README)
REFINE, BUDGET = 2, 20  # the README's recommendation for every family
FLOWS = ["Flux.1", "SD3.5", "Z-Image", "Qwen-Image", "FLUX.2", "Chroma", "Krea 2"]
UNETS = ["SD1.5 eps", "SD1.5 v"]
ONE_DRAWN = settings(max_examples=1, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def loaded():
    """family name -> (model, prompt), loaded once per file and dropped with it."""
    models: dict = {}
    yield models
    models.clear()


def check(comfy, loaded, name, side, seed):
    if name not in loaded:
        loaded[name] = FAMILIES[name].load(comfy)
    model, positive = loaded[name]
    error, trajectory = round_trip(comfy, model, FAMILIES[name], positive, side, seed, STEPS, REFINE, BUDGET)
    print(f"\n{name} {side}x{side} seed {seed}: round trip {error:.3g}, {sum(trajectory.evaluations)} evaluations "
          f"(budget {STEPS * BUDGET}; the plain K = 5 refinement: {STEPS * 6})")
    assert max(trajectory.evaluations) <= BUDGET and not trajectory.unsolved_steps()
    assert error <= TARGET


@pytest.mark.parametrize("name", FLOWS)
@given(side=st.sampled_from([8, 16, 32]), seed=st.integers(0, 2 ** 16))
@example(side=8, seed=6)
@example(side=32, seed=2)
@ONE_DRAWN
def test_flow_inversion_round_trip_within_one_percent_at_20_steps(comfy, loaded, name, side, seed):
    check(comfy, loaded, name, side, seed)


@pytest.mark.parametrize("name", UNETS)
@given(side=st.sampled_from([8, 16]), seed=st.integers(0, 2 ** 16))
@example(side=8, seed=6)
@ONE_DRAWN
def test_unet_inversion_round_trip_within_one_percent_at_20_steps(comfy, loaded, name, side, seed):
    check(comfy, loaded, name, side, seed)


@pytest.mark.slow
def test_unet_inversion_round_trip_at_32x32(comfy, loaded):
    check(comfy, loaded, "SD1.5 eps", 32, 2)
