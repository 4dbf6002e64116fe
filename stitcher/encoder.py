"""Video encoding in closed, independent GOPs: a fresh encoder for every GOP.

Each GOP's packets depend only on that GOP's frames and the settings, never on what was
encoded before (x264's rate control carries history from frame to frame). That is what makes
a resumed or restarted render byte-for-byte the video an uninterrupted one would have been:
encoding restarts at a GOP boundary and the GOPs after it come out the same. It is also what
chunked, distributed encoders rely on to encode GOPs in different places.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np


class GopEncoder:
    """`encode(frame)` / `encode(None)` like a codec context, with an IDR and a new encoder at
    every multiple of `keyint` (frames' pts are their global frame indices)."""

    def __init__(self, make_context: Callable[..., av.VideoCodecContext], keyint: int) -> None:
        if keyint < 1:
            raise ValueError(f"keyint must be at least 1, got {keyint}")
        self.make_context = make_context
        self.keyint = keyint
        self._context: av.VideoCodecContext | None = None

    def encode(self, frame: av.VideoFrame | None) -> list[av.Packet]:
        if frame is None:
            return self._flush()
        packets = self._flush() if frame.pts % self.keyint == 0 else []
        if self._context is None:  # a GOP runs to the next multiple of keyint
            self._context = self.make_context(gop_frames=self.keyint - frame.pts % self.keyint)
        packets.extend(self._context.encode(frame))
        return packets

    def discard(self) -> None:
        """Drop the GOP being encoded, unflushed (a live stream taking back unpublished
        video); the next frame, at a GOP start, opens a fresh encoder."""
        self._context = None

    def _flush(self) -> list[av.Packet]:
        if self._context is None:
            return []
        context, self._context = self._context, None
        return list(context.encode(None))


@dataclass(frozen=True, eq=False)
class EncodedVideo:
    """Frames [start, start + frames) as the compressed packets of closed GOPs, in decode
    order: plain data (bytes and arrays) that crosses processes and files, where av.Packet
    does not. Timestamps are global frame indices (time base 1/fps)."""

    start: int
    frames: int
    data: bytes  # the packets' payloads, back to back
    sizes: np.ndarray  # int64 [packets]
    pts: np.ndarray  # int64 [packets]
    dts: np.ndarray  # int64 [packets]
    keyframe: np.ndarray  # bool [packets]

    @property
    def stop(self) -> int:
        return self.start + self.frames

    @property
    def nbytes(self) -> int:
        return len(self.data) + sum(a.nbytes for a in (self.sizes, self.pts, self.dts, self.keyframe))

    def __len__(self) -> int:
        return self.frames

    @classmethod
    def from_packets(cls, start: int, frames: int, packets: Sequence[av.Packet]) -> EncodedVideo:
        if len(packets) != frames:
            raise ValueError(f"{len(packets)} packets for {frames} frames")
        return cls(start, frames, b"".join(bytes(p) for p in packets),
                   np.array([p.size for p in packets], np.int64),
                   np.array([p.pts for p in packets], np.int64),
                   np.array([p.dts for p in packets], np.int64),
                   np.array([p.is_keyframe for p in packets], bool))

    @classmethod
    def empty(cls, start: int) -> EncodedVideo:
        none = np.zeros(0, np.int64)
        return cls(start, 0, b"", none, none, none, np.zeros(0, bool))

    def packets(self, time_base: Fraction) -> list[av.Packet]:
        out = []
        offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        for i in range(len(self.sizes)):
            packet = av.Packet(self.data[offsets[i]:offsets[i + 1]])
            packet.pts, packet.dts = int(self.pts[i]), int(self.dts[i])
            packet.time_base = time_base
            packet.duration = 1
            packet.is_keyframe = bool(self.keyframe[i])
            out.append(packet)
        return out

    def from_frame(self, frame: int) -> EncodedVideo:
        """The packets of frames [frame, stop); `frame` must start a closed GOP (or be the stop)."""
        if frame == self.start:
            return self
        if frame == self.stop:
            return EncodedVideo.empty(frame)
        keys = np.flatnonzero(self.keyframe & (self.pts == frame))
        if not self.start < frame < self.stop or not len(keys):
            raise ValueError(f"frame {frame} does not start a GOP of frames "
                             f"[{self.start}, {self.stop})")
        first = int(keys[0])
        offset = int(self.sizes[:first].sum())
        return EncodedVideo(frame, self.stop - frame, self.data[offset:], self.sizes[first:],
                            self.pts[first:], self.dts[first:], self.keyframe[first:])

    @staticmethod
    def join(parts: Sequence[EncodedVideo]) -> EncodedVideo:
        """Consecutive pieces as one."""
        for a, b in zip(parts, parts[1:], strict=False):
            if a.stop != b.start:
                raise ValueError(f"pieces are not consecutive: {a.stop} then {b.start}")
        if len(parts) == 1:
            return parts[0]
        return EncodedVideo(parts[0].start, sum(p.frames for p in parts),
                            b"".join(p.data for p in parts),
                            *(np.concatenate([getattr(p, name) for p in parts])
                              for name in ("sizes", "pts", "dts", "keyframe")))
