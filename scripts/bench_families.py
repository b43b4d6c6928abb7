#!/usr/bin/env python3
"""Costs of the pack's controls on every model family it supports, one family at a time (the test bed's
tiny seeded models of the real block layouts: SD1.5 and SDXL UNets, and the diffusion transformers).

    .venv/bin/python scripts/bench_families.py --family flux [--size 256] [--batch 3] [--steps 1] [--rounds 5]
    .venv/bin/python scripts/bench_families.py --family sd35 --counts-only
    .venv/bin/python scripts/bench_families.py --family all          # every family registered below
    ATELIER_COMFYUI=0.33.0 .venv/bin/python scripts/bench_families.py --size 512   # + Krea 2 (ComfyUI >= 0.24)
    .venv/bin/python scripts/bench_families.py --family flux --regions 1 4 8      # regional rows per region count
    .venv/bin/python scripts/bench_families.py --family wan --size 256 --frames 1 5 9   # clips of 1, 5, 9 latent frames

For vanilla ComfyUI and each control (same process, same model) it prints, per sampling step:
step time and peak extra memory vs vanilla (medians of interleaved rounds; refused, with a line
saying so, when other processes load the cores: bench_common.too_loaded), floating-point operations
(``torch.utils.flop_counter.FlopCounterMode`` with the CPU fused attention kernel added) against
StyleAligned's FLOP minimum, the step time against that minimum (time ratio / minimum FLOP ratio), and
aten operator calls (on a GPU each is a launch or at least host work). Then one markdown table of every
family run (the README's). The tiny models have the real block layouts at small widths, so attention's
share of the FLOPs is larger than in the real models (text 8 tokens, local prompts 5; N regions are N
vertical strips side by side). Video families (Wan, LTX-Video) run once per ``--frames`` clip length (latent
frames), each a row of the table. The UNet-only
controls (GroupNorm sharing, ArtBN, image prompts, reference mode) have their own benches
(bench_style_aligned, bench_creative_synth, bench_inversion).

A family plugs in by name: add an entry to FAMILIES (a function returning a :class:`Family`), or ship
``scripts/tiny_models/<name>.py`` with a ``bench_family()`` returning one.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from tests.pack import pack_module  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)
from tiny_models.env import DEFAULT_BASE, DEFAULT_COMFY, bootstrap  # noqa: E402


def regional_label(regions: int) -> str:
    return f"regional ({regions} region{'s' if regions > 1 else ''})"


def joint_minimums(base, batch: int, regions=(1,), slots=None, appended=None) -> dict:
    """FLOP minimums on a DiT, from vanilla's counts: StyleAligned's shared rows ((B-1)/B of the batch) attend
    to twice the image keys, (B-1)/B of the joint attention products more (a bound from above: the text
    keys are not doubled); regional attention with N regions needs the local prompts' stream tokens' own work
    through the model and the image queries' products with their keys: ``appended[N]``, vanilla's FLOPs with
    the N local prompts' tokens appended to its prompt (a close bound from above: there the prompts also
    attend each other); aesthetic mixing needs only the aesthetic prompt's values: vanilla, a bound from
    below."""
    shared = base.flops + base.attention_flops * (batch - 1) / batch
    minimums = {"StyleAligned": (shared, "vanilla + (B-1)/B of its joint attention products, a bound from above"),
                "StyleAligned + shift": (shared, "as StyleAligned; the folded shift adds pad/head_dim of them")}
    for n in regions:
        if appended and n in appended:
            minimums[regional_label(n)] = (appended[n], f"vanilla with the {n} local prompts' tokens appended to its "
                                                        "prompt: their own work and keys")
        else:
            minimums[regional_label(n)] = (base.flops, "vanilla, a bound from below: the local prompts' own keys only")
    minimums["aesthetic mix"] = (base.flops, "vanilla, a bound from below: the aesthetic prompt's own values only")
    return minimums


def unet_minimums(base, batch: int, regions=(1,), slots=("attn1", "attn2"), appended=None) -> dict:
    """FLOP minimums where self- and cross-attention are separate modules (UNets, as bench_style_aligned,
    bench_regional and bench_aesthetic derive them; video transformers, whose modules ``slots`` names)."""
    self_flops, cross_flops = (base.module_attention_flops(slot) for slot in slots)
    shared = base.flops + self_flops * (batch - 1) / batch
    minimums = {"StyleAligned": (shared, "vanilla + (B-1)/B of its self-attention products"),
                "StyleAligned + shift": (shared, "as StyleAligned; the folded shift adds pad/head_dim of them")}
    for n in regions:
        minimums[regional_label(n)] = (base.flops + n * cross_flops,
                                       f"vanilla + {n}x its cross-attention products (A(Q, L_i) per region)")
    minimums["aesthetic mix"] = (base.flops + cross_flops / 2, "vanilla + half its cross-attention products")
    return minimums


@dataclasses.dataclass
class Family:
    """What the bench needs of a model family's tiny test-bed model."""
    label: str
    model: object  # ComfyUI ModelPatcher
    conditioning: Callable  # (tokens, seed) -> CONDITIONING
    latent_channels: int = 16
    cfg: float = 1.0
    scheduler: str = "simple"
    minimums: Callable = joint_minimums  # (vanilla's Costs, batch, regions, slots) -> {control: (FLOP minimum, why)}
    slots: tuple | None = None  # unet_minimums: the (self, cross) attention modules' names
    latent: Callable | None = None  # (batch, size, frames) -> an empty latent; None: [B, C, size/8, size/8]
    video: bool = False  # one row per --frames clip length


def _tiny_unet(file: str, label: str, context_dim: int, pooled: int | None) -> Family:
    import torch
    from tiny_models.checkpoints import load_checkpoint
    model, _, _ = load_checkpoint(DEFAULT_BASE / "models" / "checkpoints" / file)

    def conditioning(tokens, seed):
        gen = torch.Generator().manual_seed(seed)
        extra = {} if pooled is None else {"pooled_output": torch.randn(1, pooled, generator=gen)}
        return [[torch.randn(1, tokens, context_dim, generator=gen), extra]]
    return Family(label, model, conditioning, latent_channels=4, scheduler="normal",
                  minimums=unet_minimums, slots=("attn1", "attn2"))


def sd15() -> Family:
    return _tiny_unet("atelier_tiny_sd15.safetensors", "SD1.5", 768, None)


def sdxl() -> Family:
    return _tiny_unet("atelier_tiny_sdxl.safetensors", "SDXL", 2048, 1280)


def _tiny_dit(name: str, guidance):
    from tiny_models.dit import build_dit, load_tiny_dit, random_conditioning, verify_dit
    from tiny_models.files import ensure_built
    model = load_tiny_dit(ensure_built(DEFAULT_BASE / "models" / "diffusion_models" / name, verify_dit, build_dit))
    return model, (lambda tokens, seed: random_conditioning(model, tokens=tokens, seed=seed, guidance=guidance))


def flux() -> Family:
    from tiny_models.dit import FLUX
    model, cond = _tiny_dit(FLUX, 3.5)
    return Family("Flux.1", model, cond)


def sd35() -> Family:
    from tiny_models.dit import SD35
    model, cond = _tiny_dit(SD35, None)
    return Family("SD3.5", model, cond)


FAMILIES: dict[str, Callable[[], Family]] = {"sd15": sd15, "sdxl": sdxl, "flux": flux, "sd35": sd35}
# the tiny_models modules with a bench_family() that --family all runs too (krea2 needs ComfyUI >= 0.24)
TINY_MODULE_FAMILIES = ("lumina", "qwen_image", "flux2", "chroma", "krea2", "wan", "ltx")


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


def bench_family(fam: Family, a, frames: int = 1) -> dict:
    """Prints the family's figures; returns {control: Row} for the summary table."""
    import torch
    import comfy.sample
    from scripts.bench_common import PeakRSS, machine_line, print_timings, timed_rounds
    from scripts.bench_counts import print_cost_table, print_minimum
    dispatcher = pack_module("attention.dispatch.dispatcher")
    style = pack_module("attention.style_aligned")
    regional = pack_module("attention.regional")
    curves = pack_module("attention.weight_curves")
    mix = pack_module("attention.aesthetic_mix")
    model = fam.model
    pos = fam.conditioning(8, 1)
    local = fam.conditioning(5, 7)[0][0]

    def strips(n):  # n regions side by side, each its own local prompt
        return tuple(regional.Region(cond=fam.conditioning(5, 7 + i)[0][0], curve=curves.WeightCurve(),
                                     box=(i / n, 0.0, 1.0 / n, 1.0)) for i in range(n))
    controls = {
        "vanilla": None,
        "StyleAligned": style.SharedAttentionControl(),
        "StyleAligned + shift": style.SharedAttentionControl(settings=style.SharingSettings(score_shift=0.69)),
        **{regional_label(n): regional.RegionalControl(regions=strips(n)) for n in a.regions},
        "aesthetic mix": mix.AestheticMixControl(aesthetic=local, strength=0.5),
    }
    variants = {label: model if control is None else dispatcher.attach(model, control, node="bench")
                for label, control in controls.items()}
    latent = (fam.latent(a.batch, a.size, frames) if fam.latent is not None
              else torch.zeros(a.batch, fam.latent_channels, a.size // 8, a.size // 8))

    def sample(patched, positive=pos):
        x = comfy.sample.fix_empty_latent_channels(patched, latent)  # [B, C, 1, H, W] where the VAE is Wan 2.1's
        noise = comfy.sample.prepare_noise(x, 0)
        return comfy.sample.sample(patched, noise, a.steps, fam.cfg, "euler", fam.scheduler, positive, positive, x,
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
    clip = f", {frames} latent frames" if fam.video else ""
    print(f"{fam.label}: {a.size}x{a.size} px{clip}, batch {a.batch}, {a.steps} step(s), cfg {fam.cfg} on the CPU")
    timings = None
    if not a.counts_only:
        print(f"  median of {a.rounds} interleaved rounds")
        print(machine_line())
        timings = timed_rounds(variants, timed, a.rounds)
        if timings is not None:
            print_timings(timings)
    timing = {name: (tr, mr) for name, (_, _, tr, mr) in (timings or {}).items()}
    print_cost_table(costs, a.steps)
    base = costs["vanilla"]
    appended = {}
    if fam.minimums.__name__ == "joint_minimums":  # the regional minimum: vanilla with the local prompts' tokens appended
        for n in a.regions:
            longer = fam.conditioning(8 + 5 * n, 1)
            appended[n] = counted(lambda: sample(model, longer)).flops
    minimums = fam.minimums(base, a.batch, a.regions, fam.slots, appended)
    for name, (flops, why) in minimums.items():
        print_minimum(name, costs, flops, why, timing=timing)
    rows = {}
    for name in variants:
        flops, calls = costs[name].flops / base.flops, costs[name].calls / base.calls
        floor = minimums[name][0] / base.flops if name in minimums else None
        t, m = timing.get(name, (None, None))
        extra_mib = timings[name][1] / 2**20 if timings is not None else None
        rows[name] = Row(flops, floor, calls, t, m, extra_mib)
    return rows


@dataclasses.dataclass
class Row:
    """One control's ratios to vanilla (time and memory None when not timed)."""
    flops: float
    flop_minimum: float | None
    calls: float
    time: float | None
    memory: float | None
    extra_mib: float | None  # its own peak extra memory (vanilla's is what the memory ratios divide by)

    def cell(self) -> str:
        text = f"x{self.flops:.3f}" + (f" (x{self.flop_minimum:.3f})" if self.flop_minimum else "") + f" / x{self.calls:.2f}"
        if self.time is not None:
            text += f" / x{self.time:.2f}"
            if self.flop_minimum:
                text += f" ({self.time / self.flop_minimum:.2f})"
            text += f" / x{self.memory:.2f}"
        return text


def print_summary(results: dict, a) -> None:
    """The README's table: per family and control, FLOPs (the control's FLOP minimum) / op calls / step time
    (its ratio to the FLOP minimum) / peak extra memory, all vs vanilla in the same run."""
    controls = [c for c in next(iter(results.values())) if c != "vanilla"]
    print(f"\nsummary ({a.size} px, batch {a.batch}, {a.steps} step(s); per cell: FLOPs (minimum) / op calls"
          f"{'' if a.counts_only else ' / step time (time over FLOP minimum) / peak extra memory'}, vs vanilla)")
    print("| family | px | " + " | ".join(controls) + " | vanilla peak extra |")
    print("|---" * (len(controls) + 3) + "|")
    for label, rows in results.items():
        extra = rows["vanilla"].extra_mib
        print(f"| {label} | {a.size} | " + " | ".join(rows[c].cell() for c in controls) +
              f" | {'' if extra is None else f'{extra:.0f} MiB'} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="all", help=f"one of {', '.join(FAMILIES)}, a tiny_models module name "
                                                    f"with bench_family(), or all (default)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--counts-only", action="store_true", help="exact counts only, no timing rounds")
    ap.add_argument("--regions", type=int, nargs="+", default=[1], help="regional rows for these region counts")
    ap.add_argument("--frames", type=int, nargs="+", default=[5], help="video families: latent frames per clip")
    a = ap.parse_args(argv)
    bootstrap(DEFAULT_COMFY, DEFAULT_BASE)
    names = [*FAMILIES, *TINY_MODULE_FAMILIES] if a.family == "all" else [a.family]
    results = {}
    for name in names:
        try:
            fam = family(name)
        except SystemExit as why:  # a family this ComfyUI does not have (krea2 before 0.24)
            if a.family != "all":
                raise
            print(f"{name}: left out: {why}")
            continue
        if fam.video:
            for frames in a.frames:
                results[f"{fam.label}, {frames} frame{'s' if frames > 1 else ''}"] = bench_family(fam, a, frames)
        else:
            results[fam.label] = bench_family(fam, a)
    if results:
        print_summary(results, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
