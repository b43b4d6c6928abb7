"""Reference-row cache (inversion/reference_cache.py): what is recorded for row 0, that replaying it gives
the generated rows what the row itself gave them, the keys' identity rules and the memory cap."""
import logging
import uuid

import pytest
import torch

from tests.pack import pack_module
from tests.tolerance import ONE_CALL, OPS, assert_close, assert_exact

cache_module = pack_module("inversion.reference_cache")
rows = pack_module("attention.core.rows")
gn = pack_module("attention.group_norm")
art_bn = pack_module("attention.art_bn")
style = pack_module("attention.style_aligned")

LAYOUT_KINDS = [1, 0]  # two chunks (uncond, cond)


def batch(rows_per_chunk=3, shape=(8, 5, 6), seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2 * rows_per_chunk, *shape, generator=gen, dtype=dtype) * 2.0 + 0.5


def without_row0(x, layout):
    """The caller's rows of a batch laid out with row 0 first in every chunk."""
    return rows.strip_rows(x, layout.chunks), rows.chunk_layout(x.shape[0] - layout.chunks, LAYOUT_KINDS)


def test_norm_statistics_are_row_0s_by_the_textbook_formulas():
    x = batch().double()
    layout = rows.chunk_layout(x.shape[0], LAYOUT_KINDS)
    stats = cache_module.norm_stats(x, layout, groups=4)
    for c in range(2):
        ref = x[c * 3]
        grouped = ref.reshape(4, -1)
        assert_close(stats.group_mean[c, 0, :, 0], grouped.mean(-1), ulps=OPS, magnitude_of=ref, what="group means")
        assert_close(stats.group_var[c, 0, :, 0], grouped.var(-1, unbiased=False), ulps=OPS,
                     magnitude_of=ref.square(), what="group variances")
        per_channel = ref.reshape(8, -1)
        assert_close(stats.channel_mean[c, 0].flatten(), per_channel.mean(-1), ulps=OPS, magnitude_of=ref,
                     what="channel means")
        assert_close(stats.channel_std[c, 0].flatten(), (per_channel.var(-1) + art_bn.EPS).sqrt(), ulps=OPS,
                     magnitude_of=ref, what="channel stds")


@pytest.mark.parametrize("affine", [True, False])
def test_joint_group_norm_with_recorded_statistics_equals_the_row_in_the_batch(affine):
    norm = torch.nn.GroupNorm(4, 8, affine=affine)
    if affine:
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    x = batch()
    layout = rows.chunk_layout(x.shape[0], LAYOUT_KINDS)
    full = gn.shared_group_norm(gn.ModuleNorm(norm, norm.forward), x, layout)
    stats = cache_module.norm_stats(x, layout, 4)
    gen, gen_layout = without_row0(x, layout)
    replayed = gn.shared_group_norm(gn.ModuleNorm(norm, norm.forward), gen, gen_layout, stats)
    assert_exact(replayed, rows.strip_rows(full, 2), "replayed vs in the batch")


def test_a_weight_patched_group_norm_gets_a_stand_in_row_with_the_recorded_statistics():
    norm = torch.nn.GroupNorm(4, 8)
    torch.nn.init.normal_(norm.weight)
    x = batch().double()
    norm = norm.double()
    layout = rows.chunk_layout(x.shape[0], LAYOUT_KINDS)
    full = gn.shared_group_norm(norm, x, layout)  # a plain callable: the joined-copy path
    gen, gen_layout = without_row0(x, layout)
    replayed = gn.shared_group_norm(norm, gen, gen_layout, cache_module.norm_stats(x, layout, 4))
    assert_close(replayed, rows.strip_rows(full, 2), ulps=ONE_CALL, what="stand-in row vs the row in the batch")


@pytest.mark.parametrize("group_size", [30, 31])  # even and odd numbers of elements per group
def test_stand_in_row_has_the_recorded_group_mean_and_variance(group_size):
    x = batch(shape=(4, group_size), seed=group_size).double()
    layout = rows.chunk_layout(x.shape[0], LAYOUT_KINDS)
    stats = cache_module.norm_stats(x, layout, 4)
    row = gn.stand_in_row(stats, layout.split(x))  # (chunks, 1, 4, group_size)
    again = cache_module.norm_stats(row.flatten(0, 1), rows.chunk_layout(2, LAYOUT_KINDS), 4)
    assert_close(again.group_mean, stats.group_mean, ulps=OPS, magnitude_of=row, what="group means")
    assert_close(again.group_var, stats.group_var, ulps=OPS, magnitude_of=row.square(), what="group variances")


@pytest.mark.parametrize("strength", [1.0, 0.4])
def test_art_bn_with_recorded_statistics_equals_the_row_in_the_batch(strength):
    x = batch()
    layout = rows.chunk_layout(x.shape[0], LAYOUT_KINDS)
    full = art_bn.align_generated_rows(x, layout, strength, (-2, -1))
    stats = cache_module.norm_stats(x, layout, 4)
    gen, gen_layout = without_row0(x, layout)
    replayed = art_bn.align_generated_rows(gen, gen_layout, strength, (-2, -1), reference=stats.channel)
    assert_exact(replayed, rows.strip_rows(full, 2), "replayed vs in the batch")


def test_one_caller_row_is_still_aligned_when_row_0_comes_from_the_cache():
    x = batch(rows_per_chunk=2)
    layout = rows.chunk_layout(x.shape[0], LAYOUT_KINDS)
    stats = cache_module.norm_stats(x, layout, 4)
    gen, gen_layout = without_row0(x, layout)
    assert gen_layout.rows == 1
    replayed = art_bn.align_generated_rows(gen, gen_layout, 1.0, (-2, -1), reference=stats.channel)
    assert_exact(replayed, rows.strip_rows(art_bn.align_generated_rows(x, layout, 1.0, (-2, -1)), 2),
                 "replayed vs in the batch")


def attention(q, k, v, mask):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    return torch.softmax(scores if mask is None else scores + mask, -1) @ v


@pytest.mark.parametrize("shift,heads", [(0.0, None), (0.7, 2), (0.7, None)])
def test_shared_attention_for_a_dropped_row_0_leaves_the_generated_rows_unchanged(shift, heads):
    q, k, v = (batch(shape=(6, 8), seed=s) for s in (1, 2, 3))
    layout = rows.chunk_layout(q.shape[0], LAYOUT_KINDS)
    settings = style.SharingSettings(score_shift=shift, adain_values=True)
    full = style.shared_attention(q, k, v, layout, settings, attention, heads=heads)
    skipped = style.shared_attention(q, k, v, layout, settings, attention, heads=heads, reference_output=False)
    assert_exact(rows.strip_rows(skipped, 2), rows.strip_rows(full, 2), "generated rows")  # row 0's output is dropped


def test_replay_puts_the_recorded_row_back_in_front_of_every_chunk_and_drops_its_output():
    q, k, v = (batch(shape=(6, 8), seed=s) for s in (1, 2, 3))
    options = {"cond_or_uncond": LAYOUT_KINDS}
    recorder = cache_module.StepRecorder()
    recorder.record_attention(("attn1", ("input", 1, 0)), q, k, v, options)
    replay = cache_module.StepReplay(recorder.entry())
    seen = {}

    def run(q_, k_, v_, options_):
        seen.update(q=q_, k=k_, v=v_, options=options_)
        return q_ * 2.0
    gen = [rows.strip_rows(t, 2) for t in (q, k, v)]
    out = replay.attend(("attn1", ("input", 1, 0)), *gen, options, run)
    for name, t in (("q", q), ("k", k), ("v", v)):
        assert_exact(seen[name], t, f"{name} with the recorded row put back")
    assert seen["options"][cache_module.REPLAYED_ROW_KEY] and seen["options"][cache_module.REFERENCE_INSERTED_KEY]
    assert cache_module.REPLAYED_ROW_KEY not in options  # the layer's own options are left alone
    assert_exact(out, gen[0] * 2.0, "the caller's rows of the output")
    with pytest.raises(cache_module.ReplayMissing):
        replay.attend(("attn1", ("output", 3, 0)), *gen, options, run)
    with pytest.raises(cache_module.ReplayMissing):  # another token count
        replay.attend(("attn1", ("input", 1, 0)), *(t[:, :3] for t in gen), options, run)


def test_recorded_rows_are_compact_copies():
    q = batch(shape=(6, 8))
    recorder = cache_module.StepRecorder()
    recorder.record_attention(("attn1", 0), q, q, q, {"cond_or_uncond": LAYOUT_KINDS})
    stored = recorder.entry().attention[("attn1", 0)][0]
    q.zero_()
    assert stored.is_contiguous() and stored.abs().sum() > 0
    assert recorder.entry().nbytes == 3 * 2 * 6 * 8 * 4


def test_a_layer_recorded_twice_makes_the_step_uncacheable():
    q = batch(shape=(6, 8))
    recorder = cache_module.StepRecorder()
    for _ in range(2):
        recorder.record_attention(("attn1", 0), q, q, q, {"cond_or_uncond": LAYOUT_KINDS})
    assert recorder.entry() is None


class Thing:
    pass


def test_identity_tokens_match_the_same_living_object_only():
    a, b = Thing(), Thing()
    assert cache_module.Same(a) == cache_module.Same(a)
    assert cache_module.Same(a) != cache_module.Same(b)
    token = cache_module.Same(b)
    del b
    assert token != token  # a dead object matches nothing, not even itself
    listed = [1, 2]  # not weak-referenceable: held, compared by identity
    assert cache_module.Same(listed) == cache_module.Same(listed) != cache_module.Same([1, 2])


def test_fingerprints_compare_plain_values_by_value_and_everything_else_by_identity():
    fn = lambda: None  # noqa: E731
    uid = uuid.uuid4()
    options = {"a": [1, 2.5, "x"], "f": fn, "u": uid, "nested": {"t": (torch.float16, None)}}
    assert cache_module.fingerprint(options) == cache_module.fingerprint(dict(options, a=[1, 2.5, "x"]))
    assert cache_module.fingerprint(options) != cache_module.fingerprint(dict(options, a=[1, 2.5, "y"]))
    assert cache_module.fingerprint(options) != cache_module.fingerprint(dict(options, f=lambda: None))
    tensor = torch.zeros(3)
    assert cache_module.fingerprint(tensor) == cache_module.fingerprint(tensor)
    assert cache_module.fingerprint(tensor) != cache_module.fingerprint(torch.zeros(3))


def test_digest_follows_content_shape_and_dtype():
    t = torch.arange(6.0)
    assert cache_module.digest(t) == cache_module.digest(t.clone())
    assert cache_module.digest(t) != cache_module.digest(t + 1e-6)
    assert cache_module.digest(t) != cache_module.digest(t.reshape(2, 3))
    assert cache_module.digest(t) != cache_module.digest(t.double())


def recorder_of(nbytes_per_tensor):
    """A step that recorded one layer: q, k, v of nbytes_per_tensor each (2 chunks of float32)."""
    recorder = cache_module.StepRecorder()
    t = torch.zeros(4, nbytes_per_tensor // 8)  # row 0 of 2 chunks of 2 rows: 2 x n/8 floats = n bytes
    recorder.record_attention(("attn1", 0), t, t, t, {"cond_or_uncond": LAYOUT_KINDS})
    return recorder


def test_entries_are_kept_within_the_cap_then_recording_stops_and_is_logged_once(caplog):
    cache = cache_module.ReferenceCache(1)  # 1 MiB
    cache.use_context(("model", 1))
    size = recorder_of(2 ** 17).entry().nbytes  # 3 x 128 KiB = 384 KiB
    with caplog.at_level(logging.WARNING, logger="attention_atelier"):
        stored = [cache.store(("step", i), recorder_of(2 ** 17)) for i in range(4)]
        assert cache.recorder() is None  # full: no more copies made
    assert stored == [True, True, False, False]
    assert cache.nbytes == 2 * size <= cache.cap_bytes
    assert sum("cap" in r.getMessage() for r in caplog.records) == 1
    assert cache.lookup(("step", 0)) is not None and cache.lookup(("step", 2)) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_new_context_empties_the_cache_and_the_same_context_keeps_it():
    cache = cache_module.ReferenceCache(16)
    a, b = Thing(), Thing()
    cache.use_context((cache_module.Same(a), 1))
    cache.store("k", recorder_of(1024))
    cache.use_context((cache_module.Same(a), 1))
    assert len(cache) == 1
    cache.use_context((cache_module.Same(b), 1))
    assert len(cache) == 0 and cache.nbytes == 0


def test_a_failed_replay_turns_the_cache_off_until_the_context_changes(caplog):
    cache = cache_module.ReferenceCache(16)
    cache.use_context(("model", 1))
    cache.store("k", recorder_of(1024))
    with caplog.at_level(logging.WARNING, logger="attention_atelier"):
        cache.replay_failed(cache_module.ReplayMissing("no row for layer x"))
    assert cache.disabled and len(cache) == 0 and cache.recorder() is None
    assert "no row for layer x" in caplog.text
    cache.use_context(("model", 2))
    assert not cache.disabled
