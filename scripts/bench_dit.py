#!/usr/bin/env python3
"""Costs of the pack's controls on diffusion transformers, one model family at a time (tiny seeded
test-bed models of the real block layouts).

    .venv/bin/python scripts/bench_dit.py --family flux [--size 256] [--batch 3] [--steps 1] [--rounds 5]
    .venv/bin/python scripts/bench_dit.py --family sd35 --counts-only
    .venv/bin/python scripts/bench_dit.py --family all          # every family registered below

For vanilla ComfyUI and each control (same process, same model) it prints, per sampling step:
step time and peak extra memory vs vanilla (medians of interleaved rounds; refused, with a line
saying so, when other processes load the cores: bench_common.too_loaded), floating-point operations
(``torch.utils.flop_counter.FlopCounterMode`` with the CPU fused attention kernel added) against each
control's FLOP minimum, the step time against that minimum (time ratio / minimum FLOP ratio), and aten
operator calls (on a GPU each is a launch or at least host work). The tiny models have the real block
layouts at width 64 / 128, so attention's share of the FLOPs is larger than in the real models (text 8
tokens, local prompts 5).

A family plugs in by name: add an entry to FAMILIES (a function returning a :class:`Family`), or ship
``scripts/tiny_models/<name>.py`` with a ``bench_family()`` returning one.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import statistics
import sys
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from tests.pack import pack_module  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)
from tiny_models.env import DEFAULT_BASE, DEFAULT_COMFY, bootstrap  # noqa: E402


@dataclasses.dataclass
class Family:
    """What the bench needs of a model family's tiny test-bed model."""
    label: str
    model: object  # ComfyUI ModelPatcher
    conditioning: Callable  # (tokens, seed) -> CONDITIONING
    latent_channels: int = 16
    cfg: float = 1.0
    scheduler: str = "simple"


def _tiny_dit(name: str, guidance):
    from tiny_models.dit import build_dit, load_tiny_dit, random_conditioning, verify_dit
    path = DEFAULT_BASE / "models" / "diffusion_models" / name
    try:
        verify_dit(path)
    except Exception:
        build_dit(path)
    model = load_tiny_dit(path)
    return model, (lambda tokens, seed: random_conditioning(model, tokens=tokens, seed=seed, guidance=guidance))


def flux() -> Family:
    from tiny_models.dit import FLUX
    model, cond = _tiny_dit(FLUX, 3.5)
    return Family("Flux.1", model, cond)


def sd35() -> Family:
    from tiny_models.dit import SD35
    model, cond = _tiny_dit(SD35, None)
    return Family("SD3.5", model, cond)


FAMILIES: dict[str, Callable[[], Family]] = {"flux": flux, "sd35": sd35}
# the tiny_models modules with a bench_family() that --family all runs too (krea2 needs ComfyUI >= 0.24)
TINY_MODULE_FAMILIES = ("lumina", "qwen_image", "flux2", "chroma", "krea2")


def family(name: str) -> Family:
    if name in FAMILIES:
        return FAMILIES[name]()
    try:
        module = importlib.import_module(f"tiny_models.{name}")
    except ImportError:
        module = None
    if module is None or not hasattr(module, "bench_family"):
        raise SystemExit(f"--family {name}: not one of {', '.join(FAMILIES)}, and no tiny_models/{name}.py "
                         f"with bench_family()")
    return module.bench_family()


def counted(run):
    from scripts.bench_counts import Costs
    with Costs() as costs:
        run()
    return costs


def bench_family(fam: Family, a) -> None:
    import torch
    import comfy.sample
    from scripts.bench_common import PeakRSS, machine_line, print_timings, timed_rounds
    from scripts.bench_counts import print_cost_table, print_minimum
    dispatcher = pack_module("attention.core.dispatcher")
    style = pack_module("attention.style_aligned")
    regional = pack_module("attention.regional")
    curves = pack_module("attention.weight_curves")
    mix = pack_module("attention.aesthetic_mix")
    model = fam.model
    pos = fam.conditioning(8, 1)
    local = fam.conditioning(5, 7)[0][0]
    controls = {
        "vanilla": None,
        "StyleAligned": style.SharedAttentionControl(),
        "StyleAligned + shift": style.SharedAttentionControl(settings=style.SharingSettings(score_shift=0.69)),
        "regional (1 region)": regional.RegionalControl(regions=(regional.Region(
            cond=local, curve=curves.WeightCurve(), box=(0.0, 0.0, 0.5, 1.0)),)),
        "aesthetic mix": mix.AestheticMixControl(aesthetic=local, strength=0.5),
    }
    variants = {label: model if control is None else dispatcher.attach(model, control, node="bench")
                for label, control in controls.items()}
    latent = torch.zeros(a.batch, fam.latent_channels, a.size // 8, a.size // 8)

    def sample(patched):
        x = comfy.sample.fix_empty_latent_channels(patched, latent)  # [B, C, 1, H, W] where the VAE is Wan 2.1's
        noise = comfy.sample.prepare_noise(x, 0)
        return comfy.sample.sample(patched, noise, a.steps, fam.cfg, "euler", fam.scheduler, pos, pos, x,
                                   disable_pbar=True, seed=0)

    def timed(name, patched):
        import time
        with PeakRSS() as rss:
            t0 = time.perf_counter()
            sample(patched)
            seconds = time.perf_counter() - t0
        return seconds / a.steps, rss.extra

    for patched in variants.values():  # warm-up
        sample(patched)
    costs = {label: counted(lambda p=patched: sample(p)) for label, patched in variants.items()}
    print(f"{fam.label}: {a.size}x{a.size} px, batch {a.batch}, {a.steps} step(s), cfg {fam.cfg} on the CPU")
    result = {}
    if not a.counts_only:
        print(f"  median of {a.rounds} interleaved rounds")
        print(machine_line())
        timings = timed_rounds(variants, timed, a.rounds)
        if timings is not None:
            print_timings(timings)
            result = {name: (tr, mr) for name, (_, _, tr, mr) in timings.items()}
    print_cost_table(costs, a.steps)
    base = costs["vanilla"]
    rows = a.batch
    # the joint attention's image queries attend to twice the image keys for (B-1)/B of the rows; the
    # text tokens' products are a small part at these token counts: (B-1)/B of the attention products
    attention = base.attention_flops
    print_minimum("StyleAligned", costs, base.flops + attention * (rows - 1) / rows,
                  "vanilla + (B-1)/B of all its attention products: a bound from above, the text keys are not doubled",
                  timing=result)
    print_minimum("StyleAligned + shift", costs, base.flops + attention * (rows - 1) / rows,
                  "as StyleAligned (the folded shift adds pad/head_dim of them)", timing=result)
    print("  regional, aesthetic mix: no FLOP minimum derived for the joint layouts yet (their extra text streams' "
          "products depend on each family's token layout)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="all", help=f"one of {', '.join(FAMILIES)}, a tiny_models module name "
                                                    f"with bench_family(), or all (default)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--counts-only", action="store_true", help="exact counts only, no timing rounds")
    a = ap.parse_args(argv)
    bootstrap(DEFAULT_COMFY, DEFAULT_BASE)
    names = [*FAMILIES, *TINY_MODULE_FAMILIES] if a.family == "all" else [a.family]
    for name in names:
        try:
            fam = family(name)
        except SystemExit as why:  # a family this ComfyUI does not have (krea2 before 0.24)
            if a.family != "all":
                raise
            print(f"{name}: left out: {why}")
            continue
        bench_family(fam, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
