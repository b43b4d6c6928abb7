"""Regional attention step time (and peak memory) vs unpatched ComfyUI for 1, 2 and 4 regions.

    .venv/bin/python scripts/bench_regional.py                                 # tiny SD1.5, 256 px, CPU
    .venv/bin/python scripts/bench_regional.py --model sdxl                    # tiny SDXL
    python scripts/bench_regional.py --device cuda --full [--model sdxl]       # GPU, full-size fp16

Each region is a box of a quarter of the image with its own random local prompt (timings do not
depend on the prompt's content), weight 1 at every step. Target: <= 1.15x per added region.
Also prints exact per-step FLOPs and aten operator calls vs vanilla (--counts-only: only those). FLOP
minimum: each region adds one cross-attention over its own prompt per layer (the "cross" column
grows by vanilla's cross-attention products per region) plus its keys/values projections.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.bench_counts import print_minimum  # noqa: E402
from scripts.bench_common import compare, load_model, parse_args, random_cond  # noqa: E402
from tests.pack import pack_module  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)

BOXES = [(0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 0.5, 0.5), (0.0, 0.5, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5)]


def main():
    args = parse_args(__doc__, batch=1, steps=6)
    nodes = pack_module("nodes.regional")
    model, positive, negative = load_model(args)

    def with_regions(count: int):
        regions = None
        for i in range(count):
            local = random_cond(args, 10 + i)
            regions = nodes.AtelierRegion.execute(local, *BOXES[i], 1.0, "constant", 0.0, 0.5, "",
                                                  regions=regions).args[0]
        return nodes.AtelierRegionalAttention.execute(model, regions, "all", 0.0, 1.0).args[0]

    result = compare({"vanilla": model, "1 region": with_regions(1), "2 regions": with_regions(2),
                      "4 regions": with_regions(4)}, positive, negative, args)
    costs, base = result["costs"], result["costs"]["vanilla"]
    for n in (1, 2, 4):
        name = f"{n} region{'s' if n > 1 else ''}"
        # the formula's own cost: one more cross-attention per region (its A(Q, L_i)) over the whole batch
        print_minimum(name, costs, base.flops + n * base.attn2_flops,
                      f"vanilla + {n} x its cross-attention products (one A(Q, L_i) per region)", timing=result)
    if args.counts_only:
        return
    per_region = {n: (result[f"{n} region{'s' if n > 1 else ''}"][0]) ** (1 / n) for n in (1, 2, 4)}
    print("  step-time factor per added region (geometric): " +
          ", ".join(f"{n}: x{f:.3f}" for n, f in per_region.items()))


if __name__ == "__main__":
    main()
