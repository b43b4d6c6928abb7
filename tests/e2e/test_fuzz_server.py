"""A real ComfyUI server gets a few hundred mutated API prompts of one graph that holds every Atelier
node (tiny SD1.5, 64 px, 1 step). Each prompt changes one to three inputs of the pack's nodes to a
hostile value. Every prompt must end as ComfyUI's validation error (HTTP 400), an AtelierError from the
node, or a success whose latent is finite: zero raw Python exceptions, zero NaN/inf latents.

Input classes tried (seeded, so a failure reproduces): NaN, +-inf, huge and negative numbers, numbers
out of range, integers as text, floats for integers, booleans, null, lists, objects, text with a lone
surrogate, Unicode digits in layer names, deep or broken JSON, unknown JSON keys, combo values not in
the list; for links: a literal text or number, or a link to an output of the wrong type.

Runs on the newest test bed (make test's time): the pack's input checks are the same code on both; the
in-process fuzz (tests/comfy/test_fuzz_inputs.py) calls every node directly."""
import collections
import json
import math
import random
import urllib.error

import pytest
import torch

from tests.harness import BASE_DIR, SD15

PROMPTS = 240
SEED = 1313


def base_graph() -> dict:
    def node(class_type, **inputs):
        return {"class_type": class_type, "inputs": inputs}
    return {
        "1": node("CheckpointLoaderSimple", ckpt_name=SD15),
        "2": node("CLIPTextEncode", text="a red house", clip=["1", 1]),
        "3": node("CLIPTextEncode", text="blurry", clip=["1", 1]),
        "4": node("EmptyLatentImage", width=64, height=64, batch_size=2),
        "5": node("KSampler", model=["22", 0], positive=["10", 0], negative=["3", 0], latent_image=["4", 0],
                  seed=3, steps=1, cfg=5.0, sampler_name="euler", scheduler="normal", denoise=1.0),
        "6": node("SaveLatent", samples=["5", 0], filename_prefix="atelier_fuzz/latent"),
        "10": node("AtelierBatchPrompts", clip=["1", 1], prompts="a house\na tree", style="watercolor"),
        "11": node("AtelierRegion", conditioning=["2", 0], x=0.1, y=0.1, width=0.5, height=0.5, weight=1.0,
                   curve="linear", end_weight=0.2, switch_at=0.5, weights="1, 0.5"),
        "12": node("AtelierBoxRegions", clip=["1", 1], regions=["11", 0], regions_json=json.dumps(
            {"width": 64, "height": 64, "boxes": [{"x": 0.5, "y": 0.5, "w": 0.5, "h": 0.5, "prompt": "a tree",
                                                   "weight": 0.8, "curve": "cosine", "end_weight": 0.1}]})),
        "13": node("AtelierSplitPrompt", prompt="a fox, golden hour, oil painting", use_builtin_vocabulary=True,
                   vocabulary="-neon"),
        "14": node("AtelierStyleAligned", model=["1", 0], share_attention=True, adain_queries=True,
                   adain_keys=True, adain_values=False, share_group_norm=True, shared_score_scale=1.0,
                   shared_score_shift=0.0, layers="all", unshared_fraction=0.2, start_percent=0.0,
                   end_percent=1.0),
        "15": node("AtelierArtBN", model=["14", 0], strength=0.5, apply_to="both", layers="input, output",
                   start_percent=0.0, end_percent=1.0),
        "16": node("AtelierAestheticMix", model=["15", 0], clip=["1", 1], aesthetic=["13", 1], strength=0.5,
                   relative_to_empty_prompt=True, layers="all", start_percent=0.0, end_percent=1.0),
        "17": node("AtelierRegionalAttention", model=["16", 0], regions=["12", 0], layers="all",
                   start_percent=0.0, end_percent=1.0),
        "18": node("AtelierIPAdapterLoader", ipadapter_name="atelier_tiny_ip_adapter_sd15.safetensors"),
        "19": node("CLIPVisionLoader", clip_name="atelier_tiny_clip_vision_vitl.safetensors"),
        "20": node("EmptyImage", width=64, height=64, batch_size=1, color=0x336699),
        "21": node("CLIPVisionEncode", clip_vision=["19", 0], image=["20", 0], crop="center"),
        "22": node("AtelierImagePrompt", model=["17", 0], ipadapter=["18", 0], clip_vision_output=["21", 0],
                   weight=0.6, layers="all", start_percent=0.0, end_percent=1.0),
        "23": node("AtelierInvert", model=["1", 0], latent=["4", 0], steps=1, cfg=1.0, scheduler="normal",
                   refine_iterations=0),
    }


HOSTILE = [math.nan, math.inf, -math.inf, 1e300, -1e300, 10 ** 30, -1, -7.5, 2.5, 0, 1, 99, "abc", "0.5", "",
           None, True, False, [1, 2], [], {"a": 1}, "a\ud800b", "input.\u00b2", "input.99", "bogus",
           "[" * 5000, '{"boxes": [{"x": 0, "y": 0, "w": 1, "h": 1, "prompt": "a", "weight": null}]}',
           '{"boxes": [{"x": 0, "y": 0, "w": 1, "h": 1, "prompt": "a", "wieght": 1}]}']
WRONG_LINKS = [["1", 1], ["1", 2], ["4", 0], ["2", 0], ["20", 0]]  # CLIP, VAE, LATENT, CONDITIONING, IMAGE


def mutate(graph: dict, rng: random.Random) -> tuple[dict, list]:
    graph = json.loads(json.dumps(graph))
    atelier = [nid for nid, n in graph.items() if n["class_type"].startswith("Atelier")]
    changes = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        nid = rng.choice(atelier)
        name = rng.choice(sorted(graph[nid]["inputs"]))
        current = graph[nid]["inputs"][name]
        if isinstance(current, list) and rng.random() < 0.5:
            value = rng.choice(WRONG_LINKS)
        else:
            value = rng.choice(HOSTILE)
        graph[nid]["inputs"][name] = value
        changes.append((graph[nid]["class_type"], name, value if not isinstance(value, str) else value[:30]))
    return graph, changes


def submit(url: str, graph: dict):
    from run_workflow import WorkflowError, queue_prompt, wait_for
    try:
        prompt_id = queue_prompt(url, graph)
    except WorkflowError as e:
        return "refused by validation", e
    except urllib.error.HTTPError as e:  # a 400 without node_errors (e.g. the prompt has no output left)
        return "refused by validation", e
    try:
        return "accepted", wait_for(url, prompt_id, timeout=300, log=lambda m: None)
    except WorkflowError as e:
        if e.kind != "execution":
            raise
        return "execution error", e


def saved_latent(entry: dict) -> torch.Tensor:
    import safetensors.torch
    item = entry["outputs"]["6"]["latents"][0]
    path = BASE_DIR / "output" / item.get("subfolder", "") / item["filename"]
    return safetensors.torch.load_file(str(path))["latent_tensor"]


def test_mutated_prompts_never_give_a_raw_exception_or_a_non_finite_latent(comfy_server):
    from tiny_models import env
    if env.COMFYUI_VERSION != env.NEWEST_COMFYUI:
        pytest.skip(f"runs on ComfyUI {env.NEWEST_COMFYUI} only (make test's time)")
    url = comfy_server.url
    graph = base_graph()
    outcome, entry = submit(url, graph)
    assert outcome == "accepted", f"the unmutated graph must run: {entry}"
    assert torch.isfinite(saved_latent(entry)).all()
    rng = random.Random(SEED)
    counts, raw, classes = collections.Counter(), [], collections.Counter()
    for _ in range(PROMPTS):
        mutated, changes = mutate(graph, rng)
        classes.update(type(c[2]).__name__ for c in changes)
        outcome, result = submit(url, mutated)
        if outcome == "execution error":
            text = str(result)
            outcome = "refused by AtelierError" if "AtelierError" in text.split("\n")[0] else "raw exception"
            if outcome == "raw exception":
                raw.append((changes, text[:400]))
        elif outcome == "accepted":
            latent = saved_latent(result)
            if not torch.isfinite(latent).all():
                raw.append((changes, "non-finite latent"))
                outcome = "non-finite latent"
        counts[outcome] += 1
    print(f"\nfuzz server: {PROMPTS} mutated prompts: {dict(counts)}; mutated value types: {dict(classes)}")
    assert not raw, "\n".join(f"{c}: {t}" for c, t in raw[:10])
    assert counts["accepted"] and counts["refused by validation"] and counts["refused by AtelierError"]
