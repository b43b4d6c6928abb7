"""A NOISE (SamplerCustomAdvanced's noise input) that starts sampling exactly at an inversion's x_T.

ComfyUI's KSAMPLER starts from x = model_sampling.noise_scaling(sigmas[0], noise, latent), with
``latent`` the sampler's latent_image after process_latent_in (skipped for an all-zero latent) and
``noise`` taken as it is (model space). noise_scaling is affine in the noise:

    flow matching (CONST):  x = s * (scale * noise) + (1 - s) * latent        (scale: noise_scale, 1)
    eps / v (EPS, V):       x = c * noise + latent,  c = sqrt(1 + s^2) at the model's sigma_max, else s

so the noise that lands on x_T is n = (x_T - b) / a with b = noise_scaling(s, 0, latent) and
a = noise_scaling(s, 1, 0), computed with ComfyUI's own function for whatever latent_image is wired.
For a flow model at s = 1 (every flow schedule starts there): b = 0 * latent = 0 and a = 1, so n = x_T
and the sampler's x = 1 * (1 * x_T) + 0 * latent = x_T bit for bit. Elsewhere (eps / v models, a flow
schedule starting below 1) x_T is met to float rounding (a division and a multiplication).
"""
from __future__ import annotations

import math

import torch

from ..attention.core.errors import AtelierError
from .trajectory import Trajectory


def max_denoise(model_sampling, sigma: float) -> bool:
    """comfy.samplers.Sampler.max_denoise: is the schedule's first sigma the model's largest?"""
    max_sigma = float(model_sampling.sigma_max)
    return math.isclose(max_sigma, sigma, rel_tol=1e-05) or sigma > max_sigma


class InvertedNoise:
    """comfy_extras Noise_* protocol: ``seed`` and ``generate_noise(input_latent)``."""

    seed = 0  # nothing random: the noise is the inversion's

    def __init__(self, model, trajectory: Trajectory, node: str, input_name: str = "trajectory"):
        self.model, self.trajectory = model, trajectory
        self.node, self.input_name = node, input_name

    def __deepcopy__(self, memo):
        return self

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        latent = input_latent["samples"]
        x_T = self.trajectory.latents[0]
        if tuple(latent.shape) != tuple(x_T.shape):
            raise AtelierError(self.node, self.input_name,
                               f"the inversion's x_T is {list(x_T.shape)} but the sampler's latent_image is "
                               f"{list(latent.shape)}.",
                               "wire AtelierInvert's noised_latent (or a latent of the same size and batch) to "
                               "SamplerCustomAdvanced's latent_image.")
        sampling = self.model.get_model_object("model_sampling")
        sigma = self.trajectory.sigmas[:1].to(torch.float32)
        latent = latent.to(torch.float32)
        if torch.count_nonzero(latent) > 0:  # as CFGGuider.inner_sample: an empty latent is not shifted
            latent = self.model.model.process_latent_in(latent)
        full = max_denoise(sampling, float(sigma))
        offset = sampling.noise_scaling(sigma, torch.zeros_like(x_T), latent, full)
        gain = sampling.noise_scaling(sigma, torch.ones_like(x_T), torch.zeros_like(x_T), full)
        if not bool((gain != 0).all()):
            raise AtelierError(self.node, "model", f"{type(sampling).__name__} sampling ignores the noise at sigma "
                               f"{float(sigma):.4g}, so no noise can start it at x_T.",
                               "regenerate with KSamplerAdvanced (add_noise disable) from noised_latent instead.")
        return (x_T - offset) / gain
