"""One attention replace per attention layer, running the model's control stack.

Nodes never write ``patches_replace`` themselves. They :func:`attach` controls: a clone of the model with
the controls appended to a tuple kept under ``PACK_KEY`` in ``model_options["transformer_options"]``
and the pack's single keyed APPLY_MODEL wrapper on it. On every model evaluation that wrapper installs,
in the per-call copy of ``transformer_options`` only, one :class:`Dispatcher` for each (slot, layer)
that some active control selects (UNets), or one :class:`~.dit_override.DiTOverride` (diffusion
transformers). Whatever replace or override was already there (another pack's, in either graph order)
becomes the chain's base attention, so it keeps running. Layers no control selects are left exactly as
they were, so neutral settings reproduce vanilla output bit for bit.
"""
from __future__ import annotations

import functools
import logging

from .. import models
from ..core.calls import AttentionCall, RunInfo
from ..core.chain import chain, default_attention
from ..core.errors import AtelierError
from ..core.keys import CURRENT_OPTIONS, PACK_KEY, RECORD_KEY, REPLAY_KEY, RUN_KEY
from .dit_override import install_override
from .prompt_count import outer_sample_wrapper
from .separate_override import install_separate_override
from .streams import with_streams

try:  # guarded: the maths in this package imports without ComfyUI
    import comfy.patcher_extension as patcher_extension
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    patcher_extension = None

log = logging.getLogger("attention_atelier")

_warned_masked: set = set()


def layer_keys(diffusion_model) -> tuple:
    """Every attention layer key of a supported model, in execution order."""
    return models.family_of(diffusion_model).layer_keys(diffusion_model)


def attention_modules(diffusion_model, slot: str) -> dict:
    """Layer key -> that layer's ``slot`` attention module, in execution order (UNet families)."""
    family = models.family_of(diffusion_model)
    return {key: family.attention_module(diffusion_model, key, slot) for key in family.layer_keys(diffusion_model)}


def _found(model, diffusion_model) -> str:
    config = getattr(getattr(model, "model", None), "model_config", None)
    found = type(diffusion_model).__name__
    return f"{type(config).__name__} model ({found})" if config is not None else found


def require_unet(model, node: str, input_name: str = "model"):
    diffusion_model = model.get_model_object("diffusion_model")
    family = models.family_of(diffusion_model)
    if family is None or family.kind != "unet":
        raise AtelierError(node, input_name, f"this is a {_found(model, diffusion_model)}; the node supports "
                           f"{models.supported_names(kind='unet')} models.",
                           "load an SD1.5 or SDXL checkpoint, or leave this node out for this model.")
    return diffusion_model


def require_supported(model, node: str, controls=(), input_name: str = "model", features=()):
    """The diffusion model, when its family is supported and runs every one of ``controls`` (and every
    one of ``features``, e.g. "inversion")."""
    diffusion_model = model.get_model_object("diffusion_model")
    family = models.family_of(diffusion_model)
    if family is None:
        raise AtelierError(node, input_name, f"this is a {_found(model, diffusion_model)}; the node supports "
                           f"{models.supported_names()}.",
                           "load a model of a supported family, or leave this node out.")
    refused = [(c.describe(), why) for c in controls if (why := family.refusal(c.feature, diffusion_model))]
    refused += [(feature, why) for feature in features if (why := family.refusal(feature, diffusion_model))]
    if refused:
        names = "; ".join(f"{name}: {why}" for name, why in refused)
        raise AtelierError(node, input_name, f"this is a {family.name} model, which cannot run {names}.",
                           "turn that option off for this model, or use a model of another family.")
    missing = sorted({c.describe() for c in controls if not runs_on(c, family)})
    if missing:
        raise AtelierError(node, input_name, f"this is a {family.name} model; {', '.join(missing)} works on "
                           f"{models.supported_names(kind='unet')} models only so far.",
                           "turn that option off for this model, or use an SD1.5 or SDXL checkpoint.")
    return diffusion_model


def runs_on(control, family) -> bool:
    """Whether ``control`` (an instance or its class) has a path for ``family``'s kind of attention."""
    return {"unet": True, "joint": control.joint_attention, "separate": control.separate_attention}[family.kind]


def controls_of(model) -> tuple:
    return model.model_options.get("transformer_options", {}).get(PACK_KEY, ())


def attach(model, *controls, node: str):
    """A clone of ``model`` with ``controls`` appended to its stack (each control's :meth:`install` run on
    the clone). The input model is unchanged."""
    require_supported(model, node, controls)
    patched = model.clone()
    options = patched.model_options.setdefault("transformer_options", {})
    options[PACK_KEY] = tuple(options.get(PACK_KEY, ())) + tuple(controls)
    if not patched.get_wrappers(patcher_extension.WrappersMP.APPLY_MODEL, PACK_KEY):
        patched.add_wrapper_with_key(patcher_extension.WrappersMP.APPLY_MODEL, PACK_KEY, apply_model_wrapper)
        patched.add_wrapper_with_key(patcher_extension.WrappersMP.OUTER_SAMPLE, PACK_KEY, outer_sample_wrapper)
    for control in controls:
        control.install(patched)
    return patched


def _selected(selection, keys: tuple) -> frozenset:
    return _resolved(type(selection), selection.prefixes, selection.unshared_fraction, keys)


@functools.lru_cache(maxsize=256)
def _resolved(kind, prefixes: tuple, unshared_fraction: float, keys: tuple) -> frozenset:
    # keyed by plain values: the memo never holds a control's own objects past its prompt
    return kind(prefixes, unshared_fraction).resolve(list(keys))


def layer_table(controls: list, keys: tuple) -> dict:
    """Layer key -> the controls (stack order) that select it, for the layers some control selects."""
    chosen = [(c, _selected(c.layers, keys)) for c in controls]
    return {key: here for key in keys if (here := tuple(c for c, selected in chosen if key in selected))}


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
        if family.kind == "unet":
            _install_dispatchers(transformer_options, active, keys, run)
        else:
            c_crossattn, tokens = with_streams(active, run, family, x, c_crossattn, kwargs, transformer_options)
            if family.joint:
                install_override(transformer_options, family, layer_table(active, keys), run, tokens)
            else:
                slots = {slot: layer_table([c for c in active if c.slot == slot], keys) for slot in ("attn1", "attn2")}
                install_separate_override(transformer_options, family, slots, run, tokens)
    token = CURRENT_OPTIONS.set(transformer_options)
    try:
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    finally:
        CURRENT_OPTIONS.reset(token)


def _install_dispatchers(transformer_options: dict, active: list, keys: tuple, run: RunInfo):
    replaces = dict(transformer_options.get("patches_replace", {}))
    for slot in ("attn1", "attn2"):
        table = layer_table([c for c in active if c.slot == slot], keys)
        if not table:
            continue
        slot_replaces = dict(replaces.get(slot, {}))
        for key, here in table.items():
            slot_replaces[key] = Dispatcher(key, here, slot_replaces.get(key, slot_replaces.get(key[:2])), run)
        replaces[slot] = slot_replaces
    transformer_options["patches_replace"] = replaces


class Dispatcher:
    """The attention replace of one UNet layer for one model evaluation: runs controls in stack order."""

    def __init__(self, key: tuple, controls: tuple, base, run: RunInfo):
        self.key, self.controls, self.base, self.run = key, controls, base, run
        # reference-image mode's cache records / replays row 0 here (see inversion/reference_cache.py)
        self.reads_reference = any(c.reads_reference_row for c in controls)

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
        # ComfyUI's own attention itself where no other pack replaces this layer: a control can then
        # tell that what the chain below returns is plain attention (AttentionCall.is_plain)
        last = self.base_attention if self.base is not None else default_attention
        call = AttentionCall(extra_options=extra_options, key=self.key, run=self.run,
                             plain_end=default_attention if self.base is None else None)
        for control in self.controls:
            q, k, v = control.prepare(q, k, v, call)
        return chain([c.attend for c in self.controls if c.implements("attend")], last)(q, k, v, call)

    def base_attention(self, q, k, v, call: AttentionCall, mask=None):
        if mask is None and not call.head_pad:
            return self.base(q, k, v, call.extra_options)
        if self.key not in _warned_masked:  # once per layer per session, not per step
            log.warning("attention at %s is replaced by another pack; a score-shifted call (masked or with "
                        "padded heads) uses ComfyUI's attention for it instead", self.key)
            _warned_masked.add(self.key)
        return default_attention(q, k, v, call, mask)
