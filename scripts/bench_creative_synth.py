"""CreativeSynth step time and peak memory vs unpatched ComfyUI (same batch, same run): AtelierImagePrompt
(base and plus adapters), AtelierArtBN, StyleAligned in reference mode, and all of them together.

    .venv/bin/python scripts/bench_creative_synth.py                         # tiny SD1.5, 256 px, CPU
    python scripts/bench_creative_synth.py --device cuda --full --model sdxl  # GPU, full-size fp16

Self-contained: the IP-Adapters are random weights in the standard layout, sized for the benchmark's
UNet and a ViT-H CLIP vision model, built in memory; the CLIP vision output is random features of the
right widths; the reference trajectory is random latents on the model's own sigma schedule (timings
do not depend on any of these values). Reference mode adds one row per chunk, which is part of its cost.
Also prints exact per-step FLOPs and aten operator calls vs vanilla (--counts-only: only those), and
each control's FLOP minimum: ArtBN none (statistics); reference mode (B+1)/B of vanilla plus vanilla's
self-attention products; ImagePrompt its extra cross-attention tokens (the "cross" column).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.bench_common import compare, load_model, parse_args  # noqa: E402
from scripts.bench_counts import print_minimum  # noqa: E402
from scripts.tiny_models.ip_adapter import adapter_state_dict  # noqa: E402
from tests.pack import pack_module  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)

VIT_H = {"image_embeds": 1024, "penultimate_hidden_states": 1280}


def adapters_for(model, args):
    """(base, plus) adapters in the standard layout for this UNet (plus width as published: the context
    width for SD1.5, 1280 for SDXL)."""
    import torch
    ip_adapter = pack_module("attention.ip_adapter")
    files = pack_module("attention.ip_adapter_file")
    dispatcher = pack_module("attention.dispatch.dispatcher")
    unet = model.get_model_object("diffusion_model")
    modules = dispatcher.attention_modules(unet, "attn2")
    keys = tuple(modules)
    widths = [modules[k].to_k.out_features for k in ip_adapter.adapter_layer_order(keys)]
    context = next(iter(modules.values())).to_k.in_features
    base = adapter_state_dict("base", context, widths, seed=1, embeds_dim=VIT_H["image_embeds"], dtype=torch.float16)
    plus = adapter_state_dict("plus", context, widths, seed=2, hidden_dim=VIT_H["penultimate_hidden_states"],
                              resampler_width=768 if context == 768 else 1280, dtype=torch.float16)
    return files.read_adapter(base, "bench_base", "bench"), files.read_adapter(plus, "bench_plus", "bench")


def clip_vision_output():
    import torch
    from comfy.clip_vision import Output
    out = Output()
    gen = torch.Generator().manual_seed(3)
    out["image_embeds"] = torch.randn(1, VIT_H["image_embeds"], generator=gen)
    out["penultimate_hidden_states"] = torch.randn(1, 257, VIT_H["penultimate_hidden_states"], generator=gen)
    return out


def random_trajectory(model, args):
    import torch
    import comfy.samplers
    trajectory = pack_module("inversion.trajectory")
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", args.steps).cpu()
    latents = torch.randn(len(sigmas), 1, 4, args.size // 8, args.size // 8, generator=torch.Generator().manual_seed(4))
    family = type(model.model.model_config).__name__
    return trajectory.Trajectory(latents=latents, sigmas=sigmas, conds={trajectory.COND: trajectory.RowConds(None)},
                                 model_family=family, cfg=args.cfg)


def main():
    args = parse_args(__doc__, batch=2, steps=6, rounds=3)
    synth = pack_module("nodes.creative_synth")
    style = pack_module("nodes.style_aligned").AtelierStyleAligned
    model, positive, negative = load_model(args)
    base, plus = adapters_for(model, args)
    vision = clip_vision_output()

    def image_prompt(m, adapter):
        return synth.AtelierImagePrompt.execute(m, adapter, vision, 1.0, "all", 0.0, 1.0).args[0]

    def art_bn(m, apply_to="both"):
        return synth.AtelierArtBN.execute(m, 1.0, apply_to, "all", 0.0, 1.0).args[0]

    def reference_mode(m):
        settings = dict(share_attention=True, adain_queries=True, adain_keys=True, adain_values=False,
                        share_group_norm=False, shared_score_scale=1.0, shared_score_shift=0.0, layers="all",
                        unshared_fraction=0.0, start_percent=0.0, end_percent=1.0)
        return style.execute(m, **settings, reference=random_trajectory(model, args)).args[0]

    result = compare({"vanilla": model,
             "image_prompt (base, 4 tokens)": image_prompt(model, base),
             "image_prompt (plus, 16 tokens)": image_prompt(model, plus),
             "art_bn (both)": art_bn(model),
             "style_aligned reference mode": reference_mode(model),
             "art_bn + style_aligned ref + image": image_prompt(reference_mode(art_bn(model)), base)},
            positive, negative, args)
    costs, rows = result["costs"], args.batch
    base_flops = costs["vanilla"].flops
    print_minimum("art_bn (both)", costs, base_flops, "statistics only: no matrix products", timing=result)
    print_minimum("style_aligned reference mode", costs, base_flops * (rows + 1) / rows + costs["vanilla"].attn1_flops,
                  "one more row per chunk, then in-batch sharing: V (B+1)/B + vanilla's self-attention products",
                  timing=result)


if __name__ == "__main__":
    main()
