"""StyleAligned step time and peak memory vs unpatched ComfyUI (same batch, same run), then exact
per-step FLOPs and aten operator calls (see bench_counts).

    .venv/bin/python scripts/bench_style_aligned.py                     # tiny SD1.5, 256 px, CPU
    .venv/bin/python scripts/bench_style_aligned.py --counts-only       # counts only (no timing rounds)
    python scripts/bench_style_aligned.py --device cuda --full --model sdxl   # GPU, full-size fp16

    .venv/bin/python scripts/bench_style_aligned.py --full --size 64 --steps 1 --counts-only --gpu-like
                                             # the real SD1.5's op stream as a GPU runs it, counted on the CPU

FLOP minimum of shared attention: with row 0 in a call of its own (the CPU, and large layers on a GPU)
the generated rows ((B-1)/B of the batch) attend to twice the keys, (B-1)/B of vanilla's self-attention
products more; with row 0 in the generated rows' call (small layers on fused kernels, fewer launches)
every row does, once more. AdaIN, the score shift and GroupNorm sharing need no matrix products. The shift's extra head channels add pad/head_dim of the
self-attention products. The CPU slices the call to bound its score matrix (one more ComfyUI attention
call per layer); the "as on a GPU" line and --gpu-like count without it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.bench_common import compare, count_costs, load_model, parse_args  # noqa: E402
from scripts.bench_counts import print_cost_table, print_minimum  # noqa: E402
from tests.pack import pack_module  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)


def main():
    args = parse_args(__doc__)
    node = pack_module("nodes.style_aligned").AtelierStyleAligned
    model, positive, negative = load_model(args)

    def patched(**kw):
        settings = dict(share_attention=True, adain_queries=True, adain_keys=True, adain_values=False,
                        share_group_norm=False, shared_score_scale=1.0, shared_score_shift=0.0, layers="all",
                        unshared_fraction=0.0, start_percent=0.0, end_percent=1.0)
        settings.update(kw)
        return node.execute(model, **settings).args[0]

    result = compare({"vanilla": model,
                      "style_aligned (defaults)": patched(),
                      "style_aligned + shift": patched(shared_score_shift=0.693),
                      "style_aligned + shift + group norm": patched(shared_score_shift=0.693, share_group_norm=True)},
                     positive, negative, args)
    costs = result["costs"]
    base = costs["vanilla"]
    # row 0 in a call of its own (the CPU; large layers on a GPU): the generated rows attend to 2x keys,
    # (B-1)/B of vanilla's self-attention products more; row 0 in the shared call (small layers on fused
    # kernels): every row does, once more (see attention.style_aligned.reference_in_shared_call)
    apart = base.flops + base.attn1_flops * (args.batch - 1) / args.batch
    shared = base.flops + base.attn1_flops
    for name in costs:
        if name != "vanilla":
            print_minimum(name, costs, apart, f"vanilla + (B-1)/B of its self-attention products, row 0 apart; "
                                              f"x{shared / base.flops:.3f} with row 0 in the shared call")
    style_aligned = pack_module("attention.style_aligned")
    on_cpu = style_aligned.materialises_scores
    style_aligned.materialises_scores = lambda device: False  # what runs where attention is fused
    try:
        gpu_like = count_costs({"style_aligned (defaults), as on a GPU": patched(),
                                "+ shift, as on a GPU": patched(shared_score_shift=0.693)},
                               positive, negative, args)
    finally:
        style_aligned.materialises_scores = on_cpu
    print_cost_table({"vanilla": base, **gpu_like}, args.steps)


if __name__ == "__main__":
    main()
