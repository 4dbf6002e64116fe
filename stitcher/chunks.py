"""Encoding in chunks, wherever the frames are: the segment actors encode the frames no
neighbour shares, the stitcher encodes only the blended overlaps and muxes the rest.

A chunk is a run of consecutive frames encoded on its own: an IDR and a fresh encoder at its
first frame and at every multiple of the GOP inside it (the grid HLS segments and MP4
fragments cut on), flushed at its end. Closed GOPs depend only on their own frames and the
settings (stitcher.encoder), so the video is the same bytes whoever encodes which chunk: a
segment actor, the stitcher, one worker or many, a resumed run or an uninterrupted one. The
chunks of a video are fixed by its timeline: each segment's unshared body, and each blended
overlap.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from stitcher import sinks
from stitcher.encoder import EncodedVideo
from stitcher.probe import MeasuredSteps, measure_steps

ENCODER_THREADS = 1  # x264 output depends on its thread count: one value everywhere (a worker has one CPU)
# x264 delays decoding timestamps by its B-frame reorder depth (2 with b-pyramid, 0 without
# B-frames), and a chunk too short for B-frames gets none: one fixed delay for every chunk
# keeps them increasing from chunk to chunk.
DTS_DELAY = 2


@dataclass(frozen=True)
class EncodeSettings:
    """What every encoder of one video uses."""

    fps: int
    width: int
    height: int
    crf: int
    preset: str
    keyint: int  # the GOP grid: an IDR at every multiple of this global frame index
    threads: int = ENCODER_THREADS


def encode_chunk(settings: EncodeSettings, frames: np.ndarray, start: int) -> EncodedVideo:
    """`frames` (global indices start, start + 1, ...) as one chunk."""
    if not len(frames):
        return EncodedVideo.empty(start)
    s = settings
    time_base = Fraction(1, s.fps)
    packets = []
    context = None
    for i, rgb in enumerate(frames):
        pts = start + i
        if context is None or pts % s.keyint == 0:
            if context is not None:
                packets.extend(context.encode(None))
            gop_end = min(pts + s.keyint - pts % s.keyint, start + len(frames))
            context = sinks._x264_context(s.fps, s.width, s.height, s.crf, s.preset, s.keyint,
                                          s.threads, gop_frames=gop_end - pts)
        packets.extend(context.encode(sinks._rgb_frame(rgb, pts, time_base)))
    assert context is not None
    packets.extend(context.encode(None))
    video = EncodedVideo.from_packets(start, len(frames), packets)
    dts = start + np.arange(video.frames, dtype=np.int64) - DTS_DELAY
    if (dts > video.pts).any():
        raise RuntimeError(f"x264 reorders frames deeper than {DTS_DELAY} ({s.preset})")
    return dataclasses.replace(video, dts=dts)


@dataclass(frozen=True, eq=False)
class LosslessFrames:
    """RGB frames compressed without loss, to travel between processes: x264 in RGB at
    quantiser 0 (its inter prediction finds what consecutive frames share; 2-3x smaller than
    zlib or FFV1 on the benchmark texture, and faster)."""

    shape: tuple[int, ...]
    packets: tuple[bytes, ...]

    @classmethod
    def pack(cls, frames: np.ndarray) -> LosslessFrames:
        if not len(frames):
            return cls(frames.shape, ())
        context = av.CodecContext.create("libx264rgb", "w")
        context.height, context.width = frames.shape[1:3]
        context.pix_fmt = "rgb24"
        context.time_base = Fraction(1, 30)
        context.thread_count = 1
        context.options = {"preset": "ultrafast", "qp": "0"}
        packets: list[bytes] = []
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            packets.extend(bytes(p) for p in context.encode(frame))
        packets.extend(bytes(p) for p in context.encode(None))
        return cls(frames.shape, tuple(packets))

    def unpack(self) -> np.ndarray:
        if not self.packets:
            return np.empty(self.shape, np.uint8)
        context = av.CodecContext.create("h264", "r")
        context.thread_count = 1
        decoded = [f for data in self.packets for f in context.decode(av.Packet(data))]
        decoded.extend(context.decode(None))
        # x264 codes RGB as planar GBR; PyAV reads those planes back as RGB without swscale.
        frames = [f.to_ndarray() if f.format.name == "gbrp" else f.to_ndarray(format="rgb24")
                  for f in decoded]
        if len(frames) != self.shape[0]:
            raise ValueError(f"decoded {len(frames)} of {self.shape[0]} overlap frames")
        return np.stack(frames)

    @property
    def nbytes(self) -> int:
        return sum(len(p) for p in self.packets)

    def __len__(self) -> int:
        return self.shape[0]


@dataclass(frozen=True, eq=False)
class PackagedSegment:
    """A rendered segment as it leaves its segment actor: the frames its neighbours also render
    (raw, for the stitcher to blend), and its own frames between them already encoded."""

    index: int
    frame_start: int
    head: LosslessFrames  # shared with the segment before
    body: EncodedVideo
    body_steps: MeasuredSteps | None  # the temporal probe's view of the body (None: empty)
    tail: LosslessFrames  # shared with the segment after
    model_seconds: float
    encode_seconds: float

    @property
    def num_frames(self) -> int:
        return len(self.head) + self.body.frames + len(self.tail)

    @property
    def nbytes(self) -> int:
        """What it ships, near enough."""
        return self.head.nbytes + self.body.nbytes + self.tail.nbytes + (
            self.body_steps.nbytes if self.body_steps is not None else 0)


def package_segment(index: int, frame_start: int, frames: np.ndarray, head: int, tail: int,
                    settings: EncodeSettings, model_seconds: float) -> PackagedSegment:
    """Encode the body of a segment whose first `head` and last `tail` frames are shared."""
    if head + tail > len(frames):
        raise ValueError(f"segment {index} is shorter than its overlaps")
    started = time.perf_counter()
    body_frames = frames[head:len(frames) - tail]
    body = encode_chunk(settings, body_frames, frame_start + head)
    steps = measure_steps(body_frames) if len(body_frames) else None
    return PackagedSegment(index, frame_start, LosslessFrames.pack(frames[:head]), body, steps,
                           LosslessFrames.pack(frames[len(frames) - tail:]), model_seconds,
                           time.perf_counter() - started)


@dataclass(frozen=True, eq=False)
class BlendedOverlap:
    """The frames two neighbouring segments share, blended and encoded by a segment worker
    (so the stitcher, which every frame of the video passes, only muxes them)."""

    index: int  # the segment after the boundary
    video: EncodedVideo
    steps: MeasuredSteps  # the temporal probe's view of the blended frames
    seconds: float  # unpacking, blending, encoding and measuring


def blend_overlap(blend: Callable[[np.ndarray, np.ndarray], np.ndarray], before: LosslessFrames,
                  after: PackagedSegment, settings: EncodeSettings) -> BlendedOverlap:
    """Blend the tail of the segment before `after` with `after`'s head: the same frames and
    bytes as the stitcher's own blend of them (stitcher.stitch)."""
    if len(before) != len(after.head) or not len(before):
        raise ValueError(f"segment {after.index}: {len(after.head)} head frames to blend with "
                         f"{len(before)} of the segment before")
    started = time.perf_counter()
    blended = blend(before.unpack(), after.head.unpack())
    video = encode_chunk(settings, blended, after.frame_start)
    return BlendedOverlap(after.index, video, measure_steps(blended),
                          time.perf_counter() - started)
