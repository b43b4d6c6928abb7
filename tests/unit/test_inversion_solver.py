"""The inversion step's solver (inversion/fixed_point.py) in pure torch: on maps with known fixed points
(contracting, non-contracting with Jacobian eigenvalues -3..-2, mixed, stalled) it reaches the exact
solution within its budget; where the plain fixed-point iteration contracts it returns exactly what the
plain refinement returned before the solver existed (a frozen copy below), row by row."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.pack import pack_module
from tests.unit.test_inversion_maths import toy_denoiser  # a smooth nonlinear x0-predictor of any strength

ddim = pack_module("inversion.ddim")
fixed_point = pack_module("inversion.fixed_point")
trajectory_module = pack_module("inversion.trajectory")

# float64 maps of dimension <= 256: a matrix product rounds at ~256 eps = 6e-14 relative, the solver's
# Gram matrix and mixing alike. These bound that, far below every tolerance the tests use: a relative
# slack on the error bound and an absolute floor (relative to |x*|) for an x that is exact to rounding.
FLOAT64_SLACK = 1e-9
FLOAT64_FLOOR = 1e-12
EXAMPLES = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def todays_inversion_step(denoise, x_low, sigma_low, sigma_high, refine_iterations=0, flow_matching=False):
    """inversion/ddim.py inversion_step as it was before the solver (commit 19df2b7), verbatim."""
    if flow_matching:
        x_high = x_low  # the model input is x itself: it sees the step below's input again
    else:
        x_high = x_low * ((1 + sigma_high ** 2) / (1 + sigma_low ** 2)) ** 0.5  # the model sees z_low again
    for _ in range(1 + refine_iterations):
        x_high = x_low + (sigma_high - sigma_low) * ddim.noise_estimate(denoise, x_high, sigma_high)
    return x_high


def linear_map(eigenvalues: torch.Tensor, seed: int, rows: int = 1):
    """G(x) = x* + A (x - x*) with A symmetric of the given eigenvalues, rows independent: (G, x*, A)."""
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q @ torch.diag(eigenvalues.double()) @ q.T
    x_star = torch.randn(rows, n, generator=g, dtype=torch.float64)
    return (lambda x: x_star + (x - x_star) @ a.T), x_star, a


class Counted:
    def __init__(self, G):
        self.G, self.calls = G, 0

    def __call__(self, x):
        self.calls += 1
        return self.G(x)


def rms(t):
    return float(t.pow(2).mean().sqrt())


def assert_within_bound(x, x_star, report, x_low, eigenvalues, row=0):
    """|x - x*| <= |(I - A)^-1| |f| = |f| / min |1 - lambda| for a symmetric A (RMS units)."""
    bound = float(report.residuals[row]) * rms(x_low[row]) / float((1 - eigenvalues.double()).abs().min())
    assert rms(x[row] - x_star[row]) <= bound * (1 + FLOAT64_SLACK) + FLOAT64_FLOOR * rms(x_star[row])


def plain_residuals(G, guess, iterations):
    """RMS residual of x_0 .. x_iterations under plain iteration."""
    x, out = guess, []
    for _ in range(iterations + 1):
        g = G(x)
        out.append((g - x).flatten(1).pow(2).mean(1).sqrt())
        x = g
    return torch.stack(out, 1)  # (rows, iterations + 1)


# ---- the exact solution where plain iteration fails ------------------------------------------------------

@given(seed=st.integers(0, 2 ** 16), dim=st.sampled_from([16, 64, 256]), low=st.floats(-3.0, -2.5),
       width=st.floats(0.0, 0.5))
@EXAMPLES
def test_jacobian_eigenvalues_minus_2_to_minus_3_plain_diverges_solver_finds_the_fixed_point(seed, dim, low, width):
    eigenvalues = torch.linspace(low, low + width, dim)  # within [-3, -2]
    G, x_star, _ = linear_map(eigenvalues, seed)
    x_low = G(torch.zeros_like(x_star))
    guess = torch.zeros_like(x_star)
    residuals = plain_residuals(G, guess, 5)
    assert bool((residuals[:, 1:] > residuals[:, :-1]).all()), "plain iteration grows the residual here"
    tolerance = 1e-8
    counted = Counted(G)
    x, report = fixed_point.solve(counted, x_low, guess, plain_iterations=2, max_evaluations=24, tolerance=tolerance)
    assert counted.calls == report.evaluations <= 24
    assert bool(report.accelerated.all()) and float(report.residuals[0]) <= tolerance
    assert_within_bound(x, x_star, report, x_low, eigenvalues)


def test_within_todays_budget_a_diverging_step_still_ends_far_better_than_plain_iteration():
    """max_evaluations 0 = 1 + K evaluations: the plain refinement's cost, now spent on Anderson once the
    residual grows; plain iteration multiplies the error by ~2.5 per evaluation instead."""
    eigenvalues = torch.linspace(-3.0, -2.0, 128)
    G, x_star, _ = linear_map(eigenvalues, seed=3)
    x_low, guess = G(torch.zeros_like(x_star)), torch.zeros_like(x_star)
    counted = Counted(G)
    x, report = fixed_point.solve(counted, x_low, guess, plain_iterations=5, tolerance=1e-6)
    plain = todays_plain(G, guess, 5)
    assert counted.calls <= 6
    assert rms(x - x_star) * 100 < rms(guess - x_star) < rms(plain - x_star)


def todays_plain(G, guess, iterations):
    x = guess
    for _ in range(1 + iterations):
        x = G(x)
    return x


@given(seed=st.integers(0, 2 ** 16), dim=st.sampled_from([32, 128]))
@EXAMPLES
def test_mixed_spectrum_minus_3_to_half_converges_to_the_fixed_point(seed, dim):
    eigenvalues = torch.linspace(-3.0, 0.5, dim)
    G, x_star, _ = linear_map(eigenvalues, seed)
    x_low, guess = G(torch.zeros_like(x_star)), torch.zeros_like(x_star)
    x, report = fixed_point.solve(G, x_low, guess, plain_iterations=1, max_evaluations=40, tolerance=1e-6)
    assert float(report.residuals[0]) <= 1e-6 and report.evaluations <= 40
    assert_within_bound(x, x_star, report, x_low, eigenvalues)


def test_a_stall_goes_on_only_with_more_budget():
    """Eigenvalues 0.95..0.99: plain iteration contracts, too slowly. Within 1 + K evaluations the result
    is the plain one; with a larger budget the stall is accelerated to the tolerance."""
    eigenvalues = torch.linspace(0.95, 0.99, 64)
    G, x_star, _ = linear_map(eigenvalues, seed=5)
    x_low, guess = G(torch.zeros_like(x_star)), torch.zeros_like(x_star)
    x, report = fixed_point.solve(G, x_low, guess, plain_iterations=4)
    assert torch.equal(x, todays_plain(G, guess, 4)) and not bool(report.accelerated.any())
    x, report = fixed_point.solve(G, x_low, guess, plain_iterations=4, max_evaluations=40, tolerance=1e-7)
    assert bool(report.accelerated.all()) and float(report.residuals[0]) <= 1e-7
    assert_within_bound(x, x_star, report, x_low, eigenvalues)


def test_a_solved_row_stops_early_and_the_budget_is_never_exceeded():
    eigenvalues = torch.linspace(-2.5, -2.0, 32)
    G, x_star, _ = linear_map(eigenvalues, seed=7)
    x_low, guess = G(torch.zeros_like(x_star)), torch.zeros_like(x_star)
    counted = Counted(G)
    _, report = fixed_point.solve(counted, x_low, guess, plain_iterations=2, max_evaluations=200, tolerance=1e-6)
    assert counted.calls == report.evaluations < 200
    for budget in (1, 2, 3, 7):
        counted = Counted(G)
        fixed_point.solve(counted, x_low, guess, plain_iterations=0, max_evaluations=budget, tolerance=0.0)
        assert counted.calls == budget


def test_rows_are_solved_apart_a_contracting_row_keeps_the_plain_result():
    """Row 0 contracts to the tolerance, row 1 diverges (the same batch, as one model evaluation)."""
    n = 48
    good, star0, _ = linear_map(torch.linspace(-0.4, 0.4, n), seed=1)
    bad, star1, _ = linear_map(torch.linspace(-3.0, -2.0, n), seed=2)

    def G(x):
        return torch.cat([good(x[:1]), bad(x[1:])])
    x_star = torch.cat([star0, star1])
    x_low, guess = G(torch.zeros_like(x_star)), torch.zeros_like(x_star)
    x, report = fixed_point.solve(G, x_low, guess, plain_iterations=12, max_evaluations=30, tolerance=1e-4)
    plain = todays_plain(G, guess, 12)
    assert torch.equal(x[0], plain[0]) and report.accelerated.tolist() == [False, True]
    assert float(report.residuals[1]) <= 1e-4 and rms(x[1] - star1) < rms(plain[1] - star1)


def test_a_model_that_gives_nan_ends_as_the_plain_refinement_did():
    def G(x):
        return torch.full_like(x, float("nan"))
    x_low = torch.ones(1, 8, dtype=torch.float64)
    x, report = fixed_point.solve(G, x_low, x_low, plain_iterations=2, max_evaluations=6, tolerance=1e-6)
    assert bool(torch.isnan(x).all()) and report.evaluations <= 6


# ---- bit for bit where the plain iteration contracts -------------------------------------------------------

def plain_history(denoise, x_low, s_low, s_high, refine, flow):
    """(rows whose plain refinement shrinks the residual at every one of its 1 + K evaluations, each
    row's relative residual of x_K)."""
    h = s_high - s_low
    G = lambda x: x_low + h * ddim.noise_estimate(denoise, x, s_high)  # noqa: E731
    residuals = plain_residuals(G, ddim.initial_guess(x_low, s_low, s_high, flow), refine)
    scale = x_low.flatten(1).pow(2).mean(1).sqrt()
    return (residuals[:, 1:] < residuals[:, :-1]).all(1), residuals[:, -1] / scale


@given(seed=st.integers(0, 2 ** 16), refine=st.integers(0, 6), rows=st.integers(1, 3), flow=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64]), strength=st.floats(0.05, 1.5),
       sigmas=st.sampled_from([(0.0, 0.3), (0.3, 1.0), (2.5, 6.0), (6.0, 14.6), (0.0, 0.14)]),
       budget=st.sampled_from([0, 12]))
@EXAMPLES
def test_where_plain_iteration_contracts_the_result_is_todays_bit_for_bit(seed, refine, rows, flow, dtype, strength,
                                                                          sigmas, budget):
    """Default budget: every row whose plain refinement contracts. A larger budget: those that also end
    within the tolerance (the others are stalls, accelerated on purpose)."""
    denoise = toy_denoiser(seed, strength)
    x_low = torch.randn(rows, 4, 3, 3, generator=torch.Generator().manual_seed(seed + 1), dtype=dtype)
    s_low, s_high = (torch.tensor(s, dtype=dtype) for s in sigmas)
    if flow:
        s_low, s_high = s_low / 15, s_high / 15  # flow sigmas lie in [0, 1]
    tolerance = 1e-3
    today = todays_inversion_step(denoise, x_low, s_low, s_high, refine, flow)
    x, report = ddim.solve_step(denoise, x_low, s_low, s_high, refine, flow, max_evaluations=budget,
                                tolerance=tolerance)
    contracting, last = plain_history(denoise, x_low, s_low, s_high, refine, flow)
    for row in range(rows):
        if refine == 0 and budget == 0 or bool(contracting[row]) and (budget == 0 or float(last[row]) <= tolerance):
            assert torch.equal(x[row], today[row]), (row, report)
            assert not bool(report.accelerated[row])
    assert report.evaluations <= max(1 + refine, budget)


def test_the_bit_for_bit_property_sees_contracting_and_non_contracting_steps():
    """The toy denoisers above, at the strengths the property draws, give both kinds of step (so neither
    branch of the property is empty)."""
    kinds = set()
    for strength in (0.1, 1.5):
        for sigmas in ((2.5, 6.0), (0.0, 0.14)):
            denoise = toy_denoiser(3, strength)
            x_low = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
            contracting, _ = plain_history(denoise, x_low, torch.tensor(sigmas[0]), torch.tensor(sigmas[1]), 5, False)
            kinds.add(bool(contracting[0]))
    assert kinds == {True, False}


def test_plain_inversion_is_unchanged_and_measures_nothing():
    denoise = toy_denoiser(0, 0.3)
    x0 = torch.randn(2, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sigmas = torch.tensor([14.6, 6.0, 2.5, 1.0, 0.3, 0.0], dtype=torch.float64)
    reports = []
    states = ddim.invert(denoise, x0, sigmas, 0, reports=reports)
    x = x0
    for i in range(len(sigmas) - 1, 0, -1):
        x = todays_inversion_step(denoise, x, sigmas[i], sigmas[i - 1], 0)
    assert torch.equal(states[0], x)
    assert [r.evaluations for r in reports] == [1] * 5 and all(bool(torch.isnan(r.residuals).all()) for r in reports)


def test_step_tolerance_is_the_round_trip_target_shared_by_the_steps():
    assert ddim.step_tolerance(20) == pytest.approx(ddim.ROUND_TRIP_TARGET / 20)
    assert ddim.step_tolerance(0) == ddim.ROUND_TRIP_TARGET


def test_unsolved_steps_are_those_above_the_tolerance_in_schedule_order():
    residuals = torch.tensor([[1e-3, 1e-6], [float("nan"), float("nan")], [1e-6, 1e-7]], dtype=torch.float64)
    traj = trajectory_module.Trajectory(latents=torch.zeros(4, 2, 4, 2, 2), sigmas=torch.tensor([1.0, 0.5, 0.2, 0.0]),
                                        conds={}, model_family="Flux", evaluations=(6, 1, 3), residuals=residuals,
                                        tolerance=1e-5, max_evaluations=6)
    assert traj.unsolved_steps() == [0]
