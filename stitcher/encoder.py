"""Video encoding in closed, independent GOPs: a fresh encoder for every GOP.

Each GOP's packets depend only on that GOP's frames and the settings, never on what was
encoded before (x264's rate control carries history from frame to frame). That is what makes
a resumed or restarted render byte-for-byte the video an uninterrupted one would have been:
encoding restarts at a GOP boundary and the GOPs after it come out the same. It is also what
chunked, distributed encoders rely on to encode GOPs in different places.
"""

from __future__ import annotations

from collections.abc import Callable

import av


class GopEncoder:
    """`encode(frame)` / `encode(None)` like a codec context, with an IDR and a new encoder at
    every multiple of `keyint` (frames' pts are their global frame indices)."""

    def __init__(self, make_context: Callable[[], av.VideoCodecContext], keyint: int) -> None:
        if keyint < 1:
            raise ValueError(f"keyint must be at least 1, got {keyint}")
        self.make_context = make_context
        self.keyint = keyint
        self._context: av.VideoCodecContext | None = None

    def encode(self, frame: av.VideoFrame | None) -> list[av.Packet]:
        if frame is None:
            return self._flush()
        packets = self._flush() if frame.pts % self.keyint == 0 else []
        if self._context is None:
            self._context = self.make_context()
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
