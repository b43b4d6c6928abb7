#!/usr/bin/env python3
"""CPU proxy costs of the pack's controls on diffusion transformers (tiny seeded Flux.1 and SD3.5).

    .venv/bin/python scripts/bench_dit.py [--size 256] [--batch 3] [--steps 1]

For one sampling run per configuration (vanilla ComfyUI first, in the same process) it counts
floating-point operations (``torch.utils.flop_counter.FlopCounterMode``, with the CPU fused
attention kernel added) and aten operator calls (a ``TorchDispatchMode``: on a GPU each is a launch
or at least host work), and prints each control's ratio to vanilla. Counts, not timings: they do
not depend on the shared CPU's load. The tiny models have the real block layouts at width 64 / 128,
so attention's share of the FLOPs is larger than in the real models (text 8 tokens, local prompts 5).
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from tests.pack import pack_module  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)
from tiny_models.env import DEFAULT_BASE, DEFAULT_COMFY, bootstrap  # noqa: E402


def counted(run):
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    class OpCounter(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            OpCounter.calls += 1
            return func(*args, **(kwargs or {}))
    custom = {}
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None:
        custom[cpu_flash] = lambda q, k, v, *a, out_shape=None, **kw: sdpa_flop_count(q, k, v)
    flops = FlopCounterMode(display=False, custom_mapping=custom)
    OpCounter.calls = 0
    with flops, OpCounter():
        run()
    return flops.get_total_flops(), OpCounter.calls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1)
    a = ap.parse_args(argv)
    bootstrap(DEFAULT_COMFY, DEFAULT_BASE)
    import torch
    import comfy.sample
    from tiny_models.dit import FLUX, SD35, build_dit, load_tiny_dit, random_conditioning, verify_dit

    dispatcher = pack_module("attention.core.dispatcher")
    style = pack_module("attention.style_aligned")
    regional = pack_module("attention.regional")
    curves = pack_module("attention.weight_curves")
    mix = pack_module("attention.aesthetic_mix")
    print(f"device: CPU, {torch.get_num_threads()} threads; {a.size}x{a.size} px, batch {a.batch}, "
          f"{a.steps} step(s), cfg 1 (one model call per step)")
    for name in (FLUX, SD35):
        path = DEFAULT_BASE / "models" / "diffusion_models" / name
        try:
            verify_dit(path)
        except Exception:
            build_dit(path)
        model = load_tiny_dit(path)
        guidance = 3.5 if "flux" in name else None
        pos = random_conditioning(model, seed=1, guidance=guidance)
        local = random_conditioning(model, tokens=5, seed=7, guidance=guidance)[0][0]
        controls = {
            "vanilla": None,
            "StyleAligned": style.SharedAttentionControl(),
            "StyleAligned + shift": style.SharedAttentionControl(settings=style.SharingSettings(score_shift=0.69)),
            "regional (1 region)": regional.RegionalControl(regions=(regional.Region(
                cond=local, curve=curves.WeightCurve(), box=(0.0, 0.0, 0.5, 1.0)),)),
            "aesthetic mix": mix.AestheticMixControl(aesthetic=local, strength=0.5),
        }
        latent = torch.zeros(a.batch, 16, a.size // 8, a.size // 8)
        base = None
        for label, control in controls.items():
            patched = model if control is None else dispatcher.attach(model, control, node="bench")
            noise = comfy.sample.prepare_noise(latent, 0)
            flops, ops = counted(lambda: comfy.sample.sample(
                patched, noise, a.steps, 1.0, "euler", "simple", pos, pos, latent, disable_pbar=True, seed=0))
            base = base or (flops, ops)
            print(f"{type(model.model.model_config).__name__:5s} {label:22s} FLOPs {flops / 1e9:8.3f} G "
                  f"(x{flops / base[0]:.3f})  aten calls {ops:7d} (x{ops / base[1]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
