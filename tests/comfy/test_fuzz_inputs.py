"""Property-based tier: hypothesis drives the inputs of every Atelier node in-process (real ComfyUI,
tiny SD1.5). Whatever an input receives, the node either returns or raises an AtelierError naming
itself and the input; and a model patched from in-range widget values (the extremes included) samples
to finite latents.

Input classes tried (per input, by its schema type): numbers of every size and sign, NaN, +-inf,
integers for floats and floats for integers, booleans, null, text (any Unicode, lone surrogates
included), lists and objects; for combos, every option and arbitrary text or numbers; for links,
the right object or any of the JSON values above. Hypothesis runs derandomized (a fixed seed), so a
failure reproduces; the examples it shrinks to are printed."""
import collections

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.comfy.node_inputs import LinkedValues, io_type, valid_inputs

SIZE = 64
OUTCOMES: collections.Counter = collections.Counter()

FAST = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
SAMPLED = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))

ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
JSON_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 20, 10 ** 20),
                      st.floats(allow_nan=True, allow_infinity=True), ANY_TEXT,
                      st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                 max_size=2))
CHEAP = {"AtelierInvert": {"steps": 1, "refine_iterations": 0}}
NODE_IDS = ("AtelierStyleAligned", "AtelierBatchPrompts", "AtelierInvert", "AtelierAestheticMix",
            "AtelierSplitPrompt", "AtelierIPAdapterLoader", "AtelierImagePrompt", "AtelierArtBN",
            "AtelierRegion", "AtelierBoxRegions", "AtelierRegionalAttention", "AtelierInvertedNoise")
PATCH_NODES = ("AtelierStyleAligned", "AtelierArtBN", "AtelierAestheticMix", "AtelierImagePrompt",
               "AtelierRegionalAttention")


def value_strategy(spec, valid):
    """Values for one input: mostly plausible for its type, often hostile."""
    kind = io_type(spec)
    options = getattr(spec, "options", None)
    if options is not None:
        return st.one_of(st.sampled_from(list(options)), JSON_JUNK)
    if kind == "FLOAT":
        low, high = getattr(spec, "min", None) or -1e6, getattr(spec, "max", None) or 1e6
        return st.one_of(st.floats(low, high), st.floats(allow_nan=True, allow_infinity=True), JSON_JUNK)
    if kind == "INT":
        low, high = getattr(spec, "min", None) or 0, min(getattr(spec, "max", None) or 100, 3)
        return st.one_of(st.integers(low, high), st.floats(allow_nan=True), JSON_JUNK)
    if kind == "BOOLEAN":
        return st.one_of(st.booleans(), JSON_JUNK)
    if kind == "STRING":
        return st.one_of(st.just(valid), ANY_TEXT, st.sampled_from(["all", "input.4", "output.3.0, middle",
                                                                    "input.\u00b2", "1, 0.5", "[[[[", "{}"]),
                         JSON_JUNK)
    return st.one_of(st.just(valid), JSON_JUNK)


def in_range_strategy(spec, valid):
    """Values ComfyUI's validation lets through for a widget: its options, numbers from min to max
    (the extremes included), either boolean."""
    options = getattr(spec, "options", None)
    if options is not None:
        return st.sampled_from(list(options))
    if io_type(spec) == "FLOAT":
        return st.one_of(st.sampled_from([spec.min, spec.max]), st.floats(spec.min, spec.max))
    if io_type(spec) == "BOOLEAN":
        return st.booleans()
    return st.just(valid)


@st.composite
def mutated_inputs(draw, schema_inputs, valid: dict, values=value_strategy):
    kwargs = dict(valid)
    mutate = draw(st.sets(st.sampled_from([s.id for s in schema_inputs]), min_size=1, max_size=3))
    for spec in schema_inputs:
        if spec.id in mutate:
            kwargs[spec.id] = draw(values(spec, valid.get(spec.id)))
    return kwargs


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    """Prints the tallies of this module's runs (for the closing note: accepted / refused)."""
    yield
    print(f"\nfuzz in-process outcomes: {dict(OUTCOMES)}")


@pytest.fixture(scope="module")
def linked(comfy):
    comfy.load_nodes()
    return LinkedValues(comfy)


def run_node(comfy, node_id, kwargs):
    """'accepted', or 'AtelierError' (checked to name the node and a real input); anything else fails."""
    node = comfy.node_class(node_id)
    inputs = {s.id for s in node.define_schema().inputs}
    try:
        output = node.execute(**kwargs)
    except Exception as e:  # noqa: BLE001 - the point is to see which kind
        if type(e).__name__ != "AtelierError":
            OUTCOMES["raw exception"] += 1
            raise AssertionError(f"{node_id} raised {type(e).__name__}: {e}\ninputs: {kwargs!r}") from e
        assert str(e).startswith(f"{node_id}: input '"), str(e)
        assert e.input_name.split(" ")[0] in inputs, str(e)
        OUTCOMES["AtelierError"] += 1
        return "refused", None
    OUTCOMES["accepted"] += 1
    return "accepted", output


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_any_input_gives_a_result_or_an_atelier_error(comfy, linked, node_id):
    schema_inputs = list(comfy.node_class(node_id).define_schema().inputs)
    valid = valid_inputs(comfy, linked, node_id, optional=True) | CHEAP.get(node_id, {})

    @FAST
    @given(mutated_inputs(schema_inputs, valid))
    def check(kwargs):
        if node_id == "AtelierInvert" and isinstance(kwargs.get("steps"), int) and kwargs["steps"] > 3:
            kwargs["steps"] = 3  # bounded cost; the type and range checks are what is under test
        run_node(comfy, node_id, kwargs)

    check()


@pytest.mark.parametrize("node_id", PATCH_NODES)
def test_models_patched_from_accepted_inputs_sample_finite_latents(comfy, linked, node_id):
    schema_inputs = [s for s in comfy.node_class(node_id).define_schema().inputs
                     if io_type(s) in ("FLOAT", "BOOLEAN") or getattr(s, "options", None) is not None]
    valid = valid_inputs(comfy, linked, node_id)
    clip = comfy.sd15.clip
    positive, negative = comfy.encode(clip, "a house"), comfy.encode(clip, "")

    @SAMPLED
    @given(mutated_inputs(schema_inputs, valid, in_range_strategy))
    def check(kwargs):
        outcome, output = run_node(comfy, node_id, kwargs)
        if outcome == "accepted":
            latent = comfy.sample(output.result[0], positive, negative, steps=1, cfg=5.0, width=SIZE,
                                  height=SIZE, batch=2)
            assert torch.isfinite(latent).all(), f"{node_id}: non-finite latent from {kwargs!r}"
            OUTCOMES["sampled finite"] += 1

    check()
