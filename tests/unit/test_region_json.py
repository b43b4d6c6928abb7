"""AtelierBoxRegions' JSON is read strictly: every number bounded, every key known, deep nesting and
huge inputs refused, and each error names the box and the field (``box 2: weight ...``)."""
import json

import pytest

from tests.pack import pack_module

region_json = pack_module("attention.region_json")
errors = pack_module("attention.core.errors")

NODE = "AtelierBoxRegions"
GOOD = {"x": 0.1, "y": 0.2, "w": 0.4, "h": 0.5, "prompt": "a red house"}


def parse(data):
    text = data if isinstance(data, str) else json.dumps(data)
    return region_json.parse_region_json(text, NODE)


def refused(data) -> str:
    with pytest.raises(errors.AtelierError) as caught:
        parse(data)
    text = str(caught.value)
    assert text.startswith(f"{NODE}: input 'regions_json': ") and "Fix: " in text, text
    return text


def two_boxes(**second):
    return {"width": 512, "height": 512, "boxes": [GOOD, {**GOOD, **second}]}


def test_a_full_box_reads_as_written():
    (box,) = parse({"boxes": [{**GOOD, "weight": 0.9, "curve": "cosine", "end_weight": 0.1, "switch_at": 0.3}]})
    assert box.prompt == "a red house" and box.rect == (0.1, 0.2, 0.4, 0.5)
    assert (box.curve.kind, box.curve.start, box.curve.end, box.curve.switch_at) == ("cosine", 0.9, 0.1, 0.3)


def test_defaults_and_list_weights_as_text_or_list():
    (box,) = parse([GOOD])
    assert (box.curve.kind, box.curve.start, box.curve.end) == ("constant", 1.0, 1.0)
    for weights in ("1, 0.5; 0", [1, 0.5, 0]):
        (box,) = parse([{**GOOD, "curve": "list", "weights": weights}])
        assert box.curve.values == (1.0, 0.5, 0.0)


@pytest.mark.parametrize("field,value", [
    ("weight", None), ("weight", 1e300), ("weight", -3), ("weight", True), ("weight", "1"),
    ("end_weight", None), ("end_weight", 5.01), ("switch_at", 1.5), ("switch_at", None),
    ("x", None), ("x", -0.1), ("w", 10 ** 400), ("h", "0.5"), ("h", [0.5]),
])
def test_a_bad_number_is_named_with_its_box_and_field(field, value):
    text = refused(two_boxes(**{field: value}))
    assert f"box 2: {field} " in text, text


def test_non_finite_json_literals_are_refused():
    text = refused('{"boxes": [{"x": NaN, "y": 0, "w": 0.5, "h": 0.5, "prompt": "a"}]}')
    assert "box 1: x NaN is not a number from 0 to 1" in text
    assert "box 1: weight Infinity" in refused('[{"x": 0, "y": 0, "w": 0.5, "h": 0.5, "prompt": "a", '
                                               '"weight": Infinity}]')


@pytest.mark.parametrize("weights,match", [
    ("1, nan", "weights[2] NaN"), ([1, None], "weights[2] null"), ("1, 1e300", "weights[2] 1e+300"),
    ("", "no weights"), (7, "neither a list nor a text"), (["x"], "weights[1] null"),
])
def test_list_weights_are_bounded_and_named(weights, match):
    assert match in refused(two_boxes(curve="list", weights=weights))


def test_deep_nesting_is_an_error_not_a_recursion_error():
    assert "nested too deeply" in refused("[" * 100_000 + "]" * 100_000)


def test_counts_and_sizes_are_bounded():
    assert "at most 64" in refused({"boxes": [GOOD] * 65})
    assert "at most 10000" in refused(two_boxes(curve="list", weights=[0.5] * 10_001))
    assert "width 1e+20" in refused({"width": 1e20, "boxes": [GOOD]})
    assert "characters" in refused([{**GOOD, "prompt": "a" * 10_001}])


def test_unknown_keys_and_curves_are_refused():
    assert 'box 2: has unknown key(s) "wieght"' in refused(two_boxes(wieght=1.0))
    assert 'unknown key(s) "box"' in refused({"box": []})
    assert 'box 2: curve "wavy" is not a weight curve' in refused(two_boxes(curve="wavy"))


def test_lone_surrogate_in_a_prompt_is_refused_by_name():
    assert "box 2: character 3 of its prompt is a lone surrogate (U+D800)" in refused(two_boxes(prompt="ab\ud800"))


# ---- keyframes: a box that moves over a clip ------------------------------------------------------------
def test_keyframes_hold_the_box_at_0_and_each_keyframe_at_its_place():
    text = json.dumps({"boxes": [{"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4, "prompt": "a boat",
                                  "keyframes": [{"at": 1.0, "x": 0.6, "y": 0.2, "w": 0.3, "h": 0.4},
                                                {"at": 0.5, "x": 0.3, "y": 0.1, "w": 0.3, "h": 0.4}]}]})
    box, = region_json.parse_region_json(text, "Node")
    assert box.keyframes == ((0.0, (0.1, 0.2, 0.3, 0.4)), (0.5, (0.3, 0.1, 0.3, 0.4)), (1.0, (0.6, 0.2, 0.3, 0.4)))
    still, = region_json.parse_region_json(json.dumps({"boxes": [{"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4,
                                                                    "prompt": "a boat"}]}), "Node")
    assert still.keyframes == ()  # a box without keyframes stays where it is


@pytest.mark.parametrize("keyframes, match", [
    ("nope", "keyframes is not a list"),
    ([{"at": 1.5, "x": 0, "y": 0, "w": 0.5, "h": 0.5}], "box 1: keyframe 1: at 1.5 is not a number from 0 to 1"),
    ([{"at": 1, "x": 0.8, "y": 0, "w": 0.5, "h": 0.5}], "box 1: keyframe 1: the box .* reaches outside the image"),
    ([{"at": 1, "x": 0, "y": 0, "w": 0.5, "h": 0.5, "z": 1}], "keyframe 1: has unknown key"),
    ([{"at": 1, "x": 0, "y": 0, "w": 0.5, "h": 0.5}] * 2, "a second keyframe at 1"),
])
def test_bad_keyframes_are_named_with_their_box_and_keyframe(keyframes, match):
    text = json.dumps({"boxes": [{"x": 0, "y": 0, "w": 0.5, "h": 0.5, "prompt": "p", "keyframes": keyframes}]})
    with pytest.raises(errors.AtelierError, match=match):
        region_json.parse_region_json(text, "Node")


def test_the_regions_keyframe_text_reads_like_the_json():
    rect = (0.1, 0.2, 0.3, 0.4)
    assert region_json.parse_keyframe_text("", "AtelierRegion", "keyframes", rect) == ()
    assert region_json.parse_keyframe_text("1: 0.6, 0.2, 0.3, 0.4; 0.5: 0.3, 0.1, 0.3, 0.4", "AtelierRegion",
                                           "keyframes", rect) == \
        ((0.0, rect), (0.5, (0.3, 0.1, 0.3, 0.4)), (1.0, (0.6, 0.2, 0.3, 0.4)))
    for bad in ("1: 0.6, 0.2", "x: 1, 2, 3, 4", "1 0.6, 0.2, 0.3, 0.4"):
        with pytest.raises(errors.AtelierError, match="AtelierRegion: input 'keyframes': keyframe 1"):
            region_json.parse_keyframe_text(bad, "AtelierRegion", "keyframes", rect)
