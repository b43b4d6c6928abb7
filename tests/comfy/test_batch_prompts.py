"""AtelierBatchPrompts: one conditioning row per prompt, and a clear error on a batch mismatch."""
import pytest

from tests.pack import pack_module
from tests.tolerance import assert_exact


def batch_prompts(comfy, clip, prompts, style=""):
    out = comfy.node_class("AtelierBatchPrompts").execute(clip, prompts, style)
    return out.args[0], out.args[1]


def test_one_row_per_prompt_sd15(comfy):
    clip = comfy.sd15.clip
    cond, count = batch_prompts(comfy, clip, "a house\n\n a tree \na car", "watercolor")
    assert count == 3 and cond[0][0].shape[0] == 3
    single = comfy.encode(clip, "a tree, watercolor")[0][0]
    assert_exact(cond[0][0][1:2], single, "row 1 vs the prompt encoded alone")  # each prompt is encoded alone


def test_sdxl_pooled_output_has_one_row_per_prompt(comfy):
    cond, count = batch_prompts(comfy, comfy.sdxl.clip, "a\nb")
    assert cond[0][0].shape[0] == 2 and cond[0][1]["pooled_output"].shape[0] == 2


def test_long_prompts_are_repeated_to_a_common_length(comfy):
    long = ", ".join(["a very detailed castle on a hill"] * 12)
    cond, _ = batch_prompts(comfy, comfy.sd15.clip, f"a cat\n{long}")
    assert cond[0][0].shape[1] == 154


def test_each_row_gets_its_own_prompt(comfy):
    ckpt = comfy.sd15
    cond, count = batch_prompts(comfy, ckpt.clip, "a cat\na dog")
    neg = comfy.encode(ckpt.clip, "")
    batched = comfy.sample(ckpt.model, cond, neg, batch=2, steps=2, width=64, height=64)
    dog = comfy.sample(ckpt.model, comfy.encode(ckpt.clip, "a dog"), neg, batch=2, steps=2, width=64, height=64)
    # the same batch shapes, and no op mixes rows: row 1 gets the same operations on the same inputs
    assert_exact(batched[1], dog[1], "the dog row")


def test_batch_size_mismatch_names_both_numbers(comfy):
    ckpt = comfy.sd15
    errors = pack_module("attention.core.errors")
    model = comfy.node_class("AtelierStyleAligned").execute(
        ckpt.model, True, True, True, False, False, 1.0, 0.0, "all", 0.0, 0.0, 1.0).args[0]
    cond, _ = batch_prompts(comfy, ckpt.clip, "a\nb\nc")
    with pytest.raises(errors.AtelierError, match=r"3 prompts.*4 rows"):
        comfy.sample(model, cond, comfy.encode(ckpt.clip, ""), batch=4, steps=1, width=64, height=64)


def test_empty_prompts_are_refused(comfy):
    errors = pack_module("attention.core.errors")
    with pytest.raises(errors.AtelierError, match="input 'prompts'"):
        batch_prompts(comfy, comfy.sd15.clip, " \n\n")
