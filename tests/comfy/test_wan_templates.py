"""The shipped Wan 2.2 video templates, run in-process as a user runs them: ComfyUI's own Wan 2.2 5B template
graph (UNETLoader wan2.2_ti2v_5B_fp16, CLIPLoader umt5_xxl type wan, VAELoader wan2.2_vae, ModelSamplingSD3 8,
Wan22ImageToVideoLatent, KSampler 20 steps cfg 5 uni_pc/simple with Wan's negative prompt, VAEDecode,
CreateVideo 24 fps, SaveVideo) with the pack's nodes in it, on the tiny Wan 2.2 5B (scripts/tiny_models/wan.py),
the tiny UMT5 and the tiny Wan 2.2 TAE (wan22_parts.py). ComfyUI 0.3.75 and 0.33.0.

- wan_regional_layout: a scene prompt and two regions, the boat's box moving along its keyframes; every
  region weight 0 is the graph without Regional Attention bit for bit, the regions change the clip, and in
  every prompt cross-attention each frame's cells inside that frame's boxes change while the others are the
  model's own call bit for bit (the boat's cells move from the left to the right);
- wan_style_aligned_clips: one clip per Batch Prompts line, all in the first clip's style; clip 0 is the graph
  without StyleAligned within sampling rounding, the other clips change.
"""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from tests.comfy.template_graphs import (SIZE, api_twin, assert_rows_1_on_styled_and_row_0_vanilla, on_test_bed,
                                         sampled, without)
from tests.comfy.video_models import spy_separate_calls
from tests.harness.paths import REPO_ROOT
from tests.tolerance import assert_changed, assert_exact
from tiny_models.template_swap import TEST_FRAMES

REGIONAL, CLIPS = "wan_regional_layout", "wan_style_aligned_clips"
OFFICIAL = "video_wan2_2_5B_ti2v.json"  # ComfyUI's own Wan 2.2 5B template (comfyui_workflow_templates_json)
LATENT_FRAMES = (TEST_FRAMES - 1) // 4 + 1  # 9 frames: 3 latent frames
GRID = SIZE // 32  # 128 px: an 8 x 8 Wan 2.2 latent (16 px per cell) in 2 x 2 patches, 4 x 4 tokens a frame


def official_template() -> dict:
    spec = importlib.util.find_spec("comfyui_workflow_templates_json")
    path = Path(next(iter(spec.submodule_search_locations))) / "templates" / OFFICIAL if spec else None
    if path is None or not path.is_file():
        pytest.skip(f"ComfyUI's workflow templates ({OFFICIAL}) are not installed in this venv")
    return json.loads(path.read_text())


def ui_template(name: str) -> dict:
    return json.loads((REPO_ROOT / "workflows" / f"{name}.json").read_text())


def by_class(graph: dict) -> dict:
    return {node["class_type"]: node["inputs"] for node in graph.values()}


@pytest.mark.parametrize("name", [REGIONAL, CLIPS])
def test_the_template_loads_and_samples_as_comfyuis_own_wan22_5b_template(name):
    official = {node["type"]: node for node in official_template()["nodes"] if node.get("mode") == 0}
    ours, ui = by_class(api_twin(name)), {node["type"]: node for node in ui_template(name)["nodes"]}
    for loader, inputs in (("UNETLoader", ("unet_name", "weight_dtype")), ("CLIPLoader", ("clip_name", "type", "device")),
                           ("VAELoader", ("vae_name",))):
        assert [ours[loader][i] for i in inputs] == official[loader]["widgets_values"], loader
        assert ui[loader]["properties"]["models"] == official[loader]["properties"]["models"], loader  # URL, folder
    assert [ours["ModelSamplingSD3"]["shift"]] == official["ModelSamplingSD3"]["widgets_values"]
    _, _, steps, cfg, sampler, scheduler, denoise = official["KSampler"]["widgets_values"]
    ksampler = ours["KSampler"]
    assert (ksampler["steps"], ksampler["cfg"], ksampler["sampler_name"], ksampler["scheduler"], ksampler["denoise"]) == \
        (steps, cfg, sampler, scheduler, denoise)
    negative = next(n for n in official_template()["nodes"] if "Negative" in n.get("title", ""))
    assert api_twin(name)[ksampler["negative"][0]]["inputs"]["text"] == negative["widgets_values"][0]
    width, height, length, _ = official["Wan22ImageToVideoLatent"]["widgets_values"]
    latent = ours["Wan22ImageToVideoLatent"]
    assert (latent["width"], latent["height"]) == (width, height)
    assert latent["length"] == (length if name == REGIONAL else 49)  # several clips at once: 2 s each
    assert [ours["CreateVideo"]["fps"]] == official["CreateVideo"]["widgets_values"]
    assert [ours["SaveVideo"]["format"], ours["SaveVideo"]["codec"]] == official["SaveVideo"]["widgets_values"][1:]


def test_the_regional_clip_encodes_with_umt5_decodes_and_saves_a_video(comfy):
    graph = on_test_bed(REGIONAL)
    result = comfy.run_graph(graph)
    context, _ = result.output("5")[0]
    assert context.shape == (1, 512, 32)  # UMT5 pads to 512 tokens; width 32 = the tiny Wan's text width
    assert result.output("13")["samples"].shape == (1, 48, LATENT_FRAMES, SIZE // 16, SIZE // 16)
    assert result.output("14").shape == (TEST_FRAMES, SIZE, SIZE, 3)  # the Wan 2.2 latent decodes to 9 frames
    saved = result.ui["16"]["images"]
    assert len(saved) == 1 and saved[0]["filename"].endswith(".mp4")


def every_region_weight_zero(graph: dict) -> dict:
    zero = copy.deepcopy(graph)
    for node in zero.values():
        if node["class_type"] == "AtelierRegion":
            node["inputs"].update(weight=0.0, end_weight=0.0, weights="0")
    return zero


def test_regions_change_the_clip_and_weight_0_is_the_graph_without_them(comfy):
    graph = on_test_bed(REGIONAL)
    vanilla = sampled(comfy, without(graph, "11", ["4", 0]), "13")
    assert_changed(sampled(comfy, graph, "13"), vanilla, what="the regional layout")
    assert_exact(sampled(comfy, every_region_weight_zero(graph), "13"), vanilla, "every region's weight 0")


def boxes_at(inputs: dict, frames: int) -> list[tuple]:
    """The region's box at each latent frame, read from the template: its x, y, width, height at the first
    frame, keyframes 'at: x, y, width, height; ...' (at 1 = the last frame), linear in between."""
    path = [(0.0, (inputs["x"], inputs["y"], inputs["width"], inputs["height"]))]
    for entry in filter(None, (e.strip() for e in inputs["keyframes"].split(";"))):
        at, box = entry.split(":")
        path = [p for p in path if p[0] != float(at)] + [(float(at), tuple(float(v) for v in box.split(",")))]
    path.sort()
    out = []
    for frame in range(frames):
        t = frame / (frames - 1)
        (t0, b0), (t1, b1) = max((p for p in path if p[0] <= t), default=path[0]), min((p for p in path if p[0] >= t),
                                                                                      default=path[-1])
        share = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
        out.append(tuple(a + share * (b - a) for a, b in zip(b0, b1)))
    return out


def covered(box: tuple, grid: int) -> torch.Tensor:
    """(grid, grid) bool: the cells a box in fractions of the frame overlaps with some area."""
    x, y, w, h = box
    edges = torch.arange(grid + 1, dtype=torch.float64) / grid
    rows = (edges[:-1] < y + h) & (edges[1:] > y)
    columns = (edges[:-1] < x + w) & (edges[1:] > x)
    return rows[:, None] & columns[None, :]


def test_the_boat_follows_its_keyframes_into_every_prompt_cross_attention(comfy):
    graph = on_test_bed(REGIONAL)
    boat, sun = boxes_at(graph["8"]["inputs"], LATENT_FRAMES), boxes_at(graph["10"]["inputs"], LATENT_FRAMES)
    inside = [covered(b, GRID) | covered(s, GRID) for b, s in zip(boat, sun)]
    assert not torch.equal(covered(boat[0], GRID), covered(boat[-1], GRID))  # the boat moves across the cells
    calls = spy_separate_calls(lambda: comfy.run_graph(graph))
    cross = [c for c in calls if c["own"] is not None and c["k"].shape[-2] > c["text"]]
    assert cross, "no prompt cross-attention carried the local prompts"
    cells = GRID * GRID
    for call in cross:
        out, own = call["out"], call["own"]
        kinds = torch.tensor(call["cond_or_uncond"]).repeat_interleave(out.shape[0] // len(call["cond_or_uncond"]))
        assert_exact(out[kinds == 1], own[kinds == 1], f"{call['key']}: the uncond rows")
        for frame, where in enumerate(inside):
            where = where.flatten()
            got, want = (t[kinds == 0][:, frame * cells:(frame + 1) * cells] for t in (out, own))
            assert_exact(got[:, ~where], want[:, ~where], f"{call['key']} frame {frame}: cells outside the boxes")
            for cell in where.nonzero().flatten().tolist():
                assert_changed(got[:, cell], want[:, cell], what=f"{call['key']} frame {frame}: cell {cell} in a box")


def test_one_clip_per_prompt_line_through_umt5_in_one_batch(comfy):
    graph = on_test_bed(CLIPS)
    result = comfy.run_graph(graph)
    rows = len(graph["6"]["inputs"]["prompts"].splitlines())
    context, _ = result.output("6")[0]
    assert result.output("6", 1) == rows and context.shape == (rows, 512, 32)
    assert result.output("10")["samples"].shape == (rows, 48, LATENT_FRAMES, SIZE // 16, SIZE // 16)
    assert result.output("11").shape == (rows * TEST_FRAMES, SIZE, SIZE, 3)  # the clips one after another
    assert result.ui["13"]["images"][0]["filename"].endswith(".mp4")


def test_clips_1_on_are_styled_and_clip_0_is_the_graph_without_style_aligned(comfy):
    assert_rows_1_on_styled_and_row_0_vanilla(comfy, on_test_bed(CLIPS), "10", "5", ["4", 0])
