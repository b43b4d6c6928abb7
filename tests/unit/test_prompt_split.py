"""AtelierSplitPrompt's rule: a phrase of only vocabulary terms and filler is aesthetic, the rest content."""
import pytest

from tests.pack import pack_module

ps = pack_module("attention.prompt_split")
BUILTIN = ps.parse_vocabulary("")


@pytest.mark.parametrize("prompt,content,aesthetic", [
    ("", "", ""),
    ("   \n  ", "", ""),
    (",,, ;; |", "", ""),
    ("a fox in a meadow", "a fox in a meadow", ""),
    ("masterpiece, best quality, 8k", "", "masterpiece, best quality, 8k"),
    ("a fox, golden hour, soft light, oil painting, highly detailed",
     "a fox", "golden hour, soft light, oil painting, highly detailed"),
    # a phrase mixing content and style words stays content (the object's words must reach the prompt)
    ("a cat with soft lighting, bokeh", "a cat with soft lighting", "bokeh"),
    ("a red car at sunset. Soft light. Film grain.", "a red car at sunset", "Soft light, Film grain"),
    # weighted groups stay whole and keep their syntax
    ("(golden hour, soft light:1.2), a fox, [vibrant colors]", "a fox", "(golden hour, soft light:1.2), [vibrant colors]"),
    ("in the style of impressionism; 85mm lens | f/1.8", "", "in the style of impressionism, 85mm lens, f/1.8"),
    ("A CASTLE\nDRAMATIC LIGHTING\nrule of thirds", "A CASTLE", "DRAMATIC LIGHTING, rule of thirds"),
    ("bird's eye view of a city, teal and orange", "bird's eye view of a city", "teal and orange"),
    ("un café à Paris, lumière douce, 水彩画, bokeh", "un café à Paris, lumière douce, 水彩画", "bokeh"),
    ("very very detailed", "", "very very detailed"),
    ("style, the, with", "style, the, with", ""),  # filler alone is not an aesthetic
])
def test_split_table(prompt, content, aesthetic):
    assert ps.split_prompt(prompt, BUILTIN) == (content, aesthetic)


def test_user_terms_extend_and_remove():
    vocabulary = ps.parse_vocabulary("lumière douce\n水彩画, -bokeh")
    assert ps.split_prompt("un café, lumière douce, 水彩画, bokeh", vocabulary) == ("un café, bokeh",
                                                                                 "lumière douce, 水彩画")


def test_only_user_terms_when_builtin_is_off():
    vocabulary = ps.parse_vocabulary("crimson haze", use_builtin=False)
    assert ps.split_prompt("a tower, crimson haze, golden hour", vocabulary) == ("a tower, golden hour", "crimson haze")
    assert ps.split_prompt("golden hour", ps.parse_vocabulary("", use_builtin=False)) == ("golden hour", "")


def test_longest_term_wins():
    # 'soft lighting' is a term; matching 'soft light' first would leave 'ing' behind
    assert ps.is_aesthetic("soft lighting", BUILTIN)


def test_every_builtin_term_is_aesthetic_on_its_own():
    for group in ps.AESTHETIC_VOCABULARY.values():
        for term in group:
            assert ps.is_aesthetic(term, BUILTIN), term


def test_phrases_are_never_cut_inside_brackets_or_decimals():
    assert ps.split_phrases("(a, b:1.5), c. d") == ["(a, b:1.5)", "c", "d"]
