"""AestheticMix step time and peak memory vs unpatched ComfyUI, and the all-in-one graph vs the same
graph without the pack's nodes (same run, interleaved rounds, medians).

    .venv/bin/python scripts/bench_aesthetic.py                          # tiny SD1.5, 256 px, CPU
    .venv/bin/python scripts/bench_aesthetic.py --all-in-one             # + workflows/api/all_in_one.json
    python scripts/bench_aesthetic.py --device cuda --full --model sdxl  # GPU, full-size fp16 UNet

The all-in-one comparison needs the tiny test-bed models (LoRA, ControlNet, IP-Adapter, CLIP vision),
so it runs without --full only. It executes the graph once (inversion, encoders, loaders), then times
only sampling with the KSampler's final MODEL and conditioning, against the MODEL and conditioning of
the same graph with every Atelier model patch removed (LoRA and ControlNet kept).
Every comparison also prints exact per-step FLOPs and aten operator calls (--counts-only: only those).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.bench_common import compare, load_model, parse_args  # noqa: E402
from scripts.bench_counts import print_minimum  # noqa: E402
from tests.pack import pack_module  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)


def aesthetic_variants(model, args):
    import torch
    dispatcher = pack_module("attention.dispatch.dispatcher")
    aesthetic_mix = pack_module("attention.aesthetic_mix")
    controls = pack_module("attention.core.controls")

    class PassThrough(controls.AttentionControl):
        """An attn2 control that only calls the rest of the chain: the dispatcher's own cost."""
        slot = "attn2"

        def attend(self, next_attention, q, k, v, call, mask=None):
            return next_attention(q, k, v, call, mask)

    width = 768 if args.model == "sd15" else 2048
    embedding = torch.randn(1, 77, width, generator=torch.Generator().manual_seed(3))
    control = aesthetic_mix.AestheticMixControl(aesthetic=embedding, strength=0.5)
    return {"vanilla": model,
            "dispatcher only (pass-through)": dispatcher.attach(model, PassThrough(), node="bench"),
            "aesthetic_mix (all layers)": dispatcher.attach(model, control, node="AtelierAestheticMix")}


def sampler_inputs(result, graph):
    """(model, positive, negative, latent) that reach the KSampler of an executed graph."""
    from tests.comfy.all_in_one_graph import KSAMPLER
    inputs = graph[KSAMPLER]["inputs"]
    get = lambda name: result.output(inputs[name][0], inputs[name][1])
    return get("model"), get("positive"), get("negative"), get("latent_image")["samples"]


def all_in_one(args):
    import statistics

    from scripts.bench_common import sample_once
    from tests.comfy.all_in_one_graph import load, without_atelier_nodes
    import tiny_models.env  # the harness's copy of the module bench_common bootstrapped as scripts.tiny_models.env
    from scripts.tiny_models import env as bench_env
    from tests.harness.inprocess import get_harness
    tiny_models.env._BOOTSTRAPPED = bench_env._BOOTSTRAPPED
    harness = get_harness()
    graph = load()
    plain = without_atelier_nodes(graph)
    runs = {"lora + controlnet (no atelier)": sampler_inputs(harness.run_graph(plain), plain),
            "all in one": sampler_inputs(harness.run_graph(graph), graph)}
    args.batch, args.size = runs["all in one"][3].shape[0], runs["all in one"][3].shape[-1] * 8
    from scripts.bench_counts import Costs, print_cost_table
    costs = {}
    for name, (model, positive, negative, latent) in runs.items():
        with Costs() as costs[name]:
            sample_once(model, positive, negative, args, latent.clone())
    if args.counts_only:
        print_cost_table(costs, args.steps, "lora + controlnet (no atelier)")
        return
    times = {name: [] for name in runs}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name, (model, positive, negative, latent) in runs.items():
            seconds = sample_once(model, positive, negative, args, latent.clone())[0]
            if round_:
                times[name].append(seconds)
    print(f"all_in_one graph, sampling only ({args.size}px batch {args.batch} {args.steps} steps cfg {args.cfg} "
          f"on {args.device}, median of {args.rounds} interleaved rounds)")
    base = statistics.median(times["lora + controlnet (no atelier)"])
    for name, values in times.items():
        print(f"  {name:32s} {statistics.median(values):8.4f} s/step  x{statistics.median(values) / base:5.2f}")
    print_cost_table(costs, args.steps, "lora + controlnet (no atelier)")


def main():
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--all-in-one", action="store_true")
    known, rest = extra.parse_known_args()
    sys.argv = [sys.argv[0]] + rest
    args = parse_args(__doc__, batch=1)
    if known.all_in_one and args.full:
        raise SystemExit("--all-in-one runs on the tiny test-bed models only (drop --full)")
    model, positive, negative = load_model(args)
    result = compare(aesthetic_variants(model, args), positive, negative, args)
    costs = result["costs"]
    base = costs["vanilla"]
    print_minimum("dispatcher only (pass-through)", costs, base.flops, "vanilla: it computes nothing", timing=result)
    # the value branch: one more attention-weighted sum of values (A V_aes, the weights A shared)
    print_minimum("aesthetic_mix (all layers)", costs, base.flops + base.attn2_flops / 2,
                  "vanilla + half its cross-attention products (A V_aes)", timing=result)
    if known.all_in_one:
        all_in_one(args)


if __name__ == "__main__":
    main()
