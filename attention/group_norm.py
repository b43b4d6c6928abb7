"""GroupNorm sharing (StyleAligned): generated rows are normalised with statistics taken over their
own activations joined with the reference row's, GN([x_i, x_r])[:, :, :, :W]; the reference row is
normalised alone, so it is unchanged.

ResBlocks receive no transformer_options, so the shared norm reads the evaluation in progress from
:data:`core.keys.CURRENT_OPTIONS`. It is installed as a ModelPatcher object patch on the clone: a
shallow copy of the model's own GroupNorm (same parameters, LoRA-patched weights included) whose class
adds the sharing. Removing the node removes the object patch; the original module is never modified.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .core.chain import chain
from .core.controls import AttentionControl
from .core.keys import CURRENT_OPTIONS, PACK_KEY, RECORD_KEY, REPLAY_KEY, RUN_KEY
from .core.rows import chunk_layout
from .core.schedule import Window


@dataclass(frozen=True)
class GroupNormShareControl(AttentionControl):
    """Marks GroupNorm sharing as active on the stack (no attention slot)."""

    window: Window = Window()
    slot: str = "norm"
    feature = "GroupNorm sharing"
    named_in_errors = "share_group_norm (a DiT has no GroupNorm)"
    reference_node = "AtelierStyleAligned"
    chains_group_norm = True

    def install(self, model):
        install_group_norm_sharing(model)

    def group_norm(self, next_norm, x, layout, reference=None):
        return shared_group_norm(next_norm, x, layout, reference)


def shared_group_norm(norm_forward, x: torch.Tensor, layout, reference=None) -> torch.Tensor:
    """GroupNorm of each generated row over its activations joined (along width) with row 0's.

    When ``norm_forward`` is a GroupNorm module's own forward (:class:`ModuleNorm`) the joint
    statistics come from one pass over the batch, with no joined copy: for equal-sized halves the
    joint mean is the midpoint of the two means and the joint (biased) variance the mean of the two
    variances plus the squared half-difference of the means. Row 0 is normalised alone, as without
    sharing.

    ``reference`` (reference_cache.NormStats of a row 0 left out of the batch): every row of x is a
    generated row and row 0's statistics come from it.
    """
    if reference is None and layout.rows < 2:
        return norm_forward(x)
    norm = getattr(norm_forward, "module", None)
    if norm is not None and x.ndim >= 3 and x.shape[1] == norm.num_channels:
        params = _plain_parameters(norm, x)
        if params is not None:
            out = joint_group_norm(x, layout, norm.num_groups, *params, norm.eps,
                                   reference=None if reference is None else reference.group)
            if reference is None:  # row 0 by the module itself: bit for bit what it gives without sharing
                layout.split(out).select(1, 0).copy_(norm_forward(layout.split(x).select(1, 0)))
            return out
    xs = layout.split(x)  # (chunks, B, C, H, W)
    if reference is not None:  # a stand-in row 0 with the recorded group statistics
        joined = torch.cat([xs, stand_in_row(reference, xs).expand_as(xs)], dim=-1).flatten(0, 1)
        return norm_forward(joined)[..., :x.shape[-1]]
    ref, gen = xs[:, :1], xs[:, 1:]
    width = x.shape[-1]
    joined = torch.cat([gen, ref.expand_as(gen)], dim=-1).flatten(0, 1)
    out_gen = norm_forward(joined)[..., :width]
    out_ref = norm_forward(ref.flatten(0, 1))
    out = torch.cat([out_ref.reshape(layout.chunks, 1, *x.shape[1:]),
                     out_gen.reshape(layout.chunks, layout.rows - 1, *x.shape[1:])], dim=1)
    return out.flatten(0, 1)


def joint_group_norm(x: torch.Tensor, layout, groups: int, weight, bias, eps: float,
                     reference=None) -> torch.Tensor:
    """:func:`shared_group_norm`'s maths for a plain GroupNorm (weight, bias: (C,) or None).
    ``reference``: row 0's (mean, biased variance) per group, (chunks, 1, G, 1), for an x of generated
    rows only; else row 0 of x is the reference."""
    xg = x.view(layout.chunks, layout.rows, groups, -1)
    stats_of = xg if xg.dtype in (torch.float32, torch.float64) else xg.float()
    var, mean = torch.var_mean(stats_of, dim=-1, correction=0, keepdim=True)  # (chunks, B, G, 1)
    if reference is None:
        ref_mean, ref_var = mean.narrow(1, 0, 1), var.narrow(1, 0, 1)  # row 0 itself: its own statistics
    else:
        ref_mean, ref_var = (t.to(mean) for t in reference)
    half_gap = (mean - ref_mean).mul_(0.5)
    joint_mean = torch.lerp(mean, ref_mean, 0.5)  # row 0: exactly its own mean and variance
    rstd = torch.lerp(var, ref_var, 0.5).addcmul_(half_gap, half_gap).add_(eps).rsqrt_()
    if weight is None:
        scale = rstd.unsqueeze(-1)  # (chunks, B, G, 1, 1)
    else:
        scale = rstd.unsqueeze(-1) * weight.view(groups, -1, 1)  # (chunks, B, G, C/G, 1)
    shift = torch.mul(joint_mean.unsqueeze(-1), scale).neg_() if bias is None else \
        torch.addcmul(bias.view(groups, -1, 1), joint_mean.unsqueeze(-1), scale, value=-1.0)
    channels = lambda t: t.view(*xg.shape[:3], x.shape[1] // groups, -1)  # noqa: E731
    if scale.requires_grad:  # parameters with autograd on (outside ComfyUI's inference): no out=
        return torch.addcmul(shift, channels(x), scale).to(x.dtype).view(x.shape)
    out = torch.empty_like(x)
    torch.addcmul(shift, channels(x), scale, out=channels(out))
    return out


def stand_in_row(reference, xs: torch.Tensor) -> torch.Tensor:
    """A row (chunks, 1, C, ...) whose every group has the recorded mean and biased variance (up to
    rounding): mean +- std on alternate elements (for an odd group size one element at the mean and the
    others scaled). For GroupNorms whose forward patches weights at call time, where the joined copy is
    normalised by the module itself."""
    mean, var = reference.group  # (chunks, 1, G, 1)
    groups = mean.shape[2]
    n = xs[0, 0].numel() // groups
    pattern = torch.ones(n, dtype=torch.float64)
    pattern[1::2] = -1.0
    if n % 2:
        pattern[-1] = 0.0
        pattern *= (n / (n - 1)) ** 0.5 if n > 1 else 0.0
    row = mean.double() + var.double().sqrt() * pattern.to(mean.device)  # (chunks, 1, G, n)
    return row.reshape(xs.shape[0], 1, *xs.shape[2:]).to(xs.dtype)


def _plain_parameters(norm, x):
    """(weight, bias) of a GroupNorm as its forward would use them on x, or None where the forward
    does more than torch's GroupNorm (ComfyUI weight patches run at call time): then the caller
    runs the module itself."""
    if getattr(norm, "weight_function", None) or getattr(norm, "bias_function", None):
        return None
    params = []
    for p in (norm.weight, norm.bias):
        if p is not None and (p.device != x.device or p.dtype != x.dtype):
            if not getattr(norm, "comfy_cast_weights", False):
                return None  # torch's forward would fail or promote: leave it to the module
            p = p.to(device=x.device, dtype=x.dtype)  # what ComfyUI's cast-weights forward does
        params.append(p)
    return params


class ModuleNorm:
    """A GroupNorm module's own forward, with the module at hand for :func:`shared_group_norm`."""

    def __init__(self, module, forward):
        self.module, self.forward = module, forward

    def __call__(self, x):
        return self.forward(x)


def _active_norm_controls(options) -> list:
    """Active controls of the "norm" slot (``prepare_norm`` and, chained, ``group_norm``)."""
    run = options.get(RUN_KEY) if options else None
    if run is None:
        return []
    return [c for c in options.get(PACK_KEY, ()) if c.slot == "norm" and c.active_at(run)]


class _SharedNormMixin:
    atelier_shared = True

    def forward(self, x):
        options = CURRENT_OPTIONS.get()
        controls = _active_norm_controls(options) if x.ndim >= 3 else []
        if not controls:
            return super().forward(x)
        layout = chunk_layout(x.shape[0], options.get("cond_or_uncond"))
        # reference-image mode's cache: row 0's statistics recorded here, or read from it (row 0 absent)
        reference, replay, recorder = None, options.get(REPLAY_KEY), options.get(RECORD_KEY)
        if replay is not None:
            reference = replay.next_norm(x, layout)
        elif recorder is not None:
            recorder.record_norm(x, layout, self.num_groups)
        for control in controls:  # phase 1 on the whole batch, as in the attention dispatcher
            x = control.prepare_norm(x, layout, reference)
        # phase 2, chained in stack order like the attention chain (sharing may split the batch)
        links = [functools.partial(c.group_norm, layout=layout, reference=reference)
                 for c in controls if c.chains_group_norm]
        return chain(links, ModuleNorm(self, super().forward))(x)


_classes: dict = {}


def sharing_copy(norm: torch.nn.GroupNorm) -> torch.nn.Module:
    """A shallow copy of ``norm`` (sharing its parameter dict) whose forward shares statistics; of a
    sharing copy too (same class, same parameters)."""
    base = getattr(type(norm), "atelier_base", type(norm))
    cls = _classes.get(base)
    if cls is None:
        cls = type(f"Shared{base.__name__}", (_SharedNormMixin, base), {"atelier_base": base})
        _classes[base] = cls
    shared = cls.__new__(cls)
    shared.__dict__.update(norm.__dict__)
    return shared


def install_group_norm_sharing(model):
    """Object-patch every GroupNorm of a (cloned) model's UNet with a sharing copy. The UNet's modules
    are whatever the model loaded last put there (another patched clone's sharing copies included), so
    each norm is taken from this model's own view (its object patches, else the original)."""
    diffusion_model = model.get_model_object("diffusion_model")
    for name, module in diffusion_model.named_modules():
        key = f"diffusion_model.{name}"
        if isinstance(module, torch.nn.GroupNorm) and not getattr(model.object_patches.get(key), "atelier_shared",
                                                                  False):
            model.add_object_patch(key, sharing_copy(model.get_model_object(key)))
