"""The stitcher's carry: the frames a resumed render needs that the outputs may not hold whole.

Outputs commit whole GOPs, so after a stop the frames of the last GOP that was being written
are lost, and so is the raw tail of the last segment written (its second half is blended into
the next segment's head). Without them a resume renders that segment again, and the one before
it for its tail. After every segment it writes, the stitcher stores those frames in the work
folder (one file, replaced atomically), so a resume renders only the segments that were in
flight: at most the GOPs that can be uncommitted (two) plus the overlap, raw (some 15 MB at
256x256). Frames bigger than `MAX_CARRY_BYTES` are not carried; the resume then renders the
two segments again, as it would without a carry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.resume import first_segment_for
from engine.timeline import Timeline
from stitcher.chunks import LosslessFrames
from stitcher.encoder import EncodedVideo
from stitcher.stitch import ResumePoint

CARRY_NAME = "stitch-carry.npz"
MAX_CARRY_BYTES = 128 * 2**20
CARRY_GOPS = 2  # a GOP's fragment is written when the next GOP's first packet is muxed


@dataclass(frozen=True)
class Carry:
    segment: int  # the last segment written
    frame_start: int  # global index of frames[0]
    frames: np.ndarray | EncodedVideo  # output frames [frame_start, stop), final (or encoded)
    held: np.ndarray | LosslessFrames  # the segment's tail, blended into the next one's head
    size: tuple[int, int] | None = None  # (height, width) of encoded frames

    @property
    def stop(self) -> int:
        """The first frame not in `frames`: the next segment's first frame."""
        return self.frame_start + len(self.frames)


class CarryFile:
    """The carry of one work folder. Written by the stitcher, read before a resume."""

    def __init__(self, workdir: Path, gop_frames: int) -> None:
        self.path = Path(workdir) / CARRY_NAME
        self.gop_frames = gop_frames

    def keep_from(self, frames_out: int) -> int:
        """The first frame the outputs may not hold whole once `frames_out` frames went in."""
        whole = frames_out - frames_out % self.gop_frames
        return max(0, whole - (CARRY_GOPS - 1) * self.gop_frames)

    def save(self, segment: int, frame_start: int, frames: np.ndarray | EncodedVideo,
             held: np.ndarray | LosslessFrames, size: tuple[int, int] | None = None) -> None:
        """Replace the carry: segment `segment` was written, `frames` are the output frames
        from `frame_start` on (raw, or encoded ones of `size` (height, width)), `held` its
        tail (raw, or as its segment worker packed it)."""
        if frames.nbytes + held.nbytes > MAX_CARRY_BYTES:
            self.discard()  # an older carry no longer matches the outputs
            return
        if isinstance(frames, EncodedVideo):
            if size is None:
                raise ValueError("encoded frames need their size")
            video = {"data": np.frombuffer(frames.data, np.uint8), "sizes": frames.sizes,
                     "pts": frames.pts, "dts": frames.dts, "keyframe": frames.keyframe,
                     "count": np.int64(frames.frames), "size": np.array(size, np.int64)}
        else:
            video = {"frames": frames}
        if isinstance(held, LosslessFrames):
            tail = {"held_data": np.frombuffer(b"".join(held.packets), np.uint8),
                    "held_sizes": np.array([len(p) for p in held.packets], np.int64),
                    "held_shape": np.array(held.shape, np.int64)}
        else:
            tail = {"held": held}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "wb") as file:
                np.savez(file, segment=np.int64(segment), frame_start=np.int64(frame_start),
                         **tail, **video)
            os.replace(tmp, self.path)
        except OSError:  # a full disk: the outputs fail next; leave no temp file behind
            tmp.unlink(missing_ok=True)
            raise

    def load(self) -> Carry | None:
        """The stored carry; None when there is none or it cannot be read (a torn write
        after a machine crash: the resume then renders those segments again)."""
        try:
            with np.load(self.path, allow_pickle=False) as data:
                start = int(data["frame_start"])
                held = _held(data)
                if "frames" in data:
                    return Carry(int(data["segment"]), start, data["frames"], held)
                video = EncodedVideo(start, int(data["count"]), data["data"].tobytes(),
                                     data["sizes"], data["pts"], data["dts"], data["keyframe"])
                height, width = (int(v) for v in data["size"])
                return Carry(int(data["segment"]), start, video, held, (height, width))
        except (OSError, ValueError, KeyError, EOFError):
            return None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)


def _held(data: np.lib.npyio.NpzFile) -> np.ndarray | LosslessFrames:
    if "held" in data:
        return data["held"]
    blob, sizes = data["held_data"].tobytes(), data["held_sizes"]
    packets = tuple(blob[end - n:end] for n, end in zip(sizes, np.cumsum(sizes), strict=True))
    return LosslessFrames(tuple(int(v) for v in data["held_shape"]), packets)


class LiveCarry:
    """A live stream's carry, in memory: the Carry after each of the last `keep` segments
    written, so a prompt change can take back the unlisted video after any of them and go on
    from there (Stitcher.rewind with `rewind_point`). Each holds under a GOP of output frames
    (from the GOP the next segment starts in, encoded when the stitcher encodes) and the
    segment's raw tail, copied: under 2 MB at 256x256 (7 MB raw); `keep` covers the video
    held back (--ahead) and the segment being written."""

    def __init__(self, gop_frames: int, keep: int = 4) -> None:
        self.gop_frames = gop_frames
        self.keep = keep
        self.carries: dict[int, Carry] = {}

    def keep_from(self, frames_out: int) -> int:
        return frames_out - frames_out % self.gop_frames

    def save(self, segment: int, frame_start: int, frames: np.ndarray | EncodedVideo,
             held: np.ndarray | LosslessFrames, size: tuple[int, int] | None = None) -> None:
        kept = frames if isinstance(frames, EncodedVideo) else frames.copy()  # encoded: bytes
        tail = held if isinstance(held, LosslessFrames) else held.copy()
        self.carries[segment] = Carry(segment, frame_start, kept, tail, size)
        for old in sorted(self.carries)[:-self.keep]:
            del self.carries[old]

    def discard(self) -> None:
        self.carries.clear()

    def drop_after(self, segment: int) -> None:
        for k in [k for k in self.carries if k > segment]:
            del self.carries[k]

    def rewind_point(self, segment: int) -> ResumePoint | None:
        """Where the stitcher goes on to write segment `segment` + 1 again, from the GOP
        boundary at or before its first frame; None if that was not kept."""
        carry = self.carries.get(segment)
        if carry is None or carry.frame_start % self.gop_frames:
            return None
        return ResumePoint(segment + 1, carry.stop, carry.frame_start, carried=carry.frames,
                           held=carry.held)


def resume_point(timeline: Timeline, written: int, carry: Carry | None) -> ResumePoint:
    """Where the stitcher starts when the outputs hold frames [0, written) whole.

    With a carry that reaches `written`, the segment after the carried one comes first: it
    was in flight (being written, or waiting for its turn), and every frame before it is in the
    outputs or the carry. Otherwise the segment holding `written` and the one before it (for
    its tail) are rendered again."""
    if written == 0:
        return ResumePoint()
    if carry is not None and _fits(timeline, written, carry):
        frame = min(written, carry.stop)
        carried = carry.frames.from_frame(frame) if isinstance(carry.frames, EncodedVideo) \
            else carry.frames[frame - carry.frame_start:]
        return ResumePoint(carry.segment + 1, carry.stop, written, carried=carried,
                           held=carry.held)
    first = first_segment_for(timeline, written)
    return ResumePoint(first, timeline.frame_start(first), written)


def _fits(timeline: Timeline, written: int, carry: Carry) -> bool:
    k = carry.segment
    if not 0 <= k < timeline.num_segments - 1:
        return False
    # The frames segment k+1 writes: up to where segment k+2 takes over.
    reach = timeline.frame_start(k + 2) if k + 2 < timeline.num_segments \
        else timeline.spec.total_frames
    frame_shape = (timeline.spec.height, timeline.spec.width, 3)
    if isinstance(carry.frames, EncodedVideo):
        shape_fits = carry.size == frame_shape[:2]
        # The outputs commit whole GOPs, and the carry starts one: `written` starts a GOP.
        starts_gop = written >= carry.stop or written == carry.frame_start or bool(
            (carry.frames.keyframe & (carry.frames.pts == written)).any())
    else:
        shape_fits = carry.frames.shape[1:] == frame_shape
        starts_gop = True
    return (carry.frame_start <= written <= reach and carry.stop == timeline.frame_start(k + 1)
            and len(carry.held) == timeline.shared_tail(k) and shape_fits and starts_gop
            and (not len(carry.held) or carry.held.shape[1:] == frame_shape))
