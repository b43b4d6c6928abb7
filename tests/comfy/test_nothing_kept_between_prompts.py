"""Nothing the pack makes for a prompt outlives it. For every model family of the test bed, a prompt that
uses every kind of patch (StyleAligned in reference-image mode with the reference cache on, the inversion
that feeds it, regional attention, aesthetic mixing; on UNets also the image prompt, a LoRA and a
ControlNet) is queued several times in-process:

- queued again and again on one executor (ComfyUI keeps node outputs between prompts, as a server does;
  only the seed changes), the reference cache replays and the pack objects alive after each prompt do not
  grow in number;
- once ComfyUI lets go of its node outputs (or, for the DiT prompts run node by node, once the caller
  drops them), every pack object and every ModelPatcher the prompts made is gone: no module-level cache,
  hook, wrapper on the shared checkpoint, context variable or control keeps any of it.

What stays is ComfyUI's and the harness's: the checkpoint loads (shared like a server's loader cache) and
the tiny DiT models. Pack objects are instances of classes defined in the pack and functions made by it
(closures: wrappers, schedules); patched models are ModelPatchers.
"""
from __future__ import annotations

import collections
import gc
import types
import weakref

import pytest
import torch

from tests.comfy import all_in_one_graph as aio
from tests.comfy.dit_helpers import conditioning, sample, tiny_flux, tiny_sd35

RUNS = 3  # prompts queued on one executor (the first records the reference cache, the others replay)
CACHE_MB = 512
SIZE = 64  # px


def is_kept_track_of(obj, prefix: str, patcher_class) -> bool:
    kind = type(obj)  # not isinstance: some objects answer __class__ with a deprecation warning
    if issubclass(kind, patcher_class):
        return True
    if kind is types.FunctionType:  # functions made at run time (closures), not a module's own
        return "<locals>" in obj.__qualname__ and (obj.__module__ or "").startswith(prefix)
    module = getattr(kind, "__module__", None)
    return isinstance(module, str) and module.startswith(prefix)


class Census:
    """Pack objects and ModelPatchers alive in this process, and which of them are new since ``start``."""

    def __init__(self, harness):
        from comfy.model_patcher import ModelPatcher
        self.prefix = harness.pack.__name__
        self.patcher_class = ModelPatcher
        self.baseline: list = []

    def alive(self) -> list:
        gc.collect()
        return [o for o in gc.get_objects() if is_kept_track_of(o, self.prefix, self.patcher_class)]

    def start(self):
        self.baseline = self.alive()  # held, so that no id of a baseline object is reused meanwhile

    def new(self) -> list:
        ids = {id(o) for o in self.baseline}
        return [o for o in self.alive() if id(o) not in ids]

    def stop(self):
        self.baseline = []


def describe(obj) -> str:
    return f"{type(obj).__module__.rsplit('.', 2)[-1]}.{type(obj).__qualname__}" if not isinstance(
        obj, types.FunctionType) else f"function {obj.__qualname__}"


def holders(obj, depth: int = 3) -> str:
    """Who holds ``obj`` (a few levels up), for the failure message."""
    lines, frontier, seen = [], [obj], {id(obj)}
    for level in range(depth):
        nxt = []
        for o in frontier:
            for ref in gc.get_referrers(o):
                if id(ref) in seen or isinstance(ref, types.FrameType) or ref is frontier or ref is nxt:
                    continue
                seen.add(id(ref))
                nxt.append(ref)
                where = [str(k) for k, v in ref.items() if v is o][:3] if isinstance(ref, dict) else []
                lines.append("  " * (level + 1) + f"<- {type(ref).__name__}{where or ''} {repr(ref)[:120]}")
        frontier = nxt[:8]
    return "\n".join(lines[:40])


class Tracked:
    """Weak references to the objects a prompt made; those that take none are found again by the census
    (any pack object or ModelPatcher alive that was not alive before the prompt)."""

    def __init__(self, objects):
        self.refs = []
        for o in objects:
            try:
                self.refs.append(weakref.ref(o))
            except TypeError:  # e.g. classes with __slots__
                pass

    def survivors(self, census: Census) -> list:
        gc.collect()  # first: a weak reference read before collecting would keep cyclic garbage alive
        alive = [o for o in (r() for r in self.refs) if o is not None]
        ids = {id(o) for o in alive}
        return alive + [o for o in census.new() if id(o) not in ids]


def assert_all_gone(tracked: Tracked, census: Census, what: str):
    alive = tracked.survivors(census)
    report = "\n".join(f"{describe(o)}\n{holders(o)}" for o in alive[:5])
    assert not alive, (f"{what}: {len(alive)} objects still alive ({collections.Counter(map(describe, alive))}), "
                       f"{len(tracked.refs)} were tracked\n{report}")


# ---- the prompts -----------------------------------------------------------------------------------
def unet_graph(comfy, family: str, seed: int) -> dict:
    """The shipped all_in_one graph at 64 px, 2 steps, reference cache on; SDXL keeps its own models (its
    LoRA and ControlNet stand-ins are SD1.5's, so those two nodes are wired around)."""
    from tiny_models.template_swap import for_test_bed
    import json
    graph = for_test_bed(json.loads(aio.PATH.read_text()), size=SIZE, fast=family != "SDXL")
    if family == "SDXL":
        for node_id in ("2", "20"):
            graph = aio.without(graph, node_id, comfy.node_class(graph[node_id]["class_type"]))
    for node in graph.values():
        inputs = node["inputs"]
        if node["class_type"] == "AtelierStyleAligned":
            inputs["reference_cache_mb"] = CACHE_MB
        if isinstance(inputs.get("steps"), int):
            inputs["steps"] = 2
        if node["class_type"] == "SaveImage":
            node["class_type"] = "PreviewImage"
            inputs.pop("filename_prefix")
    graph[aio.KSAMPLER]["inputs"]["seed"] = seed
    return graph


def dit_prompt(comfy, model):
    """What a DiT graph does, node by node: invert a latent, StyleAligned on its trajectory (cache on),
    a regional prompt, aesthetic mixing, then sample 2 rows. Returns what the graph's nodes would hold
    on to: the patched model, the trajectory and the latents."""
    from tests.pack import pack_module
    mix = pack_module("attention.aesthetic_mix")
    dispatcher = pack_module("attention.dispatch.dispatcher")
    pos, neg = conditioning(model, seed=1), conditioning(model, seed=2)
    x0 = torch.randn(1, 16, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(5))
    _, trajectory, _ = comfy.node_class("AtelierInvert").execute(
        model, {"samples": x0}, 3, 1.0, "simple", 1, positive=pos, negative=pos).args
    from tests.comfy.style_aligned_node import style_aligned
    patched = style_aligned(comfy, model, reference=trajectory, reference_cache_mb=CACHE_MB)
    region = comfy.node_class("AtelierRegion").execute(
        conditioning(model, tokens=5, seed=7), 0.0, 0.0, 0.5, 1.0, weight=1.0, curve="constant", end_weight=0.0,
        switch_at=0.5, weights="1").args[0]
    patched = comfy.node_class("AtelierRegionalAttention").execute(patched, region, "all", 0.0, 1.0).args[0]
    aesthetic = mix.AestheticMixControl(aesthetic=conditioning(model, tokens=3, seed=9)[0][0], strength=0.8)
    patched = dispatcher.attach(patched, aesthetic, node="AtelierAestheticMix")
    out = sample(comfy, patched, pos, neg, batch=2, steps=2, size=SIZE)
    assert torch.isfinite(out).all()
    return patched, trajectory, out


DIT_MODELS = {"Flux": tiny_flux, "SD3": tiny_sd35}


# ---- the tests -------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["SD15", pytest.param("SDXL", marks=pytest.mark.slow)])
def test_unet_prompt_leaves_nothing_behind(comfy, family):
    comfy.run_graph(unet_graph(comfy, family, seed=0))  # first use: lazy imports, the shared checkpoint load
    census = Census(comfy)
    census.start()
    executor = comfy.new_executor()  # keeps node outputs between prompts, as a server does
    counts = []
    for seed in range(RUNS):
        result = comfy.run_graph(unet_graph(comfy, family, seed=seed), executor)
        assert torch.isfinite(result.output(aio.KSAMPLER)["samples"]).all()
        del result
        made = census.new()
        counts.append(len(made))
        if seed == 0:
            patchers = sum(issubclass(type(o), census.patcher_class) for o in made)
            assert patchers >= 4, f"the prompt's patched models were not seen: {collections.Counter(map(describe, made))}"
        caches = [o for o in made if type(o).__name__ == "ReferenceCache"]
        tracked = Tracked(made)
        del made
    assert caches and sum(c.hits for c in caches) > 0, "the reference cache did not replay on a re-queued prompt"
    del caches
    assert counts[-1] <= counts[0], f"pack objects alive after each prompt grow: {counts}"
    del executor  # ComfyUI lets go of the node outputs: everything the prompts made must go with them
    assert_all_gone(tracked, census, f"{family}: {RUNS} prompts on one executor, executor dropped")
    census.stop()


@pytest.mark.parametrize("family", list(DIT_MODELS))
def test_dit_prompt_leaves_nothing_behind(comfy, family):
    model = DIT_MODELS[family](comfy)
    dit_prompt(comfy, model)  # first use: lazily imported modules, per-model layer key memo
    census = Census(comfy)
    census.start()
    counts = []
    for _ in range(RUNS):
        outputs = dit_prompt(comfy, model)
        made = census.new()
        assert sum(isinstance(o, census.patcher_class) for o in made) >= 3, collections.Counter(map(describe, made))
        counts.append(len(made))
        tracked = Tracked(made)
        del outputs, made
        assert_all_gone(tracked, census, f"{family}: a prompt's patched models and controls, after the prompt")
    assert counts[-1] == counts[0], f"each prompt made a different number of pack objects: {counts}"
    census.stop()
