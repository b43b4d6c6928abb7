"""Split one prompt into a content part and an aesthetic part (for AtelierAestheticMix).

The prompt is cut into phrases at commas, semicolons, '|', line breaks and sentence-ending periods,
never inside (), [] or {} (so weighted groups like "(golden hour, soft light:1.2)" stay whole).
A phrase is aesthetic when nothing is left of it after removing every vocabulary term (whole words,
longest terms first), filler words ("with", "very", "in the style of", ...) and prompt-weight syntax;
otherwise it is content. Each phrase keeps its original text; the parts are joined with ", ".
"""
from __future__ import annotations

import functools
import re

AESTHETIC_VOCABULARY = {
    "colour": (
        "vibrant colors", "vibrant colours", "muted colors", "muted colours", "pastel colors", "pastel colours",
        "warm tones", "cool tones", "color palette", "colour palette", "colorful", "colourful", "vibrant",
        "muted", "pastel", "monochrome", "black and white", "sepia", "desaturated", "saturated",
        "high contrast", "low contrast", "complementary colors", "teal and orange", "earth tones", "neon",
        "color grading", "colour grading",
    ),
    "lighting": (
        "golden hour", "blue hour", "soft light", "soft lighting", "hard light", "dramatic lighting",
        "cinematic lighting", "studio lighting", "natural light", "natural lighting", "rim light",
        "rim lighting", "backlit", "backlighting", "volumetric light", "volumetric lighting", "god rays",
        "ambient occlusion", "chiaroscuro", "low key", "high key", "moody lighting", "warm light",
        "cool light", "diffused light", "lighting", "sunlight", "moonlight", "glowing", "bloom",
    ),
    "composition": (
        "rule of thirds", "symmetrical", "symmetry", "centered composition", "centred composition",
        "leading lines", "negative space", "minimalist", "minimalism", "wide shot", "close-up", "close up",
        "full body", "portrait orientation", "landscape orientation", "bird's eye view", "aerial view",
        "low angle", "high angle", "dutch angle", "golden ratio", "balanced composition", "composition",
        "framing",
    ),
    "medium": (
        "oil painting", "watercolor", "watercolour", "acrylic painting", "pencil sketch", "charcoal drawing",
        "ink drawing", "digital painting", "digital art", "concept art", "illustration", "3d render",
        "octane render", "unreal engine", "photograph", "photography", "photorealistic", "impressionism",
        "impressionist", "art nouveau", "ukiyo-e", "pixel art", "anime style", "vector art", "matte painting",
        "cel shading", "painterly",
    ),
    "camera": (
        "bokeh", "depth of field", "shallow depth of field", "tilt-shift", "long exposure", "motion blur",
        "film grain", "35mm", "50mm", "85mm", "35mm film", "wide angle", "wide-angle lens", "telephoto",
        "macro", "fisheye", "dslr", "f/1.8", "f/2.8", "kodak portra", "analog film", "polaroid", "hdr",
    ),
    "quality": (
        "masterpiece", "best quality", "high quality", "highly detailed", "detailed", "intricate details",
        "sharp focus", "8k", "4k", "uhd", "award winning", "award-winning", "trending on artstation",
        "professional", "beautiful", "aesthetic", "stunning", "ultra realistic", "hyperrealistic",
        "high resolution",
    ),
}

FILLER = ("a", "an", "the", "with", "and", "in", "of", "by", "very", "highly", "extremely", "ultra", "super",
          "style", "in the style of", "lens", "shot", "tones", "effect", "quality", "&")

_SEPARATOR = re.compile(r"[,;|\n]|\.(?=\s|$)")
_OPEN, _CLOSE = "([{", ")]}"
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?")
_WORDS = re.compile(r"[^\w'/.&+-]+")


def split_phrases(text: str) -> list[str]:
    """Phrases of a prompt, stripped and non-empty, cut at separators outside brackets."""
    phrases, current, depth = [], [], 0
    for index, char in enumerate(text or ""):
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth = max(depth - 1, 0)
        if depth == 0 and _SEPARATOR.match(text, index):
            phrases.append("".join(current))
            current = []
            continue
        current.append(char)
    phrases.append("".join(current))
    return [p.strip() for p in phrases if p.strip()]


def normalise(text: str) -> str:
    """Casefolded words separated by single spaces, prompt-weight syntax and brackets removed."""
    text = _WEIGHT.sub(" ", text.casefold())
    text = re.sub(r"[()\[\]{}]", " ", text)
    return " ".join(w.strip(".'-") for w in _WORDS.split(text) if w.strip(".'-"))


def parse_vocabulary(text: str, use_builtin: bool = True) -> frozenset:
    """Terms from the built-in vocabulary (optional) plus one term per line or comma item of ``text``;
    an item starting with '-' removes that term."""
    terms = {normalise(t) for group in AESTHETIC_VOCABULARY.values() for t in group} if use_builtin else set()
    for item in re.split(r"[,\n]", text or ""):
        item = item.strip()
        if item.startswith("-"):
            terms.discard(normalise(item[1:]))
        elif normalise(item):
            terms.add(normalise(item))
    return frozenset(terms)


@functools.lru_cache(maxsize=32)
def _pattern(terms: frozenset) -> re.Pattern:
    """Whole-word alternation of terms, longest first (so 'soft lighting' wins over 'lighting')."""
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=lambda t: (-len(t), t)))
    return re.compile(rf"(?<!\S)(?:{alternatives})(?!\S)")


_FILLER_PATTERN = _pattern(frozenset(FILLER))


def is_aesthetic(phrase: str, vocabulary: frozenset) -> bool:
    """True when the phrase holds at least one vocabulary term and nothing but terms and filler."""
    words = normalise(phrase)
    if not words or not vocabulary:
        return False
    rest, found = _pattern(vocabulary).subn(" ", words)
    return found > 0 and not _FILLER_PATTERN.sub(" ", rest).strip()


def split_prompt(text: str, vocabulary: frozenset) -> tuple[str, str]:
    """(content, aesthetic): the prompt's phrases sorted into the two parts, in their original order."""
    content, aesthetic = [], []
    for phrase in split_phrases(text):
        (aesthetic if is_aesthetic(phrase, vocabulary) else content).append(phrase)
    return ", ".join(content), ", ".join(aesthetic)
