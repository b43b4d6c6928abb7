"""The shipped Z-Image Turbo "invert and reconstruct" template, run in-process as a user runs it: ComfyUI's
own Z-Image loaders (UNETLoader, CLIPLoader type lumina2, VAELoader, ModelSamplingAuraFlow 3) on the tiny
Z-Image and Qwen3 stand-ins, AtelierInvert, then SamplerCustomAdvanced with AtelierInvertedNoise, CFGGuider
cfg 1, euler and the inversion's sigmas: the encoded picture comes back."""
from __future__ import annotations

import torch

from tests.comfy.template_graphs import SIZE, inputs_by_class, on_test_bed

NAME = "z_image_invert_and_reconstruct"  # at SIZE 128 px: a 16 x 16 latent; 20 steps -> 4 on the test bed
# the K = 2, 20-evaluation round trip of the tiny TAESD's latent, relative RMS in model
# space at the template's 20 steps: measured 1.5e-3 (0.3.75, 2026-12); the bound is the target
ROUND_TRIP = 0.01


def test_the_template_loads_z_image_as_comfyuis_own_template_does_and_wires_the_way_back():
    by_class = inputs_by_class(NAME)
    assert by_class["UNETLoader"]["unet_name"] == "z_image_turbo_bf16.safetensors"
    assert (by_class["CLIPLoader"]["clip_name"], by_class["CLIPLoader"]["type"]) == ("qwen_3_4b.safetensors", "lumina2")
    assert by_class["VAELoader"]["vae_name"] == "ae.safetensors"
    assert by_class["ModelSamplingAuraFlow"]["shift"] == 3.0
    invert = by_class["AtelierInvert"]
    assert (invert["steps"], invert["cfg"], invert["scheduler"], invert["refine_iterations"],
            invert["max_evaluations"]) == (20, 1.0, "simple", 2, 20)
    back = by_class["SamplerCustomAdvanced"]
    assert back["sigmas"] == ["10", 2] and back["latent_image"] == ["10", 0] and back["noise"] == ["11", 0]
    assert by_class["KSamplerSelect"]["sampler_name"] == "euler" and by_class["CFGGuider"]["cfg"] == 1.0
    assert by_class["AtelierInvertedNoise"]["trajectory"] == ["10", 1]


def test_the_reconstruction_gives_the_encoded_picture_back(comfy):
    """At the template's own 20 steps (the test bed's rewrite takes a fifth: 4 steps, whose last step
    0.5 -> 0 no solver inverts on a random-weight model; the e2e tier runs that graph as rewritten)."""
    graph = on_test_bed(NAME)
    graph["10"]["inputs"]["steps"] = inputs_by_class(NAME)["AtelierInvert"]["steps"]
    result = comfy.run_graph(graph)
    encoded = result.output("7")["samples"]
    back = result.output("14")["samples"]
    assert back.shape == encoded.shape == (1, 16, SIZE // 8, SIZE // 8)
    model_space = lambda x: (x - 0.1159) * 0.3611  # noqa: E731  latent_formats.Flux: process_in
    error = float((model_space(back) - model_space(encoded)).pow(2).mean().sqrt()
                  / model_space(encoded).pow(2).mean().sqrt())
    print(f"\n{NAME} on the test bed: round trip {error:.3g}, latent std {float(model_space(encoded).std()):.3g}")
    assert torch.isfinite(result.output("15")).all()
    assert error <= ROUND_TRIP
