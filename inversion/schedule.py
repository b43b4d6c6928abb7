"""The sigmas an inversion runs on: a scheduler node's SIGMAS, checked, or the scheduler widgets'.

Accepted: a 1-D tensor of at least 2 finite sigmas, strictly descending, ending at exactly 0 (the
inversion starts from your latent, the clean picture at sigma 0, and ComfyUI's samplers end there);
for flow-matching models (x = (1 - s) x0 + s eps) every sigma is at most 1. Everything else is refused
by name with the fix: a schedule ending above 0 (what SplitSigmas' low half or denoise < 1 give
without their last part) would treat the picture as a still-noisy latent, and a repeated or rising
sigma is no sampling step.
"""
from __future__ import annotations

import torch

from ..attention.core.errors import AtelierError

SIGMAS_FIX = ("connect a scheduler node's SIGMAS (BasicScheduler, Flux2Scheduler, AlignYourStepsScheduler, ...) "
              "for the whole schedule, down to 0, or disconnect 'sigmas' to use the steps and scheduler widgets.")


def checked_sigmas(sigmas, node: str, input_name: str = "sigmas", flow_matching: bool = False) -> torch.Tensor:
    """``sigmas`` as given (same values and dtype, on the CPU) when they can drive an inversion."""
    if not isinstance(sigmas, torch.Tensor):
        raise AtelierError(node, input_name, f"got a {type(sigmas).__name__}, not a SIGMAS tensor.", SIGMAS_FIX)
    if sigmas.ndim != 1:
        raise AtelierError(node, input_name, f"expected a 1-D list of sigmas, got shape {list(sigmas.shape)}.",
                           SIGMAS_FIX)
    if sigmas.numel() < 2:
        raise AtelierError(node, input_name, f"got {sigmas.numel()} sigma(s); a schedule of one step or more "
                           "has at least 2 (start and end).", SIGMAS_FIX)
    if not sigmas.is_floating_point():
        raise AtelierError(node, input_name, f"got {sigmas.dtype} values, not floating-point sigmas.", SIGMAS_FIX)
    values = sigmas.detach().cpu()
    shown = ", ".join(f"{float(v):.4g}" for v in values[:8]) + (" ..." if len(values) > 8 else "")
    if not bool(torch.isfinite(values).all()):
        raise AtelierError(node, input_name, f"the sigmas hold NaN or infinity: [{shown}].", SIGMAS_FIX)
    steps_up = (values[1:] >= values[:-1]).nonzero()
    if len(steps_up):
        i = int(steps_up[0, 0])
        raise AtelierError(node, input_name, f"the sigmas must fall strictly step by step, but sigma {i} is "
                           f"{float(values[i]):.6g} and sigma {i + 1} is {float(values[i + 1]):.6g}: [{shown}].",
                           SIGMAS_FIX)
    if float(values[-1]) != 0.0:
        raise AtelierError(node, input_name, f"the last sigma is {float(values[-1]):.6g}, not 0: the inversion "
                           "starts from your latent as the clean picture at sigma 0.", SIGMAS_FIX)
    if flow_matching and float(values[0]) > 1.0:
        raise AtelierError(node, input_name, f"the first sigma is {float(values[0]):.6g}, but a flow-matching "
                           "model's sigmas lie in [0, 1] (x = (1 - s) x0 + s noise).",
                           "use a scheduler node made for this model (its MODEL input connected), "
                           "e.g. BasicScheduler or Flux2Scheduler.")
    return values
