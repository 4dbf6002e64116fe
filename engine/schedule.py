"""Timed prompts: which prompt is in force at each video time."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.prompt import Scene, parse_prompt, prompt_warnings

_LINE = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{2}(?:\.\d+)?)\s+(\S.*?)\s*$")


def format_time(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def parse_clock(text: str) -> float:
    """'SS', 'MM:SS' or 'HH:MM:SS' (fractions allowed) to seconds."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3:
        raise ValueError(text)
    seconds = 0.0
    for part in parts:
        value = float(part)
        if value < 0:
            raise ValueError(text)
        seconds = seconds * 60.0 + value
    return seconds


@dataclass(frozen=True)
class PromptSchedule:
    """Prompts sorted by start time; the first one holds from time 0."""

    starts: tuple[float, ...]
    texts: tuple[str, ...]

    @classmethod
    def single(cls, text: str) -> PromptSchedule:
        return cls((0.0,), (text,))

    def index_at(self, t: float) -> int:
        return max(0, bisect.bisect_right(self.starts, t) - 1)

    def text_at(self, t: float) -> str:
        return self.texts[self.index_at(t)]

    def shot_at(self, t: float) -> int:
        """The shot in force at t: the first entry of its run of one unchanged prompt (a
        prompt listed twice in a row is one shot; a prompt that comes back later is a new one)."""
        i = self.index_at(t)
        while i > 0 and self.texts[i - 1] == self.texts[i]:
            i -= 1
        return i

    def window(self, t0: float, t1: float) -> PromptSchedule:
        """The prompts that are in force somewhere in [t0, t1]."""
        first, last = self.index_at(t0), self.index_at(t1)
        starts = (0.0,) + self.starts[first + 1 : last + 1]
        return PromptSchedule(starts, self.texts[first : last + 1])

    def warnings(self, require_subject: bool = True) -> list[str]:
        """Prompt problems worth telling the user (unknown words, a missing shape)."""
        texts = dict.fromkeys(self.texts)
        if require_subject:
            return [w for text in texts for w in scene_of(text).warnings]
        return [w for text in texts for w in prompt_warnings(text)]


_scene_cache: dict[str, Scene] = {}


def scene_of(text: str) -> Scene:
    """parse_prompt, memoised: the renderer asks for the same few prompts every frame."""
    scene = _scene_cache.get(text)
    if scene is None:
        scene = _scene_cache[text] = parse_prompt(text)
    return scene


def read_schedule(path: Path, require_subject: bool = True) -> PromptSchedule:
    """Read lines of 'MM:SS text' or 'HH:MM:SS text'; '#' starts a comment line.

    With `require_subject` every prompt must name a shape the procedural world can draw.
    """
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"prompt schedule not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"prompt schedule is not a readable text file: {path} ({exc})") from None
    starts: list[float] = []
    texts: list[str] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise InputError(f"{path}:{number}: expected 'MM:SS prompt' or 'HH:MM:SS prompt'")
        hours, minutes, seconds, text = match.groups()
        if int(minutes) >= 60 and hours is not None or float(seconds) >= 60:
            raise InputError(f"{path}:{number}: minutes and seconds must be below 60")
        t = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
        if starts and t <= starts[-1]:
            raise InputError(f"{path}:{number}: times must increase ({format_time(t)})")
        if require_subject:
            try:
                parse_prompt(text)
            except InputError as exc:
                raise InputError(f"{path}:{number}: {exc}") from None
        starts.append(t)
        texts.append(text)
    if not texts:
        raise InputError(f"prompt schedule has no prompts: {path}")
    starts[0] = 0.0  # the first prompt also covers any lead-in before its time
    return PromptSchedule(tuple(starts), tuple(texts))
