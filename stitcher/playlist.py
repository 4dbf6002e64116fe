"""RFC 8216 media playlist writer for live (EVENT) HLS output.

Pure Python: the HLS sink muxes segments itself and only needs the text of the playlist.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float  # seconds


class MediaPlaylist:
    """Media playlist of an event stream: segments are only ever appended.

    `target_duration` is a lower bound for EXT-X-TARGETDURATION. RFC 8216 forbids the value
    from changing between reloads, so a live writer passes its nominal segment length here;
    the value still grows if a segment turns out longer, to stay valid.
    """

    def __init__(self, target_duration: int = 0) -> None:
        if target_duration < 0:
            raise ValueError(f"target_duration must be >= 0, got {target_duration}")
        self._min_target = target_duration
        self._segments: list[Segment] = []

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    def add_segment(self, uri: str, duration: float) -> None:
        if not uri or any(c in uri for c in "\r\n"):
            raise ValueError(f"invalid segment URI {uri!r}")
        if not math.isfinite(duration) or duration <= 0:
            raise ValueError(f"segment duration must be a positive number, got {duration}")
        self._segments.append(Segment(uri, duration))

    def target_duration(self) -> int:
        # Ceil of the value as written (3 decimals), so float noise cannot add a second.
        longest = max((math.ceil(round(s.duration, 3)) for s in self._segments), default=0)
        return max(self._min_target, longest)

    def render(self, ended: bool) -> str:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{self.target_duration()}",
            "#EXT-X-MEDIA-SEQUENCE:0",
            "#EXT-X-PLAYLIST-TYPE:EVENT",
        ]
        for seg in self._segments:
            lines.append(f"#EXTINF:{seg.duration:.3f},")
            lines.append(seg.uri)
        if ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers see either the old or the new file, whole.

    The temp file lives in the same folder because os.replace is only atomic within one
    filesystem.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temp_path_for(path: Path) -> Path:
    """A unique hidden sibling of `path` to write before os.replace-ing it into place.

    Not tempfile.mkstemp: its 0600 mode would survive the rename and hide the file from a
    web server that serves the folder.
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
