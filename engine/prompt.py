"""Parse a text prompt into the procedural world's vocabulary.

The bundled world understands a small closed vocabulary (colors, shapes, motions,
backgrounds). Unknown words are reported as warnings; a prompt without a shape has no
subject to draw and is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.errors import InputError

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "orange": (250, 140, 20),
    "yellow": (250, 225, 40),
    "green": (40, 200, 60),
    "cyan": (40, 220, 230),
    "blue": (40, 80, 240),
    "purple": (150, 50, 210),
    "pink": (250, 120, 190),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle", "star")
MOTIONS = (
    "bouncing",
    "drifting_left",
    "drifting_right",
    "orbiting",
    "spinning",
    "pulsing",
    "dancing",
    "resting",
)
BACKGROUNDS = ("day", "night", "sunset", "meadow", "ocean")
# Color-shape pairs kept out of the tiny model's training data; `lvp eval` asks for exactly
# these (generalisation, not recall). Defined here so evaluation never imports training code.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "star"), ("blue", "triangle"), ("green", "square"), ("yellow", "circle"),
)

# Inflections and near-synonyms users type; each maps onto the core vocabulary.
_COLOR_WORDS = {c: c for c in COLORS} | {"violet": "purple", "magenta": "pink"}
_SHAPE_WORDS = {s: s for s in SHAPES} | {
    "circles": "circle", "ball": "circle", "disc": "circle", "disk": "circle",
    "squares": "square", "box": "square", "block": "square", "cube": "square",
    "triangles": "triangle", "stars": "star",
}
_MOTION_WORDS = {
    "bouncing": "bouncing", "bounces": "bouncing", "bounce": "bouncing",
    "orbiting": "orbiting", "orbits": "orbiting", "orbit": "orbiting", "circling": "orbiting",
    "spinning": "spinning", "spins": "spinning", "spin": "spinning", "rotating": "spinning",
    "pulsing": "pulsing", "pulses": "pulsing", "pulse": "pulsing", "throbbing": "pulsing",
    "dancing": "dancing", "dances": "dancing", "dance": "dancing",
    "resting": "resting", "rests": "resting", "still": "resting", "static": "resting",
    "sitting": "resting",
}
_DRIFT_WORDS = {"drifting", "drifts", "drift", "moving", "moves", "sliding", "floating"}
_DIRECTIONS = {"left": "drifting_left", "right": "drifting_right"}
_BACKGROUND_WORDS = {b: b for b in BACKGROUNDS} | {
    "daytime": "day", "noon": "day", "nighttime": "night", "midnight": "night",
    "dusk": "sunset", "evening": "sunset", "field": "meadow", "grass": "meadow",
    "sea": "ocean", "water": "ocean",
}
# Words that carry no meaning for the world; never warned about.
_STOPWORDS = {
    "a", "an", "the", "on", "in", "at", "with", "over", "under", "across", "around",
    "through", "of", "and", "to", "is", "are", "its", "it", "by", "from", "into", "above",
    "background", "backdrop", "sky", "scene", "shape", "slowly", "quickly", "gently",
    "big", "large", "small", "little", "bright", "dark", "night's", "while", "very",
    "toward", "towards", "up", "down", "along", "against", "one", "single", "time",
}

# Every word the parser knows, by role (the bundled model's tokenizer and training prompts use it).
# Sets are sorted: a set's order follows Python's per-process string hash, and the training
# prompts pick words by position, so an unsorted set made the seeded data stream differ by run.
KNOWN_WORDS: dict[str, dict[str, str]] = {
    "color": _COLOR_WORDS, "shape": _SHAPE_WORDS, "motion": _MOTION_WORDS,
    "background": _BACKGROUND_WORDS, "drift": {w: w for w in sorted(_DRIFT_WORDS)},
    "direction": _DIRECTIONS, "stop": {w: w for w in sorted(_STOPWORDS)},
}

DEFAULT_COLOR = "white"
DEFAULT_MOTION = "resting"
DEFAULT_BACKGROUND = "day"


@dataclass(frozen=True)
class Scene:
    """What the world draws for one prompt."""

    color: str
    shape: str
    motion: str
    background: str
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLORS[self.color]

    def describe(self) -> str:
        motion = self.motion.replace("_", " ")
        return f"a {self.color} {self.shape} {motion} on a {self.background} background"


def _scan(text: str) -> tuple[str | None, str | None, str | None, str | None, list[str]]:
    """The first color, shape, motion and background named, and the words not understood."""
    words = re.findall(r"[a-z']+", text.lower())
    color = shape = motion = background = None
    unknown: list[str] = []
    drifting = False
    for i, word in enumerate(words):
        if word in _COLOR_WORDS:
            color = color or _COLOR_WORDS[word]
        elif word in _SHAPE_WORDS:
            shape = shape or _SHAPE_WORDS[word]
        elif word in _MOTION_WORDS:
            motion = motion or _MOTION_WORDS[word]
        elif word in _DRIFT_WORDS:
            drifting = True
        elif word in _DIRECTIONS:
            # "left"/"right" only mean something after a drift word ("drifting slowly left").
            if drifting and motion is None:
                motion = _DIRECTIONS[word]
            elif not any(w in _DRIFT_WORDS for w in words[:i]):
                unknown.append(word)
        elif word in _BACKGROUND_WORDS:
            background = background or _BACKGROUND_WORDS[word]
        elif word not in _STOPWORDS:
            unknown.append(word)
    if motion is None and drifting:
        motion = "drifting_right"
    return color, shape, motion, background, unknown


def prompt_motion(text: str) -> str | None:
    """The motion a prompt names (None when it names none); never raises."""
    return _scan(text)[2]


def _unknown_warnings(unknown: list[str]) -> tuple[str, ...]:
    return tuple(f"unknown word {w!r} in prompt ignored" for w in dict.fromkeys(unknown))


def parse_prompt(text: str) -> Scene:
    """Map a free-text prompt onto the world's vocabulary.

    The first color, shape, motion and background named win; anything unrecognised
    is listed in ``Scene.warnings``.
    """
    color, shape, motion, background, unknown = _scan(text)
    if shape is None:
        raise InputError(
            f"prompt {text!r} names no subject the bundled world can draw "
            f"(use one of: {', '.join(SHAPES)})"
        )
    return Scene(
        color=color or DEFAULT_COLOR,
        shape=shape,
        motion=motion or DEFAULT_MOTION,
        background=background or DEFAULT_BACKGROUND,
        warnings=_unknown_warnings(unknown),
    )


def prompt_warnings(text: str) -> tuple[str, ...]:
    """What a learned model will not understand in `text` (it still renders its best guess)."""
    _, shape, _, _, unknown = _scan(text)
    missing = () if shape else (
        f"prompt {text!r} names no shape the bundled model knows ({', '.join(SHAPES)}); "
        "it draws its best guess",)
    return missing + _unknown_warnings(unknown)
