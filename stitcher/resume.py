"""What an interrupted render left in its fragmented MP4, and how to carry it into a new file.

The MP4 sink writes one fragment (moof + mdat) per GOP and pushes each to the OS when it is
complete, so after a crash the file is whole up to its last complete fragment; whatever
follows is a partial fragment. A resumed render keeps the complete fragments' video packets
(copied, never re-encoded) and encodes the rest.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import psutil


def resume_backup(path: Path) -> Path:
    """Where the MP4 of an interrupted run waits while a resumed run copies it."""
    return path.with_name(f".{path.name}.lvp-resume")


def _boxes(f: io.BufferedReader, size: int) -> Iterator[tuple[bytes, int, int]]:
    """Top-level boxes as (type, start, end); stops at the first one that is cut off."""
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        length, kind = struct.unpack(">I4s", f.read(8))
        if length == 1:
            if offset + 16 > size:
                return
            (length,) = struct.unpack(">Q", f.read(8))
        elif length == 0:
            length = size - offset
        if length < 8 or offset + length > size:
            return
        yield kind, offset, offset + length
        offset += length


def complete_length(path: Path) -> int:
    """Bytes of `path` up to the end of its last complete fragment (0: nothing usable)."""
    size = path.stat().st_size
    end = 0
    has_moov = False
    with path.open("rb") as f:
        pending_moof = False
        for kind, _, stop in _boxes(f, size):
            if kind == b"moov":
                has_moov = True
            elif kind == b"moof":
                pending_moof = True
            elif kind == b"mdat" and pending_moof:
                pending_moof = False
                end = stop
    return end if has_moov else 0


class _Bounded(io.RawIOBase):
    """A read-only view of the first `limit` bytes of a file (what the demuxer may see)."""

    def __init__(self, path: Path, limit: int) -> None:
        self._file = path.open("rb")
        self._limit = limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        room = self._limit - self._file.tell()
        if room <= 0:
            return 0
        view = memoryview(buffer)[:room]
        return self._file.readinto(view)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_END:
            return self._file.seek(self._limit + offset)
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        super().close()


def committed_frames(path: Path) -> int:
    """Video frames in the complete fragments of `path` (0 when it has none or is not ours)."""
    return sum(1 for _ in _demuxed(path))


def committed_packets(path: Path, limit: int | None, fps: int) -> Iterator[av.Packet]:
    """The first `limit` video packets of the complete fragments (all when None), in decode
    order, as Annex B (SPS/PPS in-band, as our encoder makes them) with frame-index times."""
    to_annexb = None
    count = 0
    for stream, packet in _demuxed(path):
        to_annexb = to_annexb or av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)
        for out in to_annexb.filter(packet):
            if limit is not None and count >= limit:
                return
            out.pts = round(out.pts * stream.time_base * fps)
            out.dts = round(out.dts * stream.time_base * fps)
            out.time_base = Fraction(1, fps)
            count += 1
            yield out


def _demuxed(path: Path) -> Iterator[tuple[av.VideoStream, av.Packet]]:
    """The video packets of the complete fragments, as the demuxer gives them."""
    length = complete_length(path) if path.exists() else 0
    if length == 0:
        return
    reader = _Bounded(path, length)
    try:
        container = av.open(reader, "r", format="mp4")
    except av.FFmpegError:
        reader.close()
        return
    try:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size:  # size 0: the demuxer's end-of-stream marker
                yield stream, packet
    finally:
        container.close()
        reader.close()


def hls_committed_segments(folder: Path, playlist: str, fps: int,
                           gop: int) -> list[tuple[str, float]]:
    """The leading segments of an interrupted `lvp render --hls` playlist that are whole
    GOPs and exist, as (uri, duration). A live (sliding-window) playlist is never resumed."""
    path = folder / playlist
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    if "#EXT-X-PLAYLIST-TYPE:EVENT" not in lines:
        return []
    kept: list[tuple[str, float]] = []
    duration: float | None = None
    for line in lines:
        if line.startswith("#EXTINF:"):
            try:
                duration = float(line[len("#EXTINF:"):].split(",")[0])
            except ValueError:
                return kept
        elif line and not line.startswith("#") and duration is not None:
            whole = round(duration * fps) == gop
            name_ok = "/" not in line and line not in (".", "..")
            if not (whole and name_ok and (folder / line).is_file()):
                break
            kept.append((line, duration))
            duration = None
    return kept


_TEMP = re.compile(r"^\.(.+)\.(\d+)\.[0-9a-f]{8}\.tmp$")  # stitcher.playlist.temp_path_for


def remove_stale_temp_files(folder: Path) -> None:
    """Delete the half-written temp files a killed run of ours left (their writer is gone)."""
    for path in folder.iterdir():
        match = _TEMP.match(path.name)
        if match and path.is_file() and not psutil.pid_exists(int(match.group(2))):
            path.unlink(missing_ok=True)
