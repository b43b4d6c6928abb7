"""DDIM inversion on the sampler variable equals the paper's DDIM inversion, refinement makes it an
exact inverse of ComfyUI's Euler/DDIM step, and trajectories replay on the DDIM line."""
import math

import pytest
import torch

from tests.pack import pack_module
from tests.tolerance import EFFECT, LAYERS, ONE_CALL, OPS, SAMPLING, assert_close, assert_exact

ddim = pack_module("inversion.ddim")
trajectory_module = pack_module("inversion.trajectory")

FIXED_POINT = SAMPLING * torch.finfo(torch.float64).eps  # a converged inversion: regenerating is float64 rounding off
SIGMAS = torch.tensor([14.6, 6.0, 2.5, 1.0, 0.3, 0.0], dtype=torch.float64)


def toy_denoiser(seed=0, strength=0.3):
    """A smooth nonlinear x0-predictor D(x, s), mildly contractive like a trained denoiser."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64) * strength
    bias = torch.randn(4, 1, 1, generator=g, dtype=torch.float64) * 0.1

    def denoise(x, sigma):
        c_in = 1.0 / math.sqrt(float(sigma) ** 2 + 1.0)
        mixed = torch.einsum("ij,bjhw->bihw", a.to(x.dtype), torch.tanh(x * c_in))
        return (x * c_in + mixed + bias.to(x.dtype)) / (1.0 + 0.1 * float(sigma))
    return denoise


def ddim_inversion_alpha_bar(eps_model, z0, sigmas):
    """Song et al.'s DDIM inversion in alpha-bar form with the noise read at the next timestep
    (as in null-text inversion): z' = sqrt(a') (z - sqrt(1-a) eps) / sqrt(a) + sqrt(1-a') eps."""
    alpha = lambda s: 1.0 / (1.0 + float(s) ** 2)  # noqa: E731
    z = z0
    out = [z0]
    for i in range(len(sigmas) - 1, 0, -1):
        s_lo, s_hi = sigmas[i], sigmas[i - 1]
        a_lo, a_hi = alpha(s_lo), alpha(s_hi)
        eps = eps_model(z, s_hi)
        z = math.sqrt(a_hi) * (z - math.sqrt(1 - a_lo) * eps) / math.sqrt(a_lo) + math.sqrt(1 - a_hi) * eps
        out.append(z)
    return out[::-1]


def test_plain_inversion_is_the_papers_ddim_inversion():
    denoise = toy_denoiser()
    x0 = torch.randn(2, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    states = ddim.invert(denoise, x0, SIGMAS, refine_iterations=0)

    def eps_of_z(z, s):  # the same network seen in the z = sqrt(alpha_bar) x parametrisation
        x = z * math.sqrt(1.0 + float(s) ** 2)
        return (x - denoise(x, s)) / s
    zs = ddim_inversion_alpha_bar(eps_of_z, x0, SIGMAS)
    for x, z, s in zip(states, zs, SIGMAS):
        assert_close(x, z * math.sqrt(1.0 + float(s) ** 2), ulps=LAYERS, what=f"state at sigma {float(s)}")


def test_trajectory_is_in_schedule_order_and_ends_at_the_input():
    x0 = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    seen = []
    states = ddim.invert(toy_denoiser(), x0, SIGMAS, 1, on_step=lambda k, x: seen.append(k))
    assert len(states) == len(SIGMAS)
    assert seen == list(range(1, len(SIGMAS)))
    assert_exact(states[-1], x0, "the trajectory's end")


def test_refinement_makes_inversion_the_exact_inverse_of_ddim_sampling():
    denoise = toy_denoiser()
    x0 = torch.randn(2, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    errors = []
    for refine in (0, 2, 6, 200):
        x_T = ddim.invert(denoise, x0, SIGMAS, refine)[0]
        errors.append(ddim.relative_error(ddim.regenerate(denoise, x_T, SIGMAS), x0))
    assert errors[0] > EFFECT, "plain DDIM inversion is not exact"
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < FIXED_POINT, errors  # converged: the inverse of sampling up to float64 rounding


def test_each_refined_step_solves_the_implicit_equation():
    denoise = toy_denoiser()
    x_low = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    s_low, s_high = torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.5, dtype=torch.float64)
    x_high = ddim.inversion_step(denoise, x_low, s_low, s_high, refine_iterations=60)
    assert_close(ddim.ddim_step(denoise, x_high, s_high, s_low), x_low, ulps=ONE_CALL, what="a step back down")


def make_trajectory(latents, sigmas):
    return trajectory_module.Trajectory(latents=latents, sigmas=sigmas, conds={}, model_family="SD15")


def test_trajectory_replay_is_exact_at_stored_sigmas_and_on_the_ddim_line_between():
    denoise = toy_denoiser()
    sigmas = SIGMAS.float()
    x = torch.randn(1, 4, 3, 3)
    states = [x]
    for i in range(len(sigmas) - 1):
        states.append(ddim.ddim_step(denoise, states[-1], sigmas[i], sigmas[i + 1]))
    traj = make_trajectory(torch.stack(states), sigmas)
    for i, s in enumerate(sigmas):
        assert_exact(traj.latent_at(float(s)), states[i][0], f"at stored sigma {float(s)}")
    s_mid = 0.5 * (float(sigmas[1]) + float(sigmas[2]))
    on_line = ddim.ddim_step(denoise, states[1], sigmas[1], torch.tensor(s_mid))
    assert_close(traj.latent_at(s_mid), on_line[0], ulps=OPS, what="between stored sigmas")
    assert_exact(traj.latent_at(100.0), states[0][0], "above the first sigma")
    assert_exact(traj.latent_at(-1.0), states[-1][0], "below the last sigma")


def test_trajectory_is_shared_not_copied_by_deepcopy():
    import copy
    traj = make_trajectory(torch.zeros(3, 1, 4, 2, 2), torch.tensor([2.0, 1.0, 0.0]))
    assert copy.deepcopy({"t": traj})["t"] is traj
    assert traj.steps == 2 and traj.latent_shape == (4, 2, 2)


@pytest.mark.parametrize("refine", [0, 3])
def test_relative_error_is_rms_ratio(refine):
    a = torch.full((2, 2), 2.0)
    assert_close(ddim.relative_error(a * (1 + 0.1 * (refine + 1)), a), 0.1 * (refine + 1), ulps=OPS,
                 dtype=a.dtype, what="relative error")
