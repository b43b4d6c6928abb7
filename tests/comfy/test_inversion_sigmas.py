"""AtelierInvert's optional sigmas input inside a real ComfyUI: any scheduler node's SIGMAS drive the
inversion, the trajectory and the sigmas output replay exactly those sigmas, and sigmas no inversion can
run on are refused naming the node, the input and the fix."""
import math

import pytest
import torch

from tests.comfy.inversion_families import FAMILIES, latent, regenerate, relative_error
from tests.pack import pack_module

ROUND_TRIP = 0.01  # the target; these 8-step K = 5, 20-evaluation round trips measured <= 1e-3


def invert(comfy, model, x0, positive, **optional):
    return comfy.node_class("AtelierInvert").execute(model, {"samples": x0}, 8, 1.0, "simple", 5,
                                                     positive=positive, negative=positive, max_evaluations=20,
                                                     **optional).args


def test_basic_scheduler_sigmas_give_the_widget_inversion_bit_for_bit(comfy):
    family = FAMILIES["Flux.1"]
    model, positive = family.load(comfy)
    x0 = latent(model, family, 8, seed=1)
    sigmas = comfy.node_class("BasicScheduler").execute(model, "simple", 8, 1.0)[0]
    noised, trajectory, out_sigmas = invert(comfy, model, x0, positive, sigmas=sigmas)
    widget_noised, widget_trajectory, widget_sigmas = invert(comfy, model, x0, positive)
    assert out_sigmas is sigmas and torch.equal(trajectory.sigmas, sigmas.float())
    assert torch.equal(widget_sigmas, sigmas) and trajectory.scheduler == "custom"
    assert torch.equal(trajectory.latents, widget_trajectory.latents)
    assert torch.equal(noised["samples"], widget_noised["samples"])


def test_flux2_scheduler_drives_the_inversion_and_its_sigmas_regenerate_the_latent(comfy):
    """Flux2Scheduler's own shifted schedule for the latent's size (0.33.0 and 0.3.75 both have it)."""
    family = FAMILIES["FLUX.2"]
    model, positive = family.load(comfy)
    x0 = latent(model, family, 8, seed=2)
    sigmas = comfy.node_class("Flux2Scheduler").execute(8, 128, 128)[0]
    plain = comfy.node_class("BasicScheduler").execute(model, "simple", 8, 1.0)[0]
    assert not torch.equal(sigmas, plain), "Flux2Scheduler's schedule is its own"
    _, trajectory, out_sigmas = x_T = invert(comfy, model, x0, positive, sigmas=sigmas)
    assert out_sigmas is sigmas and torch.equal(trajectory.sigmas, sigmas.float())
    assert trajectory.latents.shape[0] == len(sigmas)
    back = regenerate(model, family, x_T[0]["samples"], out_sigmas, positive)
    error = relative_error(model.model.process_latent_in(back), model.model.process_latent_in(x0))
    print(f"\nFLUX.2, Flux2Scheduler 8 steps: round trip {error:.3g}")
    assert error <= ROUND_TRIP


BAD = {  # name: (sigmas, what the message says)
    "rising": (torch.tensor([0.5, 0.8, 0.0]), r"fall strictly.*sigma 0 is 0\.5 and sigma 1 is 0\.8"),
    "repeated": (torch.tensor([1.0, 0.5, 0.5, 0.0]), r"fall strictly"),
    "nan": (torch.tensor([1.0, math.nan, 0.0]), r"NaN or infinity"),
    "inf": (torch.tensor([math.inf, 0.5, 0.0]), r"NaN or infinity"),
    "one sigma": (torch.tensor([0.0]), r"1 sigma\(s\)"),
    "empty": (torch.tensor([]), r"0 sigma\(s\)"),
    "not ending at 0": (torch.tensor([1.0, 0.5, 0.1]), r"last sigma is 0\.1, not 0"),
    "2-D": (torch.tensor([[1.0, 0.0]]), r"1-D"),
    "integers": (torch.tensor([2, 1, 0]), r"not floating-point"),
    "above 1 on a flow model": (torch.tensor([14.6, 1.0, 0.0]), r"first sigma is 14\.6.*\[0, 1\]"),
    "not a tensor": ([1.0, 0.0], r"not a SIGMAS|literal"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_sigmas_no_inversion_can_run_on_are_refused_with_the_fix(comfy, case):
    errors = pack_module("attention.core.errors")  # the class ComfyUI's copy of the pack raises
    sigmas, says = BAD[case]
    family = FAMILIES["Flux.1"]
    model, positive = family.load(comfy)
    with pytest.raises(errors.AtelierError, match=r"AtelierInvert: input 'sigmas': .*" + says + r".*Fix: ") as caught:
        invert(comfy, model, latent(model, family, 8, seed=1), positive, sigmas=sigmas)
    assert caught.value.node == "AtelierInvert" and caught.value.input_name == "sigmas"


def test_a_unet_takes_sigmas_above_1_and_karras_schedules(comfy):
    family = FAMILIES["SD1.5 eps"]
    model, positive = family.load(comfy)
    sigmas = comfy.node_class("BasicScheduler").execute(model, "karras", 3, 1.0)[0]
    assert float(sigmas[0]) > 1
    noised, trajectory, out_sigmas = comfy.node_class("AtelierInvert").execute(
        model, {"samples": latent(model, family, 8, seed=1)}, 20, 1.0, "normal", 1, positive=positive,
        sigmas=sigmas).args
    assert out_sigmas is sigmas and trajectory.steps == 3 and torch.isfinite(noised["samples"]).all()
