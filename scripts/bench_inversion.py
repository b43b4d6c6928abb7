"""DDIM inversion and reference-image StyleAligned: time vs unpatched ComfyUI sampling, same run.

    .venv/bin/python scripts/bench_inversion.py                         # tiny SD1.5, 256 px, CPU
    python scripts/bench_inversion.py --device cuda --full --model sdxl   # GPU, full-size fp16 UNet

Prints (medians of interleaved rounds):
- inversion (refine_iterations 0) time / deterministic sampling time at the same steps, batch 1, cfg 1
  (target <= 1.05);
- the cost of one refinement iteration, in sampling steps;
- reference-image mode (AtelierStyleAligned + trajectory) step time and peak memory / vanilla at the
  same batch (target <= 1.5x at batch 4), with in-batch StyleAligned beside it, and reference mode with
  its cache (reference_cache_mb) from the second run on: every run after the warm-up replays the
  reference row (goal: what in-batch StyleAligned costs);
- exact per-step FLOPs and aten operator calls of each (--counts-only: only those), plus the cache's
  first (recording) run;
- the cache's memory per step: measured on this model, and for SD1.5 512 px / SDXL 1024 px from the
  real layer shapes (scripts/reference_cache_memory.py), with the count checked on this model.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.bench_common import compare, load_model, parse_args  # noqa: E402
from tests.pack import pack_module  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)


def synchronize(args):
    if args.device == "cuda":
        import torch
        torch.cuda.synchronize()


def timed(fn, args):
    synchronize(args)
    t0 = time.perf_counter()
    fn()
    synchronize(args)
    return time.perf_counter() - t0


def main():
    args = parse_args(__doc__, batch=4, steps=8, cfg=5.0, rounds=5)
    import comfy.sample
    import torch
    invert_node = pack_module("nodes.inversion").AtelierInvert
    style_node = pack_module("nodes.style_aligned").AtelierStyleAligned
    model, positive, negative = load_model(args)
    side = args.size // 8
    latent = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(0))
    latent = latent / model.model.latent_format.scale_factor

    def invert(refine):
        return invert_node.execute(model, {"samples": latent}, args.steps, 1.0, "normal", refine,
                                   positive=positive, negative=negative).result

    def sample_deterministic():
        comfy.sample.sample(model, torch.zeros_like(latent), args.steps, 1.0, "ddim", "normal", positive, negative,
                            latent, seed=0, disable_pbar=True)

    runs = {"sampling (ddim, cfg 1)": sample_deterministic, "inversion K=0": lambda: invert(0),
            "inversion K=2": lambda: invert(2)}
    for fn in runs.values():
        fn()  # warm-up
    from scripts.bench_counts import Costs, print_cost_table, print_minimum
    costs = {}
    for name, fn in runs.items():
        with Costs() as costs[name]:
            fn()
    times = {name: [] for name in runs}
    for _ in range(0 if args.counts_only else args.rounds):
        for name, fn in runs.items():
            times[name].append(timed(fn, args))
    if not args.counts_only:
        report_times(times, args)
    print_cost_table(costs, args.steps, "sampling (ddim, cfg 1)")
    trajectory = invert(0)[1]

    def styled(reference, cache_mb=0):
        return style_node.execute(model, share_attention=True, adain_queries=True, adain_keys=True,
                                  adain_values=False, share_group_norm=False, shared_score_scale=1.0,
                                  shared_score_shift=0.0, layers="all", unshared_fraction=0.0, start_percent=0.0,
                                  end_percent=1.0, reference=reference, reference_cache_mb=cache_mb).result[0]

    cached = styled(trajectory, CACHE_MB)
    result = compare({"vanilla": model, "style_aligned in-batch": styled(None),
                      "reference image, cache off": styled(trajectory),
                      "reference image, cache hit": cached}, positive, negative, args)
    costs = result["costs"]
    base = costs["vanilla"]
    rows = args.batch
    print_minimum("reference image, cache off", costs, base.flops * (rows + 1) / rows + base.attn1_flops,
                  f"one more row per chunk ({rows + 1}/{rows} of vanilla) + {rows} generated rows attending to 2x keys",
                  timing=result)
    print_minimum("reference image, cache hit", costs, base.flops + base.attn1_flops,
                  f"vanilla + {rows} generated rows attending to 2x keys; in-batch StyleAligned shares {rows - 1}",
                  timing=result)
    print_minimum("style_aligned in-batch", costs, base.flops + base.attn1_flops * (rows - 1) / rows,
                  "vanilla + (B-1)/B of its self-attention products, row 0 apart", timing=result)
    report_cache(cached, styled(trajectory, CACHE_MB), costs, positive, negative, args)


CACHE_MB = 65536


def report_cache(cached, fresh, costs, positive, negative, args):
    """The cache's hits, its first (recording) run's costs, and its memory per step (measured here;
    SD1.5 512 / SDXL 1024 from the real layer shapes, the count checked against this model's cache)."""
    import torch
    from scripts.bench_common import KIND, UNETS, sample_once
    from scripts.bench_counts import Costs
    from scripts.reference_cache_memory import MIB, bytes_per_step, layer_shapes, report
    keys = pack_module("attention.core.keys")
    import comfy.patcher_extension as ext
    cache = cached.get_wrappers(ext.WrappersMP.APPLY_MODEL, keys.REFERENCE_KEY)[0].cache
    with Costs() as recording:
        sample_once(fresh, positive, negative, args)
    base = costs["vanilla"]
    print(f"  reference image, cache first run (recording): {recording.flops / base.flops:5.3f}x FLOPs, "
          f"{recording.calls / base.calls:5.3f}x op calls vs vanilla")
    per_call = cache.nbytes / max(cache.stored, 1)
    print(f"  cache: {cache.stored} model calls recorded, {cache.hits} replayed, {per_call / MIB:.2f} MiB per "
          f"model call on this model ({cache.nbytes / MIB:.1f} MiB for {args.steps} steps)")
    dtype = next(cached.model.diffusion_model.parameters()).dtype
    attn, norms = layer_shapes(KIND[args.model], UNETS[(args.model, args.full)], args.size)
    counted = bytes_per_step(attn, norms, chunks=2 if args.cfg != 1.0 else 1,
                             itemsize=torch.empty((), dtype=dtype).element_size())
    print(f"  layer-shape count for this model: {counted / MIB:.2f} MiB per model call "
          f"({'matches' if counted == per_call else 'DIFFERS from'} the cache's own bytes)")
    report()


def report_times(times, args):
    med = {name: statistics.median(t) for name, t in times.items()}
    base = med["sampling (ddim, cfg 1)"]
    print(f"{args.model}{' full fp16' if args.full else ' tiny'} {args.size}px batch 1, {args.steps} steps, cfg 1, "
          f"on {args.device}, median of {args.rounds} interleaved rounds")
    for name, t in med.items():
        print(f"  {name:32s} {t:8.3f} s   x{t / base:5.2f} vs sampling")
    per_iteration = (med["inversion K=2"] - med["inversion K=0"]) / (2 * args.steps)
    print(f"  one refinement iteration = {per_iteration:.4f} s per step = "
          f"{per_iteration / (base / args.steps):.2f} sampling steps")


if __name__ == "__main__":
    main()
