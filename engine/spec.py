"""The job spec: everything a render needs, validated before any work starts."""

from __future__ import annotations

import math
import os
import re
import stat
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import InputError
from engine.schedule import PromptSchedule, file_kind, parse_clock, printable

if TYPE_CHECKING:
    from engine.live_prompts import LivePrompts  # noqa: F401 - the type of JobSpec.live
    from stitcher.playlist import LiveHLS  # noqa: F401 - the type of JobSpec.hls_live

MAX_DURATION = 24 * 3600.0
MIN_SIDE, MAX_WIDTH, MAX_HEIGHT = 64, 3840, 2160
AUDIO_MODES = ("loop", "pad")
KEYFRAME_SHORT_SIDE = 64  # Stage 1 works at low resolution: keyframes have this shorter side


@dataclass(frozen=True)
class JobSpec:
    schedule: PromptSchedule
    duration: float  # seconds of video
    fps: int = 30
    width: int = 256
    height: int = 256
    seed: int = 0
    segment_seconds: int = 5
    overlap: int = 16  # frames rendered by both neighbours at each boundary
    workers: int = 2
    gpus_per_worker: float = 0.0  # for GPU backends on a cluster; the bundled model needs none
    model: str = "tiny"  # engine.models.base.DEFAULT_BACKEND (a test keeps them equal)
    weights: Path | None = None  # the backend's weights (None: its bundled default)
    image: Path | None = None
    audio: Path | None = None
    audio_mode: str = "loop"
    out: Path | None = None
    hls: Path | None = None
    hls_segment_seconds: float = 2.0
    report: Path | None = None
    workdir: Path = Path("lvp-work")
    memory_interval: int = 5  # seconds of video between replay-memory entries
    crf: int = 23
    encoder_preset: str = "veryfast"
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # lvp stream: the prompt schedule grows while the job runs (engine/live_prompts.py)
    live: LivePrompts | None = field(default=None, compare=False)
    hls_live: LiveHLS | None = None  # lvp stream: the HLS sink publishes live (paced window)

    @property
    def total_frames(self) -> int:
        return max(1, round(self.duration * self.fps))

    @property
    def keyframe_size(self) -> tuple[int, int]:
        """Stage 1 works at low resolution: the shorter side is KEYFRAME_SHORT_SIDE pixels."""
        scale = KEYFRAME_SHORT_SIDE / min(self.width, self.height)
        return max(16, round(self.width * scale / 2) * 2), max(16, round(self.height * scale / 2) * 2)

    def summary(self) -> dict:
        data = asdict(replace(self, live=None))
        del data["live"]
        data["schedule"] = list(zip(self.schedule.starts, self.schedule.texts, strict=True))
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def parse_duration(text: str) -> float:
    """Seconds as '600', '90.5', '10:00', '1:00:00', or with a unit: '90s', '10m', '2h'."""
    raw = str(text).strip().lower()
    unit = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        if raw and raw[-1] in unit and re.fullmatch(r"[0-9.]+[smh]", raw):
            seconds = float(raw[:-1]) * unit[raw[-1]]
        else:
            seconds = parse_clock(raw) if ":" in raw else float(raw)
    except ValueError:
        raise InputError(f"duration {text!r} is not a number of seconds (e.g. 600, 10:00, 2h)") from None
    if not seconds > 0 or seconds != seconds:
        raise InputError(f"duration must be more than 0 seconds, got {text!r}")
    if seconds > MAX_DURATION:
        raise InputError(f"duration {text!r} is over the 24 hour limit")
    return seconds


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match:
        raise InputError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 256x256)")
    width, height = int(match.group(1)), int(match.group(2))
    if width % 2 or height % 2:
        raise InputError(f"size {width}x{height} must have even width and height (H.264 4:2:0)")
    if not (MIN_SIDE <= width <= MAX_WIDTH and MIN_SIDE <= height <= MAX_HEIGHT):
        raise InputError(
            f"size {width}x{height} is out of range: {MIN_SIDE}x{MIN_SIDE} up to {MAX_WIDTH}x{MAX_HEIGHT}"
        )
    return width, height


def check_writable_dir(folder: Path, what: str) -> None:
    """Create the folder if needed and prove we can write a file into it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".lvp-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"{what} folder cannot be written: {printable(folder)} "
                         f"({printable(reason)})") from None


def check_output_file(path: Path, what: str) -> None:
    shown = printable(path)
    if not path.name or path.name in (".", "..") or path.is_dir():
        raise InputError(f"{what} {shown} is a folder, expected a file path")
    mode = _stat_mode(path)
    if mode is not None and not stat.S_ISREG(mode):
        # Writing would hang on a FIFO and go nowhere (or somewhere odd) on a device.
        raise InputError(f"{what} {shown} exists and is not a regular file ({file_kind(mode)})")
    check_writable_dir(path.parent if str(path.parent) else Path("."), what)
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} {shown} exists and cannot be overwritten")


def check_input_file(path: Path, what: str, allow_dir: bool = False) -> None:
    """Refuse an input that exists but is not a regular file (a FIFO, a device such as
    /dev/zero, a socket; a folder unless `allow_dir`), looking with stat only: nothing is
    opened, so a FIFO cannot block. A missing file passes: its reader says 'not found'."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise InputError(f"{what} cannot be read: {printable(path)} ({printable(reason)})") from None
    if stat.S_ISDIR(mode):
        if allow_dir:
            return
        raise InputError(f"{what} is a folder, expected a file: {printable(path)}")
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} is not a regular file ({file_kind(mode)}): {printable(path)}")


def _stat_mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):
        return None


def resolved(path: Path) -> Path:
    """The absolute path with symlinks resolved as far as they exist (never raises)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, an unreadable folder
        return Path(os.path.abspath(path))


def same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` name one file: the same resolved path (symlinks, '..', relative
    spellings) or, for existing files, the same inode (hard links)."""
    if resolved(a) == resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def is_inside(path: Path, folder: Path) -> bool:
    """True when `path` is `folder` or lies anywhere below it (after resolving both)."""
    child, parent = resolved(path), resolved(folder)
    if child == parent or child.is_relative_to(parent):
        return True
    try:  # the same folder reached by another route (a bind mount, a hard-linked parent)
        return any(os.path.samefile(up, folder) for up in child.parents if up.exists())
    except (OSError, ValueError):
        return False


def default_report(out: Path | None, hls: Path | None) -> Path:
    """Where the run report goes without --report: OUT.json, else HLS/report.json."""
    if out is not None:
        return out.with_suffix(".json")
    assert hls is not None
    return hls / "report.json"


def _number(value: float) -> str:
    try:
        return f"{value:g}"
    except (OverflowError, ValueError):  # an int too large for a float
        return f"a number of about {int(int(value).bit_length() * 0.30103) + 1} digits"


def check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, float) and not math.isfinite(value) or not low <= value <= high:
        raise InputError(f"{name} must be between {_number(low)} and {_number(high)}, "
                         f"got {_number(value)}")
