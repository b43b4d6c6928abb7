"""GroupNorm sharing (StyleAligned): generated rows are normalised with statistics taken over their
own activations joined with the reference row's, GN([x_i, x_r])[:, :, :, :W]; the reference row is
normalised alone, so it is unchanged.

ResBlocks receive no transformer_options, so the shared norm reads the evaluation in progress from
:data:`dispatcher.CURRENT_OPTIONS`. It is installed as a ModelPatcher object patch on the clone: a
shallow copy of the model's own GroupNorm (same parameters, LoRA-patched weights included) whose class
adds the sharing. Removing the node removes the object patch; the original module is never modified.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .controls import AttentionControl
from .dispatcher import CURRENT_OPTIONS, PACK_KEY, RUN_KEY
from .rows import chunk_layout
from .schedule import Window


@dataclass(frozen=True)
class GroupNormShareControl(AttentionControl):
    """Marks GroupNorm sharing as active on the stack (no attention slot)."""

    window: Window = Window()
    slot: str = "norm"

    def prepare_norm_input(self, x, layout):
        return x

    def group_norm(self, norm_forward, x, layout):
        return shared_group_norm(norm_forward, x, layout)


def shared_group_norm(norm_forward, x: torch.Tensor, layout) -> torch.Tensor:
    """GroupNorm of each generated row over its activations joined (along width) with row 0's."""
    if layout.rows < 2:
        return norm_forward(x)
    xs = layout.split(x)  # (chunks, B, C, H, W)
    ref, gen = xs[:, :1], xs[:, 1:]
    width = x.shape[-1]
    joined = torch.cat([gen, ref.expand_as(gen)], dim=-1).flatten(0, 1)
    out_gen = norm_forward(joined)[..., :width]
    out_ref = norm_forward(ref.flatten(0, 1))
    out = torch.cat([out_ref.reshape(layout.chunks, 1, *x.shape[1:]),
                     out_gen.reshape(layout.chunks, layout.rows - 1, *x.shape[1:])], dim=1)
    return out.flatten(0, 1)


def _active_norm_controls(options) -> list:
    """Active controls of the "norm" slot; each has ``group_norm(norm_forward, x, layout)``."""
    run = options.get(RUN_KEY) if options else None
    if run is None:
        return []
    return [c for c in options.get(PACK_KEY, ()) if c.slot == "norm" and c.active_at(run)]


def _run_norm_control(control, norm_forward, layout, x):
    # phase 2, chained: group_norm(norm_forward, x, layout) may split the batch (sharing does)
    return control.group_norm(norm_forward, x, layout)


class _SharedNormMixin:
    atelier_shared = True

    def forward(self, x):
        options = CURRENT_OPTIONS.get()
        controls = _active_norm_controls(options) if x.ndim >= 3 else []
        if not controls:
            return super().forward(x)
        layout = chunk_layout(x.shape[0], options.get("cond_or_uncond"))
        for control in controls:  # phase 1 on the whole batch, as in the attention dispatcher
            x = control.prepare_norm_input(x, layout)
        norm_forward = super().forward
        for control in reversed(controls):  # stack order, like the attention chain
            norm_forward = functools.partial(_run_norm_control, control, norm_forward, layout)
        return norm_forward(x)


_classes: dict = {}


def sharing_copy(norm: torch.nn.GroupNorm) -> torch.nn.Module:
    """A shallow copy of ``norm`` (sharing its parameter dict) whose forward shares statistics."""
    base = type(norm)
    cls = _classes.get(base)
    if cls is None:
        cls = type(f"Shared{base.__name__}", (_SharedNormMixin, base), {})
        _classes[base] = cls
    shared = cls.__new__(cls)
    shared.__dict__.update(norm.__dict__)
    return shared


def install_group_norm_sharing(model):
    """Object-patch every GroupNorm of a (cloned) model's UNet with a sharing copy."""
    diffusion_model = model.get_model_object("diffusion_model")
    for name, module in diffusion_model.named_modules():
        if isinstance(module, torch.nn.GroupNorm) and not getattr(module, "atelier_shared", False):
            model.add_object_patch(f"diffusion_model.{name}", sharing_copy(module))
