#!/usr/bin/env python3
"""Before/after check for refactors: every control on every family's tiny model, sampled, saved, compared.

    ATELIER_COMFYUI=0.33.0 .venv/bin/python scripts/latent_snapshot.py --save /tmp/before.pt
    (change the code)
    ATELIER_COMFYUI=0.33.0 .venv/bin/python scripts/latent_snapshot.py --compare /tmp/before.pt

Each case samples a few euler steps from fixed noise with the pack's nodes (as a graph would call them)
on a tiny seeded model of the family (scripts/tiny_models, the bench's loaders), at cfg 1 and at real cfg:
vanilla, StyleAligned (defaults; shift + scale + adain_values on a layer subset with a window), regional
attention (a box with a cosine curve and a mask with a step curve), aesthetic mixing, and on UNets
GroupNorm sharing, ArtBN and an image prompt; then inversion and reference-image StyleAligned.
``--compare`` reports every case that is not bit for bit the saved latent (max |difference|) and exits 1
if any differs. Run it single-threaded (it sets one torch thread) so kernels split work alike.
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from tests.harness.inprocess import get_harness  # noqa: E402  (before ComfyUI's own tests/ is on sys.path)

FAMILIES = ("sd15", "sdxl", "flux", "sd35", "lumina", "qwen_image", "flux2", "chroma", "krea2")
STEPS = 3


def node(comfy, name):
    return comfy.node_class(name)


def aesthetic_mix(model, embedding, strength):
    """AtelierAestheticMix's control with an embedding standing in for a text encoder's (not every tiny
    family has one)."""
    from tests.pack import pack_module
    control = pack_module("attention.aesthetic_mix").AestheticMixControl(aesthetic=embedding, strength=strength)
    return pack_module("attention.dispatch.dispatcher").attach(model, control, node="AtelierAestheticMix")


def cases(comfy, fam):
    """(name, patched model, sampling kwargs) of every control case on ``fam`` (a bench Family)."""
    import torch
    unet = fam.latent_channels == 4
    model = fam.model
    local = fam.conditioning(5, 7)
    local_b = fam.conditioning(6, 8)
    style = node(comfy, "AtelierStyleAligned")
    layers = "input,output.2" if unet else "all"
    yield "vanilla", model
    yield "style_defaults", style.execute(model, True, True, True, False, False, 1.0, 0.0, "all", 0.0, 0.0,
                                          1.0).args[0]
    yield "style_shift_scale_values_window", style.execute(model, True, True, True, True, False, 1.2, 0.69, layers,
                                                           0.0, 0.2, 0.8).args[0]
    if unet:
        yield "style_group_norm", style.execute(model, True, True, True, False, True, 1.0, 0.0, "all", 0.0, 0.0,
                                                1.0).args[0]
    region = node(comfy, "AtelierRegion")
    mask = torch.zeros(1, 64, 64)
    mask[:, 8:40, 24:64] = 1.0
    regions = region.execute(local, 0.1, 0.2, 0.5, 0.6, 1.0, "cosine", 0.2, 0.5, "1").args[0]
    regions = region.execute(local_b, 0, 0, 0.5, 1.0, 1.5, "step", 0.0, 0.5, "1", mask=mask, regions=regions).args[0]
    yield "regional", node(comfy, "AtelierRegionalAttention").execute(model, regions, "all", 0.0, 1.0).args[0]
    yield "aesthetic", aesthetic_mix(model, local[0][0], 0.7)
    if unet:
        yield "art_bn", node(comfy, "AtelierArtBN").execute(model, 0.8, "both", "all", 0.0, 1.0).args[0]
    if fam.label == "SD1.5":
        yield "image_prompt", image_prompt(comfy, model)


def image_prompt(comfy, model):
    import nodes
    import torch
    clip_vision = nodes.CLIPVisionLoader().load_clip("atelier_tiny_clip_vision_vitl.safetensors")[0]
    y, x = torch.meshgrid(torch.linspace(0, 1, 224), torch.linspace(0, 1, 224), indexing="ij")
    image = torch.stack([x, y, x * y], dim=-1)[None]
    vision = nodes.CLIPVisionEncode().encode(clip_vision, image, "center")[0]
    adapter = node(comfy, "AtelierIPAdapterLoader").execute("atelier_tiny_ip_adapter_sd15.safetensors").result[0]
    return node(comfy, "AtelierImagePrompt").execute(model, adapter, vision, 0.8, "all", 0.0, 1.0).result[0]


def sample(fam, model, positive, negative, cfg, batch=3, seed=0, latent=None):
    import torch
    import comfy.sample
    if latent is None:
        latent = torch.zeros(batch, fam.latent_channels, 8, 8)
    x = comfy.sample.fix_empty_latent_channels(model, latent)
    noise = comfy.sample.prepare_noise(x, seed)
    return comfy.sample.sample(model, noise, STEPS, cfg, "euler", fam.scheduler, positive, negative, x,
                               disable_pbar=True, seed=seed).cpu()


def family_latents(comfy, name) -> dict:
    import torch
    from scripts.bench_families import family
    fam = family(name)
    pos, neg = fam.conditioning(8, 1), fam.conditioning(8, 2)
    out = {}
    for case, model in cases(comfy, fam):
        for cfg in (1.0, 3.0):
            out[f"{fam.label}/{case}/cfg{cfg:g}"] = sample(fam, model, pos, neg, cfg)
    # inversion, then reference-image StyleAligned on its trajectory
    x0 = torch.randn(1, fam.latent_channels, 8, 8, generator=torch.Generator().manual_seed(5))
    x0 = {"samples": x0}
    invert = node(comfy, "AtelierInvert")
    noised, trajectory, _sigmas = invert.execute(fam.model, x0, STEPS, 1.0, fam.scheduler, 1, positive=pos).args
    out[f"{fam.label}/inversion"] = noised["samples"].cpu()
    styled = node(comfy, "AtelierStyleAligned").execute(fam.model, True, True, True, False, False, 1.0, 0.0, "all",
                                                       0.0, 0.0, 1.0, reference=trajectory).args[0]
    out[f"{fam.label}/reference_mode"] = sample(fam, styled, pos, neg, 1.0, batch=2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", help="write every case's latent to this file")
    group.add_argument("--compare", help="compare every case with this file's latents, bit for bit")
    ap.add_argument("--family", action="append", help=f"only these (default: {', '.join(FAMILIES)})")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    comfy = get_harness()
    comfy.load_nodes()
    latents = {}
    with torch.no_grad():
        for name in a.family or FAMILIES:
            try:
                latents.update(family_latents(comfy, name))
            except SystemExit as why:  # a family this ComfyUI does not have
                print(f"{name}: left out: {why}")
            except Exception as error:  # e.g. a stand-in conditioning this ComfyUI's model class does not take
                print(f"{name}: left out: {type(error).__name__}: {error}")
            comfy.release()
    if a.save:
        torch.save(latents, a.save)
        print(f"saved {len(latents)} cases to {a.save}")
        return 0
    saved = torch.load(a.compare)
    differ = 0
    for key in sorted(set(saved) | set(latents)):
        if key not in saved or key not in latents:
            print(f"{key}: only in {'the saved file' if key in saved else 'this run'}")
            differ += 1
        elif not torch.equal(saved[key], latents[key]):
            print(f"{key}: differs, max |difference| {float((saved[key] - latents[key]).abs().max()):.3g}")
            differ += 1
    print(f"{len(latents)} cases, {differ} not bit for bit the saved latents")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
