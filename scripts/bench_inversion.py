"""DDIM inversion and reference-image StyleAligned: time vs unpatched ComfyUI sampling, same run.

    .venv/bin/python scripts/bench_inversion.py                         # tiny SD1.5, 256 px, CPU
    python scripts/bench_inversion.py --device cuda --full --model sdxl   # GPU, full-size fp16 UNet

Prints (medians of interleaved rounds):
- inversion (refine_iterations 0) time / deterministic sampling time at the same steps, batch 1, cfg 1
  (target <= 1.05);
- the cost of one refinement iteration, in sampling steps;
- reference-image mode (AtelierStyleAligned + trajectory) step time and peak memory / vanilla at the
  same batch (target <= 1.5x at batch 4), with in-batch StyleAligned beside it;
- exact per-step FLOPs and aten operator calls of each (--counts-only: only those).
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
    from scripts.bench_counts import Costs, print_cost_table
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

    def styled(reference):
        return style_node.execute(model, share_attention=True, adain_queries=True, adain_keys=True,
                                  adain_values=False, share_group_norm=False, shared_score_scale=1.0,
                                  shared_score_shift=0.0, layers="all", unshared_fraction=0.0, start_percent=0.0,
                                  end_percent=1.0, reference=reference).result[0]

    compare({"vanilla": model, "style_aligned in-batch": styled(None),
             "style_aligned + reference image": styled(trajectory)}, positive, negative, args)


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
