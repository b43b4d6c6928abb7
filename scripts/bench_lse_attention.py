"""Micro-benchmark: regional attention on a DiT, the concatenated way vs one image part merged with text parts.

Image queries Q (B, H, Ti, D), image keys/values I (Ti tokens) and R + 1 text key sets C of T tokens each
(the prompt D and each region's L_i):

  concatenated  R + 1 attentions A(Q, [C ; I]) over T + Ti keys (torch SDPA over torch.cat'ed keys/values);
  merged        O_I, lse_I = attention_with_lse(Q, I) once, then for each C:
                merge_attention([attention_with_lse(Q, C), (O_I, lse_I)])   (= A(Q, [C ; I]) exactly).

Both keep their R + 1 outputs. Printed per shape: exact FLOPs and aten operator calls
(scripts.bench_counts.Costs: matrix products and attention; the merge's elementwise work is shown apart,
analytically), peak extra memory of one run (exact high-water mark on Linux, the CUDA allocator's on a GPU),
the median time of interleaved rounds (left out when other processes load the cores, see
bench_common.too_loaded, unless --time-under-load), and concatenated / merged ratios. Nothing is asserted.
Ti = 4096 tokens is a 1024 px image for patch-2 Flux (512 px is 1024 tokens): both are run by default.

    .venv/bin/python scripts/bench_lse_attention.py                    # CPU, 1 thread, float32
    .venv/bin/python scripts/bench_lse_attention.py --device cuda --dtype bfloat16
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from scripts.bench_common import PeakRSS, machine_line, too_loaded  # noqa: E402
from scripts.bench_counts import Costs  # noqa: E402
from tests.pack import pack_module  # noqa: E402

lse_attention = pack_module("attention.core.lse_attention")

SHAPES = [(1, 2, 32), (3, 4, 64)]  # (B, H, D): the smallest and largest tiny-DiT shapes


def concatenated(q, image, texts):
    """A(Q, [C ; I]) for every text set C, each an SDPA over the concatenated keys."""
    k_image, v_image = image
    return [torch.nn.functional.scaled_dot_product_attention(
        q, torch.cat([k, k_image], dim=-2), torch.cat([v, v_image], dim=-2)) for k, v in texts]


def merged(q, image, texts):
    """The image part once, then each text part merged with it by log-sum-exp."""
    image_part = lse_attention.attention_with_lse(q, *image)
    return [lse_attention.merge_attention([lse_attention.attention_with_lse(q, k, v), image_part])[0]
            for k, v in texts]


def run_once(method, inputs, device):
    """(seconds, extra peak bytes) of one call, its outputs kept until both are read."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with PeakRSS() as rss:
        start = time.perf_counter()
        outs = method(*inputs)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    extra = torch.cuda.max_memory_allocated() - base if device == "cuda" else rss.extra
    del outs
    return seconds, extra


def median_times(methods, inputs, args):
    """{name: median seconds} over interleaved rounds (each round runs every method once, so slow drifts
    of the machine hit all alike); None when other processes load the cores, unless --time-under-load."""
    refused = too_loaded(args.device)
    if refused and not args.time_under_load:
        print(refused)
        return None
    times = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, method in methods.items():
            times[name].append(run_once(method, inputs, args.device)[0])
    return {name: statistics.median(t) for name, t in times.items()}


def make_inputs(batch, heads, head_dim, image_tokens, text_tokens, regions, dtype, device):
    g = torch.Generator(device=device).manual_seed(0)
    make = lambda t: torch.randn(batch, heads, t, head_dim, generator=g, device=device).to(dtype)  # noqa: E731
    return make(image_tokens), (make(image_tokens), make(image_tokens)), \
        [(make(text_tokens), make(text_tokens)) for _ in range(regions + 1)]


def bench(args, batch, heads, head_dim, image_tokens, regions):
    inputs = make_inputs(batch, heads, head_dim, image_tokens, args.text, regions, args.dtype, args.device)
    methods = {"concatenated": concatenated, "merged": merged}
    costs = {}
    for name, method in methods.items():  # the counted run is also the warm-up
        with Costs() as costs[name]:
            method(*inputs)
    memory = {name: run_once(method, inputs, args.device)[1] for name, method in methods.items()}  # load-proof
    merge_flops = (regions + 1) * 4 * batch * heads * image_tokens * head_dim  # per merge: 2 parts x (mul + add)
    timings = median_times(methods, inputs, args)
    line = f"  B={batch} H={heads} D={head_dim:<3d} Ti={image_tokens:<5d} R={regions}:"
    for name in methods:
        line += f"  {name} {costs[name].flops / 1e9:7.2f} GFLOP {costs[name].calls:4d} ops" \
                f" {memory[name] / 2**20:7.1f} MiB"
        if timings:
            line += f" {timings[name] * 1e3:8.1f} ms"
        line += " |"
    line += f"  concat/merged: FLOPs x{costs['concatenated'].flops / costs['merged'].flops:.2f}" \
            f", memory x{memory['concatenated'] / max(memory['merged'], 1):.2f}"
    if timings:
        line += f", time x{timings['concatenated'] / timings['merged']:.2f}"
    print(line + f"  (merges' elementwise work {merge_flops / 1e9:.3f} GFLOP, not in the counts)", flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "CPU model unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the cores are shared)")
    p.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096], help="image tokens Ti (= Tq)")
    p.add_argument("--text", type=int, default=8, help="tokens per text set")
    p.add_argument("--regions", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--time-under-load", action="store_true",
                   help="time even when other processes load the cores (the figures then say so: noisy)")
    args = p.parse_args()
    args.dtype = getattr(torch, args.dtype)
    torch.set_num_threads(args.threads)
    print(f"regional attention: R + 1 attentions over [C ; I] vs one image part + R + 1 merged text parts; "
          f"{args.dtype} on {args.device}, {args.text} text tokens, median of {args.rounds} interleaved rounds")
    print(machine_line(args.device) + f", {cpu_model()}")
    if args.time_under_load:
        print("  --time-under-load: timed whatever the load (see the load averages): trust a row's time ratio "
              "(both ways interleaved) more than its absolute times")
    with torch.inference_mode():
        for image_tokens in args.tokens:
            for batch, heads, head_dim in SHAPES:
                for regions in args.regions:
                    bench(args, batch, heads, head_dim, image_tokens, regions)
    print(machine_line(args.device).replace("machine:", "machine at the end:"))


if __name__ == "__main__":
    main()
