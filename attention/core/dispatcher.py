"""One attention replace per attention layer, running the model's control stack.

Nodes never write ``patches_replace`` themselves. They append controls to a tuple kept under
:data:`PACK_KEY` in ``model_options["transformer_options"]`` and make sure the pack's single keyed
APPLY_MODEL wrapper is on the model. On every model evaluation that wrapper installs, in the
per-call copy of ``transformer_options`` only, one :class:`Dispatcher` for each (slot, layer) that
some active control selects. Whatever replace was already there (another pack's, in either graph
order) becomes the dispatcher's base attention, so it keeps running. Layers no control selects are
left exactly as they were, so neutral settings reproduce vanilla output bit for bit.
"""
from __future__ import annotations

import contextvars
import functools
import logging

from .. import models
from .controls import AttentionCall, RunInfo
from .errors import AtelierError
from .prompt_count import outer_sample_wrapper
from .reference_keys import RECORD_KEY, REPLAY_KEY

try:  # guarded: the maths in this package imports without ComfyUI
    import comfy.ldm.modules.attention as comfy_attention
    import comfy.patcher_extension as patcher_extension
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    comfy_attention = patcher_extension = None

log = logging.getLogger("attention_atelier")

PACK_KEY = "attention_atelier"
RUN_KEY = "attention_atelier.run"

# transformer_options of the model evaluation in progress (read by GroupNorm sharing, whose
# ResBlocks receive no transformer_options). Set and reset around each evaluation.
CURRENT_OPTIONS: contextvars.ContextVar = contextvars.ContextVar("attention_atelier_options", default=None)

_warned_masked: set = set()


def layer_keys(diffusion_model) -> tuple:
    """Every attention layer key of a supported model, in execution order."""
    return models.family_of(diffusion_model).layer_keys(diffusion_model)


def _found(model, diffusion_model) -> str:
    config = getattr(getattr(model, "model", None), "model_config", None)
    found = type(diffusion_model).__name__
    return f"{type(config).__name__} model ({found})" if config is not None else found


def require_unet(model, node: str, input_name: str = "model"):
    diffusion_model = model.get_model_object("diffusion_model")
    family = models.family_of(diffusion_model)
    if family is None or family.joint:
        raise AtelierError(node, input_name, f"this is a {_found(model, diffusion_model)}; the node supports "
                           f"{models.supported_names(joint=False)} models.",
                           "load an SD1.5 or SDXL checkpoint, or leave this node out for this model.")
    return diffusion_model


def require_supported(model, node: str, controls=(), input_name: str = "model"):
    """The diffusion model, when its family is supported and runs every one of ``controls``."""
    diffusion_model = model.get_model_object("diffusion_model")
    family = models.family_of(diffusion_model)
    if family is None:
        raise AtelierError(node, input_name, f"this is a {_found(model, diffusion_model)}; the node supports "
                           f"{models.supported_names()}.",
                           "load a model of a supported family, or leave this node out.")
    if not family.joint:
        return diffusion_model
    from .joint_dispatcher import describe, unsupported_controls
    refused = [(c, why) for c in controls if (why := family.refusal(c))]
    if refused:
        names = "; ".join(f"{describe(c)}: {why}" for c, why in refused)
        raise AtelierError(node, input_name, f"this is a {family.name} model, which cannot run {names}.",
                           "turn that option off for this model, or use a model of another family.")
    missing = unsupported_controls(controls)
    if missing:
        names = ", ".join(sorted({describe(c) for c in missing}))
        raise AtelierError(node, input_name, f"this is a {family.name} model; {names} works on "
                           f"{models.supported_names(joint=False)} models only so far.",
                           "turn that option off for this model, or use an SD1.5 or SDXL checkpoint.")
    return diffusion_model


def controls_of(model) -> tuple:
    return model.model_options.get("transformer_options", {}).get(PACK_KEY, ())


def attach(model, *controls, node: str):
    """A clone of ``model`` with ``controls`` appended to its stack. The input model is unchanged."""
    require_supported(model, node, controls)
    patched = model.clone()
    options = patched.model_options.setdefault("transformer_options", {})
    options[PACK_KEY] = tuple(options.get(PACK_KEY, ())) + tuple(controls)
    if not patched.get_wrappers(patcher_extension.WrappersMP.APPLY_MODEL, PACK_KEY):
        patched.add_wrapper_with_key(patcher_extension.WrappersMP.APPLY_MODEL, PACK_KEY, apply_model_wrapper)
        patched.add_wrapper_with_key(patcher_extension.WrappersMP.OUTER_SAMPLE, PACK_KEY, outer_sample_wrapper)
    return patched


def _selected(selection, keys: tuple) -> frozenset:
    return _resolved(type(selection), selection.prefixes, selection.unshared_fraction, keys)


@functools.lru_cache(maxsize=256)
def _resolved(kind, prefixes: tuple, unshared_fraction: float, keys: tuple) -> frozenset:
    # keyed by plain values: the memo never holds a control's own objects past its prompt
    return kind(prefixes, unshared_fraction).resolve(list(keys))


def apply_model_wrapper(executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
    controls = transformer_options.get(PACK_KEY, ())
    if controls:
        base_model = executor.class_obj
        diffusion_model = base_model.diffusion_model
        family = models.family_of(diffusion_model)
        keys = family.layer_keys(diffusion_model)
        run = RunInfo(model_sampling=base_model.model_sampling, sigma=float(t.max()), layer_keys=keys,
                      sample_sigmas=transformer_options.get("sample_sigmas"),
                      diffusion_model=diffusion_model, family=family)
        transformer_options[RUN_KEY] = run
        active = [c for c in controls if c.active_at(run)]
        if family.joint:
            c_crossattn = _install_joint_override(transformer_options, family, active, keys, run, x,
                                                  c_crossattn, kwargs)
        else:
            _install_dispatchers(transformer_options, active, keys, run)
    token = CURRENT_OPTIONS.set(transformer_options)
    try:
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    finally:
        CURRENT_OPTIONS.reset(token)


def _install_joint_override(transformer_options: dict, family, active: list, keys: tuple, run: RunInfo, x,
                            context, model_kwargs: dict):
    """Install the joint-attention override; returns the context (with any appended text streams)."""
    from .joint_dispatcher import install_override, with_streams
    context, tokens = with_streams(active, run, family, x, context, model_kwargs, transformer_options)
    chosen = [(c, _selected(c.layers, keys)) for c in active]
    table = {key: here for key in keys if (here := tuple(c for c, selected in chosen if key in selected))}
    install_override(transformer_options, family, table, run, tokens)
    return context


def _install_dispatchers(transformer_options: dict, active: list, keys: tuple, run: RunInfo):
    replaces = dict(transformer_options.get("patches_replace", {}))
    for slot in ("attn1", "attn2"):
        in_slot = [c for c in active if c.slot == slot]
        if not in_slot:
            continue
        table = dict(replaces.get(slot, {}))
        chosen = [(c, _selected(c.layers, keys)) for c in in_slot]
        for key in keys:
            here = tuple(c for c, selected in chosen if key in selected)
            if here:
                base = table.get(key, table.get(key[:2]))
                table[key] = Dispatcher(key, here, base, run)
        replaces[slot] = table
    transformer_options["patches_replace"] = replaces


class Dispatcher:
    """The attention replace of one layer for one model evaluation: runs controls in stack order."""

    def __init__(self, key: tuple, controls: tuple, base, run: RunInfo):
        self.key, self.controls, self.base, self.run = key, controls, base, run
        # reference-image mode's cache records / replays row 0 here (see inversion/reference_cache.py)
        self.reads_reference = any(getattr(c, "reads_reference_row", True) for c in controls)

    def __call__(self, q, k, v, extra_options):
        if self.reads_reference:
            layer = (self.controls[0].slot, self.key)
            replay = extra_options.get(REPLAY_KEY)
            if replay is not None:
                return replay.attend(layer, q, k, v, extra_options, self.run_controls)
            recorder = extra_options.get(RECORD_KEY)
            if recorder is not None:
                recorder.record_attention(layer, q, k, v, extra_options)
        return self.run_controls(q, k, v, extra_options)

    def run_controls(self, q, k, v, extra_options):
        call = AttentionCall(extra_options=extra_options, key=self.key, run=self.run)
        for control in self.controls:
            q, k, v = control.prepare(q, k, v, call)
        # ComfyUI's own attention itself where no other pack replaces this layer: a control can then
        # tell that what the chain below returns is plain attention (see is_plain_attention)
        attention = self.base_attention if self.base is not None else default_attention
        for control in reversed(self.controls):
            attention = functools.partial(_run_control, control, attention)
        return attention(q, k, v, call)

    def base_attention(self, q, k, v, call: AttentionCall, mask=None):
        if self.base is not None:
            if mask is None and not call.head_pad:
                return self.base(q, k, v, call.extra_options)
            if self.key not in _warned_masked:  # once per layer per session, not per step
                log.warning("attention at %s is replaced by another pack; a score-shifted call (masked or with "
                            "padded heads) uses ComfyUI's attention for it instead", self.key)
                _warned_masked.add(self.key)
        return default_attention(q, k, v, call, mask)


def _run_control(control, next_attention, q, k, v, call, mask=None):
    return control.attend(q, k, v, call, next_attention, mask=mask)


def is_plain_attention(next_attention) -> bool:
    """Whether a control's ``next_attention`` is ComfyUI's attention itself (no control and no other
    pack's replace below it)."""
    return next_attention is default_attention


def default_attention(q, k, v, call: AttentionCall, mask=None):
    """ComfyUI's own attention, called exactly as CrossAttention.forward calls it."""
    options = call.extra_options
    return comfy_attention.optimized_attention(q, k, v, options["n_heads"], mask=mask,
                                               attn_precision=options.get("attn_precision"),
                                               transformer_options=options)
