"""The inversion round-trip table of the README (DDIM inversion, *Round trips per family*): for each family,
latent size and seed, AtelierInvert at 20 steps and cfg 1 on the family's tiny model with its usual shift,
then ComfyUI's own sampler back over the inversion's sigmas (flow models: euler from x_T as the noise;
UNets: ddim from x_T, noise off), on a latent of model-space std 1. Relative RMS error in model space, and
the model evaluations the inversion made.

    ATELIER_COMFYUI=0.33.0 .venv/bin/python scripts/inversion_round_trips.py                 # every family
    ATELIER_COMFYUI=0.33.0 .venv/bin/python scripts/inversion_round_trips.py --families Z-Image,Flux.1 \
        --sizes 8,16 --seeds 1,2 --runs plain,before:5,solver:5:0,solver:2:20

Runs: ``plain`` (refine_iterations 0); ``before:K`` (the plain fixed-point refinement as it was before the
step solver, a frozen copy of that code: K refinements, 1 + K evaluations a step whatever they do);
``solver:K:B`` (today's AtelierInvert with refine_iterations K and max_evaluations B). Prints one markdown
row per family, size and seed; a ``solver:K:0`` cell whose whole trajectory equals ``before:K``'s bit for bit
is marked with "=".
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import tests  # noqa: E402,F401  (our tests package before ComfyUI's)

STEPS = 20


def frozen_refinement(ddim, fixed_point):
    """inversion/ddim.py's solve_step as the plain refinement was before the solver (commit 19df2b7)."""
    import torch

    def solve_step(denoise, x_low, sigma_low, sigma_high, refine_iterations=0, flow_matching=False, *args, **kwargs):
        if flow_matching:
            x_high = x_low
        else:
            x_high = x_low * ((1 + sigma_high ** 2) / (1 + sigma_low ** 2)) ** 0.5
        for _ in range(1 + refine_iterations):
            x_high = x_low + (sigma_high - sigma_low) * ddim.noise_estimate(denoise, x_high, sigma_high)
        rows = x_high.shape[0]
        nan = torch.full((rows,), float("nan"), dtype=torch.float64)
        no = torch.zeros(rows, dtype=torch.bool)
        return x_high, fixed_point.StepReport(evaluations=1 + refine_iterations, residuals=nan, measured=no,
                                              accelerated=no)
    return solve_step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="Flux.1,SD3.5,Z-Image,Qwen-Image,FLUX.2,Chroma,Krea 2,SD1.5 eps,SD1.5 v")
    parser.add_argument("--sizes", default="8,16,32")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--runs", default="plain,before:5,solver:5:0,solver:2:20")
    args = parser.parse_args(argv)
    import torch
    torch.set_grad_enabled(False)
    from tests.harness.inprocess import get_harness
    comfy = get_harness()
    comfy.pack  # noqa: B018  ComfyUI's copy of the pack first: pack_module below then returns its modules
    from tests.comfy import inversion_families
    from tests.pack import pack_module
    ddim, fixed_point = pack_module("inversion.ddim"), pack_module("inversion.fixed_point")
    solver_step, before_step = ddim.solve_step, frozen_refinement(ddim, fixed_point)
    runs = [r.split(":") for r in args.runs.split(",")]
    print("| family | latent | seed | " + " | ".join(":".join(r) for r in runs) + " |")
    print("|---|---|---|" + "---|" * len(runs))
    for name in args.families.split(","):
        family = inversion_families.FAMILIES[name]
        model, positive = family.load(comfy)
        for side in map(int, args.sizes.split(",")):
            for seed in map(int, args.seeds.split(",")):
                cells, trajectories = [], {}
                for run in runs:
                    kind = run[0]
                    refine = int(run[1]) if len(run) > 1 else 0
                    budget = int(run[2]) if len(run) > 2 else 0
                    ddim.solve_step = before_step if kind == "before" else solver_step
                    try:
                        started = time.perf_counter()
                        error, trajectory = inversion_families.round_trip(comfy, model, family, positive, side, seed,
                                                                          STEPS, refine, budget)
                        seconds = time.perf_counter() - started
                    finally:
                        ddim.solve_step = solver_step
                    trajectories[tuple(run)] = trajectory
                    before = trajectories.get(("before", str(refine)))
                    same = (kind == "solver" and budget == 0 and before is not None
                            and torch.equal(before.latents, trajectory.latents))
                    cells.append(f"{error:.2g} ({sum(trajectory.evaluations)}){' =' if same else ''}")
                    print(f"  {name} {side} seed {seed} {':'.join(run)}: {error:.3g}, {sum(trajectory.evaluations)} "
                          f"evaluations, {seconds:.1f} s", file=sys.stderr, flush=True)
                print(f"| {name} | {side}x{side} | {seed} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
