"""AestheticMix step time and peak memory vs unpatched ComfyUI, and the all-in-one graph vs the same
graph without the pack's nodes (same run, interleaved rounds, medians).

    .venv/bin/python scripts/bench_aesthetic.py                          # tiny SD1.5, 256 px, CPU
    .venv/bin/python scripts/bench_aesthetic.py --all-in-one             # + workflows/api/all_in_one.json
    python scripts/bench_aesthetic.py --device cuda --full --model sdxl  # GPU, full-size fp16 UNet

The all-in-one comparison needs the tiny test-bed models (LoRA, ControlNet, IP-Adapter, CLIP vision),
so it runs without --full only. It executes the graph once (inversion, encoders, loaders), then times
only sampling with the KSampler's final MODEL and conditioning, against the MODEL and conditioning of
the same graph with every Atelier model patch removed (LoRA and ControlNet kept).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.bench_common import compare, load_model, parse_args  # noqa: E402
from tests.pack import pack_module  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)

ALL_IN_ONE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workflows", "api",
                          "all_in_one.json")


def aesthetic_variants(model, args):
    import torch
    dispatcher = pack_module("attention.dispatcher")
    aesthetic_mix = pack_module("attention.aesthetic_mix")
    width = 768 if args.model == "sd15" else 2048
    embedding = torch.randn(1, 77, width, generator=torch.Generator().manual_seed(3))
    control = aesthetic_mix.AestheticMixControl(aesthetic=embedding, strength=0.5)
    return {"vanilla": model,
            "aesthetic_mix (all layers)": dispatcher.attach(model, control, node="AtelierAestheticMix")}


def sampler_inputs(result, graph, sampler_id):
    """(model, positive, negative, latent) that reach the KSampler, from an executed graph."""
    inputs = graph[sampler_id]["inputs"]
    get = lambda name: result.output(inputs[name][0], inputs[name][1])
    return get("model"), get("positive"), get("negative"), get("latent_image")["samples"]


def all_in_one(args):
    import torch
    from tests.harness.inprocess import get_harness
    all_in_one_tests = pack_module  # noqa: F841  (the graph surgery lives with the test)
    from tests.comfy.all_in_one_graph import KSAMPLER, without_atelier_nodes
    harness = get_harness()
    with open(ALL_IN_ONE) as f:
        graph = json.load(f)
    plain = without_atelier_nodes(graph)
    full = sampler_inputs(harness.run_graph(graph), graph, KSAMPLER)
    bare = sampler_inputs(harness.run_graph(plain), plain, KSAMPLER)
    args.batch = full[3].shape[0]
    args.size = full[3].shape[-1] * 8
    # one compare() per conditioning: patched graph vs graph without Atelier nodes, same latent
    print("all-in-one graph: sampling with every Atelier patch vs LoRA + ControlNet only")
    with torch.no_grad():
        runs = {"lora + controlnet (no atelier)": bare, "all in one": full}
        from scripts.bench_common import sample_once
        import statistics
        for model, positive, negative, latent in runs.values():
            sample_once(model, positive, negative, args, torch.zeros_like(latent))
        times = {k: [] for k in runs}
        for _ in range(args.rounds):
            for name, (model, positive, negative, latent) in runs.items():
                times[name].append(sample_once(model, positive, negative, args, torch.zeros_like(latent))[0])
    base = statistics.median(times["lora + controlnet (no atelier)"])
    for name in runs:
        t = statistics.median(times[name])
        print(f"  {name:32s} {t:8.4f} s/step  x{t / base:5.2f}")


def main():
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--all-in-one", action="store_true")
    known, rest = extra.parse_known_args()
    sys.argv = [sys.argv[0]] + rest
    args = parse_args(__doc__)
    if known.all_in_one and args.full:
        raise SystemExit("--all-in-one runs on the tiny test-bed models only (drop --full)")
    model, positive, negative = load_model(args)
    compare(aesthetic_variants(model, args), positive, negative, args)
    if known.all_in_one:
        all_in_one(args)


if __name__ == "__main__":
    main()
