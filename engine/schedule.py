"""Timed prompts: which prompt is in force at each video time."""

from __future__ import annotations

import bisect
import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.prompt import Scene, parse_prompt, prompt_warnings

# One line of a prompt schedule: [H:]MM:SS[.fff] text (the groups: hours, minutes, seconds, text).
SCHEDULE_LINE = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{2}(?:\.\d+)?)\s+(\S.*?)\s*$")

# Bounded input: a schedule is read whole, every prompt is parsed, and prompts travel into
# reports, the replay memory and terminals, so each of these has a limit.
MAX_PROMPT_CHARS = 1_000
MAX_SCHEDULE_BYTES = 1 << 20  # 1 MiB
MAX_SCHEDULE_PROMPTS = 10_000
_MAX_HOUR_DIGITS = 6  # far beyond the 24 h video limit, and small enough for float math

# Characters that a terminal obeys instead of showing, or that reorder or break lines:
# C0/C1 controls and DEL (category Cc), lone surrogates (undecodable bytes, Cs), the Unicode
# line and paragraph separators (Zl, Zp) and the bidirectional embedding/override/isolate marks.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(ch: str) -> bool:
    return ch in _BIDI_CONTROLS or unicodedata.category(ch) in _UNSAFE_CATEGORIES


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """`text` with every control character escaped (ESC becomes the four characters \\x1b):
    safe to print to a terminal and always one line."""
    text = str(text)
    if not any(_unsafe(ch) for ch in text):
        return text
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in text)


def check_prompt(text: str, where: str = "prompt") -> None:
    """Raise InputError unless `text` is a usable prompt: not empty, at most MAX_PROMPT_CHARS
    characters, no control characters. `where` starts the message (e.g. 'story.txt:3: prompt').
    The message never repeats the prompt's raw text."""
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"{where} is {len(text):,} characters long; the limit is "
                         f"{MAX_PROMPT_CHARS:,} characters per prompt")
    if not text.strip():
        raise InputError(f"{where} is empty")
    for position, ch in enumerate(text, start=1):
        if ch != "\t" and _unsafe(ch):
            what = ("an undecodable byte" if unicodedata.category(ch) == "Cs"
                    else "a control character")
            raise InputError(f"{where} contains {what} ({_escape(ch)}) at character "
                             f"{position}; prompts must be plain text")
    visible = [ch for ch in text if not ch.isspace() and unicodedata.category(ch) != "Cf"]
    if not visible:
        raise InputError(f"{where} is empty (only invisible characters)")


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


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_SCHEDULE_BYTES. Looks with stat before
    opening: a FIFO, device, socket or folder is refused without being opened (opening a FIFO
    waits for a writer forever; /dev/zero never ends)."""
    shown = printable(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"prompt schedule not found: {shown}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise InputError(f"prompt schedule cannot be read: {shown} ({printable(reason)})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"prompt schedule is a folder, expected a text file: {shown}")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"prompt schedule is not a regular file ({file_kind(info.st_mode)}): "
                         f"{shown}")
    limit = f"the limit is {MAX_SCHEDULE_BYTES / (1 << 20):g} MiB"
    if info.st_size > MAX_SCHEDULE_BYTES:
        raise InputError(f"prompt schedule is too large: {shown} is {info.st_size:,} bytes; {limit}")
    try:
        # O_NONBLOCK: should the file be swapped for a FIFO since the stat, open still returns.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise InputError(f"prompt schedule is not a regular file ({file_kind(mode)}): "
                                 f"{shown}")
            data = f.read(MAX_SCHEDULE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"prompt schedule cannot be read: {shown} "
                         f"({printable(exc.strerror or exc)})") from None
    if len(data) > MAX_SCHEDULE_BYTES:
        raise InputError(f"prompt schedule is too large: {shown} is over "
                         f"{MAX_SCHEDULE_BYTES:,} bytes; {limit}")
    return data


def file_kind(mode: int) -> str:
    """'a FIFO', 'a device', ... for messages about a path that is not a regular file."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a plain file"


def read_schedule(path: Path, require_subject: bool = True) -> PromptSchedule:
    """Read lines of 'MM:SS text' or 'HH:MM:SS text'; '#' starts a comment line.

    With `require_subject` every prompt must name a shape the procedural world can draw.
    The file must be a regular file of at most MAX_SCHEDULE_BYTES holding at most
    MAX_SCHEDULE_PROMPTS prompts of at most MAX_PROMPT_CHARS characters each.
    """
    shown = printable(path)
    data = _read_bounded(path)
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"prompt schedule is not UTF-8 text: {shown} (byte {exc.start + 1} "
                         "cannot be decoded)") from None
    starts: list[float] = []
    texts: list[str] = []
    # Lines end at \n or \r only: str.splitlines would also split at other control
    # characters, which must be reported, not silently turned into line breaks.
    for number, line in enumerate(re.split(r"\r\n|\r|\n", raw), start=1):
        line = line.strip()  # linear; the pattern below then never backtracks far
        if not line or line.startswith("#"):
            continue
        where = f"{shown}:{number}"
        if len(line) > MAX_PROMPT_CHARS + 32:
            raise InputError(f"{where}: the line is {len(line):,} characters long; the limit "
                             f"is {MAX_PROMPT_CHARS:,} characters per prompt")
        match = SCHEDULE_LINE.match(line)
        if not match:
            raise InputError(f"{where}: expected 'MM:SS prompt' or 'HH:MM:SS prompt'")
        hours, minutes, seconds, text = match.groups()
        if hours is not None and len(hours.lstrip("0")) > _MAX_HOUR_DIGITS:
            raise InputError(f"{where}: the time is past the 24 hour limit")
        if int(minutes) >= 60 and hours is not None or float(seconds) >= 60:
            raise InputError(f"{where}: minutes and seconds must be below 60")
        check_prompt(text, f"{where}: prompt")
        t = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
        if starts and t <= starts[-1]:
            raise InputError(f"{where}: times must increase ({format_time(t)})")
        if require_subject:
            try:
                parse_prompt(text)
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None
        starts.append(t)
        texts.append(text)
        if len(texts) > MAX_SCHEDULE_PROMPTS:
            raise InputError(f"prompt schedule has too many prompts: {shown} holds more than "
                             f"the limit of {MAX_SCHEDULE_PROMPTS:,}")
    if not texts:
        raise InputError(f"prompt schedule has no prompts: {shown}")
    starts[0] = 0.0  # the first prompt also covers any lead-in before its time
    return PromptSchedule(tuple(starts), tuple(texts))
