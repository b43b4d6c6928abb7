"""Reference-image mode's cache (AtelierStyleAligned's reference_cache_mb) in a real ComfyUI: the first
run records the reference row, a second run with the same model, trajectory and conditioning replays it
(the UNet then sees only the caller's rows) and gives the images of the cache-off run; anything that
could change the reference row's activations misses; a tiny cap changes nothing but the speed.

Test bed: tiny SD1.5, 64 px (latent 8x8), 3 steps; the trajectory is inverted once per module.
"""
import logging

import pytest

from tests.comfy.inversion_helpers import image_latent, invert, with_unet_spy
from tests.comfy.style_aligned_node import DEFAULTS, NODE
from tests.tolerance import SAMPLING, assert_changed, assert_close, assert_exact

STEPS = 3
KW = dict(steps=STEPS, width=64, height=64, batch=2, seed=7, sampler_name="euler")


@pytest.fixture(scope="module")
def reference(comfy):
    checkpoint = comfy.sd15
    positive = comfy.encode(checkpoint.clip, "a sunset over hills")
    negative = comfy.encode(checkpoint.clip, "ugly")
    return invert(comfy, checkpoint.model, image_latent(checkpoint), STEPS, cfg=2.0, refine=0,
                  positive=positive, negative=negative)[1]


@pytest.fixture(scope="module")
def conds(comfy):
    clip = comfy.sd15.clip
    return comfy.encode(clip, "a house"), comfy.encode(clip, "blurry")


def styled(comfy, model, reference, cache_mb, **settings):
    return comfy.node_class(NODE).execute(model, **dict(DEFAULTS, **settings), reference=reference,
                                          reference_cache_mb=cache_mb).args[0]


def assert_replayed_images(got, want):
    """A run that replayed the reference row (the UNet saw B rows per chunk) against the cache-off run
    (B + 1 rows): the same maths in calls of another batch size, which a kernel may block differently
    (by ISA or thread count), so equal to float32 rounding of a sampling run, not bit for bit."""
    assert_close(got, want, ulps=SAMPLING, what="replayed run vs cache off")


def assert_same_images(got, want):
    """A run that recorded or missed (the UNet saw the B + 1 rows of the cache-off run): bit for bit."""
    assert_exact(got, want, "run vs cache off")


class BatchSpy:
    """DIFFUSION_MODEL wrapper (innermost): the batch size of every UNet call."""

    def __init__(self):
        self.batches = []

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, *args, **kwargs):
        self.batches.append(x.shape[0])
        return executor(x, *args, **kwargs)


def spied(model):
    return with_unet_spy(model, BatchSpy())


def cache_of(model):
    from tests.pack import pack_module
    keys = pack_module("attention.core.keys")
    import comfy.patcher_extension as ext
    [rows] = model.get_wrappers(ext.WrappersMP.APPLY_MODEL, keys.REFERENCE_KEY)
    return rows.cache


SETTINGS = [
    pytest.param(dict(), 3.0, id="defaults-cfg3"),
    pytest.param(dict(share_group_norm=True), 3.0, id="group-norm-cfg3"),
    pytest.param(dict(share_group_norm=True, shared_score_shift=0.5, adain_values=True), 1.0, id="shift-cfg1"),
]


@pytest.mark.parametrize("settings,cfg", SETTINGS)
def test_second_run_replays_the_reference_row_and_gives_the_cache_off_images(comfy, reference, conds, settings, cfg):
    model = comfy.sd15.model
    off = comfy.sample(styled(comfy, model, reference, 0, **settings), *conds, cfg=cfg, **KW)
    cached, spy = spied(styled(comfy, model, reference, 512, **settings))
    first = comfy.sample(cached, *conds, cfg=cfg, **KW)
    cache = cache_of(cached)
    chunks = 2 if cfg > 1 else 1
    assert (cache.hits, cache.stored) == (0, STEPS)
    assert spy.batches == [chunks * 3] * STEPS  # 2 rows + the reference per chunk
    spy.batches.clear()
    second = comfy.sample(cached, *conds, cfg=cfg, **KW)
    assert cache.hits == STEPS
    assert spy.batches == [chunks * 2] * STEPS  # the caller's rows only
    assert_same_images(first, off)
    assert_replayed_images(second, off)
    assert 0 < cache.nbytes <= 512 * 2 ** 20


def test_art_bn_on_attention_and_group_norms_is_replayed_too(comfy, reference, conds):
    checkpoint = comfy.sd15
    art_bn = comfy.node_class("AtelierArtBN")

    def model(cache_mb):
        base = styled(comfy, checkpoint.model, reference, cache_mb, share_attention=False, adain_queries=False,
                      adain_keys=False)
        return art_bn.execute(base, strength=0.8, apply_to="both", layers="all", start_percent=0.0,
                              end_percent=1.0).args[0]
    off = comfy.sample(model(0), *conds, cfg=3.0, **KW)
    cached = model(512)
    comfy.sample(cached, *conds, cfg=3.0, **KW)
    second = comfy.sample(cached, *conds, cfg=3.0, **KW)
    assert cache_of(cached).hits == STEPS
    assert_replayed_images(second, off)


def test_an_image_prompt_beside_it_is_replayed_with_its_rows_in_place(comfy, reference, conds):
    """The image prompt (cross-attention, each row alone) is not recorded; on a replayed call it sees
    only the caller's rows, unmarked, and gives them what it gave them beside the inserted row."""
    import nodes
    from tests.comfy.test_creative_synth import content_image
    from tiny_models.clip_vision import CLIP_VISION
    from tiny_models.ip_adapter import SD15_BASE
    comfy.load_nodes()
    vision = nodes.CLIPVisionEncode().encode(nodes.CLIPVisionLoader().load_clip(CLIP_VISION)[0], content_image(),
                                             "center")[0]
    adapter = comfy.node_class("AtelierIPAdapterLoader").execute(SD15_BASE).result[0]

    def model(cache_mb):
        return comfy.node_class("AtelierImagePrompt").execute(
            styled(comfy, comfy.sd15.model, reference, cache_mb), adapter, vision, 0.8, "all", 0.0, 1.0).result[0]
    off = comfy.sample(model(0), *conds, cfg=3.0, **KW)
    cached = model(512)
    comfy.sample(cached, *conds, cfg=3.0, **KW)
    second = comfy.sample(cached, *conds, cfg=3.0, **KW)
    assert cache_of(cached).hits == STEPS
    assert all(layer[0] == "attn1" for entry in cache_of(cached)._entries.values() for layer in entry.attention)
    assert_replayed_images(second, off)


def test_other_conditioning_or_seed_still_hits_when_the_reference_row_is_the_same(comfy, reference, conds):
    model = styled(comfy, comfy.sd15.model, reference, 512)
    comfy.sample(model, *conds, cfg=3.0, **KW)
    other = comfy.encode(comfy.sd15.clip, "a castle at night"), conds[1]
    again = comfy.sample(model, *other, cfg=3.0, **dict(KW, seed=11))
    assert cache_of(model).hits == STEPS
    off = comfy.sample(styled(comfy, comfy.sd15.model, reference, 0), *other, cfg=3.0, **dict(KW, seed=11))
    assert_replayed_images(again, off)


def test_a_lora_strength_changed_downstream_misses(comfy, reference, conds):
    """The cache travels with model clones: a LoRA applied after the node shares it, and must miss."""
    checkpoint = comfy.sd15
    model = styled(comfy, checkpoint.model, reference, 512)
    comfy.sample(model, *conds, cfg=3.0, **KW)
    cache = cache_of(model)
    for strength in (1.0, 0.5):
        lora_model, _ = comfy.lora(model, checkpoint.clip, strength_model=strength, strength_clip=0.0)
        assert cache_of(lora_model) is cache
        hits = cache.hits
        with_lora = comfy.sample(lora_model, *conds, cfg=3.0, **KW)
        assert cache.hits == hits  # new weights: recorded again, not replayed
        lora_off, _ = comfy.lora(styled(comfy, checkpoint.model, reference, 0), checkpoint.clip,
                                 strength_model=strength, strength_clip=0.0)
        assert_same_images(with_lora, comfy.sample(lora_off, *conds, cfg=3.0, **KW))
    again = comfy.sample(model, *conds, cfg=3.0, **KW)  # back to the model without LoRA: its entries are gone
    assert cache.hits == hits


def test_another_patch_after_the_node_misses(comfy, reference, conds):
    model = styled(comfy, comfy.sd15.model, reference, 512)
    comfy.sample(model, *conds, cfg=3.0, **KW)
    cache = cache_of(model)
    patched = model.clone()  # another pack's self-attention patch: may act on the reference row
    patched.set_model_attn1_patch(lambda q, k, v, extra_options: (q, k * 1.5, v))
    hits, stored = cache.hits, cache.stored
    comfy.sample(patched, *conds, cfg=3.0, **KW)
    assert (cache.hits, cache.stored) == (hits, stored)


def test_another_trajectory_has_its_own_cache_and_other_reference_conditioning_misses(comfy, reference, conds):
    checkpoint = comfy.sd15
    model = styled(comfy, checkpoint.model, reference, 512)
    comfy.sample(model, *conds, cfg=3.0, **KW)
    other = invert(comfy, checkpoint.model, -image_latent(checkpoint), STEPS)[1]  # no negative: cond only
    other_model = styled(comfy, checkpoint.model, other, 512)
    assert cache_of(other_model) is not cache_of(model)
    out = comfy.sample(other_model, *conds, cfg=3.0, **KW)
    assert cache_of(other_model).hits == 0
    off = comfy.sample(styled(comfy, checkpoint.model, other, 0), *conds, cfg=3.0, **KW)
    assert_same_images(out, off)


def test_reference_conditioning_taken_from_the_caller_is_part_of_the_key(comfy, reference, conds):
    """A trajectory whose inversion recorded no cross-attention context gives the reference row the
    caller's first row: other prompts then change the reference row, so they must miss."""
    from tests.pack import pack_module
    trajectory = pack_module("inversion.trajectory")
    blank = {kind: trajectory.RowConds(None) for kind in reference.conds}
    no_context = trajectory.Trajectory(reference.latents, reference.sigmas, blank, reference.model_family)
    model = styled(comfy, comfy.sd15.model, no_context, 512)
    comfy.sample(model, *conds, cfg=3.0, **KW)
    cache = cache_of(model)
    comfy.sample(model, *conds, cfg=3.0, **dict(KW, seed=3))
    assert cache.hits == STEPS  # same prompts, other seed
    other = comfy.encode(comfy.sd15.clip, "a castle at night"), conds[1]
    out = comfy.sample(model, *other, cfg=3.0, **KW)
    assert cache.hits == STEPS
    off = comfy.sample(styled(comfy, comfy.sd15.model, no_context, 0), *other, cfg=3.0, **KW)
    assert_same_images(out, off)


def test_a_tiny_cap_caches_what_fits_and_changes_nothing_else(comfy, reference, conds, caplog):
    model = comfy.sd15.model
    off = comfy.sample(styled(comfy, model, reference, 0, share_group_norm=True), *conds, cfg=3.0, **KW)
    probe = styled(comfy, model, reference, 512, share_group_norm=True)
    comfy.sample(probe, *conds, cfg=3.0, **KW)
    per_step = cache_of(probe).nbytes // STEPS
    cap_mb = max(1, -(-per_step // 2 ** 20))  # room for one step at least
    steps_that_fit = (cap_mb * 2 ** 20) // per_step
    assert steps_that_fit < STEPS, "the tiny model's entry must be big enough to test a cap"
    capped = styled(comfy, model, reference, cap_mb, share_group_norm=True)
    with caplog.at_level(logging.WARNING, logger="attention_atelier"):
        outs = [comfy.sample(capped, *conds, cfg=3.0, **KW) for _ in range(3)]
    cache = cache_of(capped)
    assert cache.stored == steps_that_fit and cache.hits == 2 * steps_that_fit
    assert cache.nbytes <= cap_mb * 2 ** 20
    assert sum("cap" in r.getMessage() for r in caplog.records) == 1  # logged once
    for out in outs:
        assert_replayed_images(out, off)


def test_cache_off_is_the_default_and_keeps_no_state(comfy, reference, conds):
    model = comfy.node_class(NODE).execute(comfy.sd15.model, **DEFAULTS, reference=reference).args[0]
    assert cache_of(model) is None


def test_group_norm_sharing_is_installed_while_another_sharing_model_is_loaded(comfy, reference, conds):
    """Regression: the UNet's modules are those of the model loaded last; a second AtelierStyleAligned
    built while the first one's sharing copies were in place used to get no GroupNorm sharing at all."""
    model = comfy.sd15.model
    first = comfy.sample(styled(comfy, model, reference, 0, share_group_norm=True), *conds, cfg=3.0, **KW)
    second = comfy.sample(styled(comfy, model, reference, 0, share_group_norm=True), *conds, cfg=3.0, **KW)
    unshared = comfy.sample(styled(comfy, model, reference, 0), *conds, cfg=3.0, **KW)
    assert_same_images(second, first)
    assert_changed(first, unshared, what="GroupNorm sharing")


def test_queued_again_with_a_new_seed_and_prompt_the_cached_node_output_replays(comfy, monkeypatch):
    """As a user runs it: the graph queued twice on one executor (ComfyUI keeps the node outputs), only
    the seed and prompt changed; the StyleAligned output is reused, so its cache is, and the images are
    those of the same graph with the cache off."""
    from tests.harness import SD15
    from tests.pack import pack_module
    cache_module = pack_module("inversion.reference_cache")
    created = []
    original_init = cache_module.ReferenceCache.__init__

    def recording_init(self, cap_mb):
        original_init(self, cap_mb)
        created.append(self)
    monkeypatch.setattr(cache_module.ReferenceCache, "__init__", recording_init)

    def graph(cache_mb, seed, text):
        return {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD15}},
            "2": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 1]}},
            "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
            "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "5": {"class_type": "AtelierInvert", "inputs": {"model": ["1", 0], "latent": ["4", 0],
                                                           "positive": ["3", 0], "steps": 2, "cfg": 1.0,
                                                           "scheduler": "normal", "refine_iterations": 0}},
            "6": {"class_type": "AtelierStyleAligned", "inputs": dict(
                DEFAULTS, model=["1", 0], reference=["5", 1], share_group_norm=True, reference_cache_mb=cache_mb)},
            "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
            "8": {"class_type": "KSampler", "inputs": {"model": ["6", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                      "latent_image": ["7", 0], "seed": seed, "steps": 2, "cfg": 2.0,
                                                      "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
            "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
            "10": {"class_type": "PreviewImage", "inputs": {"images": ["9", 0]}},
        }
    executor = comfy.new_executor()
    comfy.run_graph(graph(512, 0, "a sunset"), executor)
    second = comfy.run_graph(graph(512, 1, "a harbour at dawn"), executor)
    assert "6" in [n for e, d in second.messages if e == "execution_cached" for n in d["nodes"]]
    [cache] = created
    assert (cache.stored, cache.hits) == (2, 2)
    off = comfy.run_graph(graph(0, 1, "a harbour at dawn"), comfy.new_executor())
    assert_replayed_images(second.output("8")["samples"], off.output("8")["samples"])
