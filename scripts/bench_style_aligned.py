"""StyleAligned step time and peak memory vs unpatched ComfyUI (same batch, same run), then exact
per-step FLOPs and aten operator calls (see bench_counts).

    .venv/bin/python scripts/bench_style_aligned.py                     # tiny SD1.5, 256 px, CPU
    .venv/bin/python scripts/bench_style_aligned.py --counts-only       # counts only (no timing rounds)
    python scripts/bench_style_aligned.py --device cuda --full --model sdxl   # GPU, full-size fp16

FLOP minimum of shared attention: the generated rows ((B-1)/B of the batch) attend to twice the keys,
so it adds (B-1)/B of vanilla's self-attention products; AdaIN, the score shift and GroupNorm sharing
need no matrix products. On the CPU the shift's extra head channel adds 1/head_dim of the shared rows'
self-attention products. The CPU also slices the generated rows' call to bound its score matrix
(one more ComfyUI attention call per layer at batch 4); the "as on a GPU" line counts without it.
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
    minimum = base.flops + base.attn1_flops * (args.batch - 1) / args.batch
    for name in costs:
        if name != "vanilla":
            print_minimum(name, costs, minimum, "vanilla + (B-1)/B of its self-attention products")
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
