"""StyleAligned step time and peak memory vs unpatched ComfyUI (same batch, same run), then exact
per-step FLOPs and aten operator calls (see bench_counts).

    .venv/bin/python scripts/bench_style_aligned.py                     # tiny SD1.5, 256 px, CPU
    .venv/bin/python scripts/bench_style_aligned.py --counts-only       # counts only (no timing rounds)
    python scripts/bench_style_aligned.py --device cuda --full --model sdxl   # GPU, full-size fp16

    .venv/bin/python scripts/bench_style_aligned.py --full --size 64 --steps 1 --counts-only --gpu-like
                                             # the real SD1.5's op stream as a GPU runs it, counted on the CPU
    .venv/bin/python scripts/bench_style_aligned.py --peer /tmp/peer   # + brianfitzgerald/style_aligned_comfy
                                             # (a checkout outside this repo) in the same interleaved rounds
    .venv/bin/python scripts/bench_style_aligned.py --peer /tmp/peer --timing-only   # just that comparison

Timed figures (step time and peak extra memory vs vanilla, medians of interleaved rounds) are refused
when other processes load the cores (the load average less the bench's own threads above half a
core: bench_common.too_loaded); the exact counts always print. Each control's step time
is also given against its FLOP minimum (time ratio / minimum FLOP ratio: 1.00 = no slower than the
unavoidable products).

FLOP minimum of shared attention: with row 0 in a call of its own (the CPU, and large layers on a GPU)
the generated rows ((B-1)/B of the batch) attend to twice the keys, (B-1)/B of vanilla's self-attention
products more; with row 0 in the generated rows' call (small layers on fused kernels, fewer launches)
every row does, once more. AdaIN, the score shift and GroupNorm sharing need no matrix products. The shift's extra head channels add pad/head_dim of the
self-attention products. The CPU runs the generated rows' call in blocks of at most SCORE_BLOCK_BYTES of
scores (attention.style_aligned: more ComfyUI attention calls, cache-sized score matrices); the "as on a
GPU" line and --gpu-like count without it.
"""
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.bench_common import compare, count_costs, load_model, parse_args  # noqa: E402
from scripts.bench_counts import print_cost_table, print_minimum  # noqa: E402
from tests.pack import pack_module  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)


PEER = "peer: style_aligned_comfy"


def add_peer_argument(parser):
    parser.add_argument("--peer", metavar="PATH", default=None,
                        help="a checkout of brianfitzgerald/style_aligned_comfy: its StyleAlignedBatchAlign at the "
                             "settings matching these defaults (share_norm disabled, q+k, scale 1) runs as one more "
                             "variant, side by side in the same rounds (read from PATH; never part of this repo)")
    parser.add_argument("--timing-only", action="store_true",
                        help="the issue-19 comparison only: vanilla, defaults (and --peer) in timed rounds, no other "
                             "variants and no FLOP/op counting (which takes longer than the rounds on two cores)")


def peer_model(path: str, model):
    """The peer's patched clone of ``model`` (its node imported from its checkout's __init__.py)."""
    init = os.path.join(path, "__init__.py")
    if not os.path.isfile(init):
        raise SystemExit(f"--peer {path}: no __init__.py (a checkout of style_aligned_comfy expected)")
    spec = importlib.util.spec_from_file_location("style_aligned_comfy_peer", init, submodule_search_locations=[path])
    peer = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = peer
    spec.loader.exec_module(peer)
    return peer.StyleAlignedBatchAlign().patch(model, "disabled", "q+k", 1.0)[0]


def main():
    args = parse_args(__doc__, add_arguments=add_peer_argument)
    node = pack_module("nodes.style_aligned").AtelierStyleAligned
    model, positive, negative = load_model(args)

    def patched(**kw):
        settings = dict(share_attention=True, adain_queries=True, adain_keys=True, adain_values=False,
                        share_group_norm=False, shared_score_scale=1.0, shared_score_shift=0.0, layers="all",
                        unshared_fraction=0.0, start_percent=0.0, end_percent=1.0)
        settings.update(kw)
        return node.execute(model, **settings).args[0]

    variants = {"vanilla": model, "style_aligned (defaults)": patched()}
    if args.peer:
        variants[PEER] = peer_model(args.peer, model)
    if args.timing_only:
        compare(variants, positive, negative, args, counts=False)
        return
    variants.update({"style_aligned + shift": patched(shared_score_shift=0.693),
                     "style_aligned + shift + group norm": patched(shared_score_shift=0.693, share_group_norm=True)})
    result = compare(variants, positive, negative, args)
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
                                              f"x{shared / base.flops:.3f} with row 0 in the shared call", timing=result)
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
