"""Reorder segments, blend their shared frames, and stream the result to sinks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from stitcher.blend import BLENDS
from stitcher.chunks import EncodeSettings, PackagedSegment, encode_chunk
from stitcher.encoder import EncodedVideo
from stitcher.probe import MeasuredSteps, ProbePlan, SeamQuality, StepTotals, TemporalProbe
from stitcher.sinks import Sink


@dataclass(frozen=True)
class StitchStats:
    """What one add() did; the driver turns these into metrics."""

    emitted: tuple[int, ...]  # segment indices fully written by this call, in order
    frames_written: int
    next_frame: int  # global index of the next frame to be written
    blend_seconds: float
    encode_seconds: float
    seams: tuple[SeamQuality, ...] = ()  # boundaries whose quality became known
    steps: StepTotals = StepTotals()  # the run's frame steps so far (keyframes vs elsewhere)


def _no_frames() -> np.ndarray:
    return np.empty((0,), dtype=np.uint8)


@dataclass(frozen=True)
class ResumePoint:
    """Where a stitcher starts: at segment `segment` (global frame `frame_start`), with the
    outputs already holding frames [0, written).

    Without a carry (stitcher.carry) the segment before the first one to write is given again
    only for its tail, which the next segment's head is blended with. With one, `carried` are
    the output frames [written, frame_start), written first, and `held` that tail."""

    segment: int = 0
    frame_start: int = 0
    written: int = 0
    carried: np.ndarray | EncodedVideo = field(default_factory=_no_frames, repr=False)
    held: np.ndarray = field(default_factory=_no_frames, repr=False)


class CarryStore(Protocol):
    """Keeps what a resume needs beyond the outputs' whole GOPs (stitcher.carry.CarryFile)."""

    def keep_from(self, frames_out: int) -> int: ...

    def save(self, segment: int, frame_start: int, frames: np.ndarray | EncodedVideo,
             held: np.ndarray, size: tuple[int, int] | None = None) -> None: ...

    def discard(self) -> None: ...


@dataclass
class _Pending:
    frame_start: int
    frames: np.ndarray | None  # a raw segment, overlaps included; or
    packaged: PackagedSegment | None  # one whose body its segment actor encoded
    shared_tail: int


Video = np.ndarray | EncodedVideo  # raw frames, or frames encoded in closed GOPs


class Stitcher:
    """Accepts segments in any order and writes them in order.

    Segment k renders global frames [start_k, stop_k); its last `shared_tail` frames are
    also rendered by segment k+1 as its first frames. Those are held back until k+1
    arrives and then blended, so every output frame is written exactly once.

    With `encoding` the stitcher writes encoded chunks (stitcher.chunks): it encodes each
    blended overlap, and each segment's body unless its segment actor did (add_packaged).
    Without it, the sinks get raw frames.
    """

    def __init__(self, sinks: Sequence[Sink], blend: str = "flow",
                 probe: ProbePlan | None = None, start: ResumePoint | None = None,
                 carry: CarryStore | None = None, encoding: EncodeSettings | None = None) -> None:
        self.sinks = list(sinks)
        self.blend = BLENDS[blend]
        self.encoding = encoding
        self.probe_plan = probe
        self.carry = carry
        self.probe: TemporalProbe | None = None
        self._begin(start or ResumePoint())

    def rewind(self, start: ResumePoint) -> None:
        """Go back to `start` (a live stream taking back unpublished video): the sinks were
        rewound to frame `start.written`; segments from `start.segment` come again."""
        totals = self.probe.totals if self.probe is not None else None
        self._begin(start)
        if self.probe is not None and totals is not None:
            self.probe.totals = totals  # the run's figures go on; the seams are measured anew

    def _begin(self, start: ResumePoint) -> None:
        probe, encoding = self.probe_plan, self.encoding
        encoded_carry = isinstance(start.carried, EncodedVideo)
        if encoded_carry and encoding is None:
            raise ValueError("an encoded carry needs the stitcher's encoding settings")
        # A probe measures the frames this run makes; carried ones that come encoded were
        # measured by the run that made them.
        probe_from = max(start.written, start.frame_start) if encoded_carry else start.written
        self.probe = TemporalProbe(probe, probe_from) if probe else None
        self.pending: dict[int, _Pending] = {}
        self.next_index = start.segment
        self.next_frame = start.frame_start
        self.written_before = start.written  # frames the outputs already hold
        self.held = start.held  # tail of the last emitted segment
        self.recent: Video = start.carried  # the last output frames, up to next_frame: the carry
        if len(start.carried):
            if start.written + len(start.carried) != start.frame_start:
                raise ValueError("carried frames do not end where the resume starts")
            if encoding is not None and not encoded_carry:  # a carry of raw frames, kept by
                # an lvp that encoded in the stitcher alone: one chunk from the resume point
                self.recent = encode_chunk(encoding, start.carried, start.written)
            self._write(self.recent)
            if self.probe is not None and not encoded_carry:
                self.probe.observe(start.written, start.carried)
        elif encoding is not None:
            self.recent = EncodedVideo.empty(start.frame_start)

    def add(self, index: int, frame_start: int, frames: np.ndarray, shared_tail: int) -> StitchStats:
        if not 0 <= shared_tail <= len(frames):
            raise ValueError(f"segment {index}: shared tail {shared_tail} out of range")
        return self._accept(index, _Pending(frame_start, frames, None, shared_tail))

    def add_packaged(self, segment: PackagedSegment) -> StitchStats:
        if self.encoding is None:
            raise ValueError("encoded segments need the stitcher's encoding settings")
        return self._accept(segment.index, _Pending(segment.frame_start, None, segment,
                                                    len(segment.tail)))

    def _accept(self, index: int, pending: _Pending) -> StitchStats:
        if index < self.next_index or index in self.pending:
            raise ValueError(f"segment {index} was already given to the stitcher")
        self.pending[index] = pending
        emitted: list[int] = []
        seams: list[SeamQuality] = []
        written = 0
        blend_s = encode_s = 0.0
        while self.next_index in self.pending:
            seg = self.pending.pop(self.next_index)
            if seg.frame_start != self.next_frame:
                raise ValueError(f"segment {self.next_index} starts at frame {seg.frame_start}, "
                                 f"expected {self.next_frame}")
            t0 = time.perf_counter()
            head, body, body_steps, tail = self._split(seg)
            shared = len(self.held)
            blended = self.blend(self.held, head) if shared else head
            t1 = time.perf_counter()
            starts = (self.next_frame, self.next_frame + len(blended))
            raw: list[tuple[Video, MeasuredSteps | None]] = [(blended, None), (body, body_steps)]
            out = [v for v, _ in raw]
            if self.encoding is not None:
                out = [v if isinstance(v, EncodedVideo) else encode_chunk(self.encoding, v, start)
                       for v, start in zip(out, starts, strict=True)]
            new = 0
            for video, start in zip(out, starts, strict=True):
                new += self._write_from(video, start)
            t3 = time.perf_counter()
            if self.probe is not None:
                for (video, measured), start in zip(raw, starts, strict=True):
                    if len(video) and start + len(video) > self.written_before:
                        seams += self._observe(start, video, measured)
            last = seg.shared_tail == 0  # the last segment: nothing follows its frames
            if self.probe is not None and last and new:
                seams += self.probe.finish()
            encode_s += t3 - t1
            blend_s += t1 - t0 + time.perf_counter() - t3
            self.held = tail
            self.next_frame += len(blended) + len(body)
            written += new
            if self.carry is not None:
                self._keep(out, last)
            emitted.append(self.next_index)
            self.next_index += 1
        steps = self.probe.totals if self.probe is not None else StepTotals()
        return StitchStats(tuple(emitted), written, self.frames_out, blend_s, encode_s,
                           tuple(seams), steps)

    def _split(self, seg: _Pending) -> tuple[np.ndarray, Video, MeasuredSteps | None, np.ndarray]:
        """A segment's frames shared with the one before, its own, and those shared with the
        one after."""
        shared = len(self.held)
        if seg.packaged is not None:
            p = seg.packaged
            head = p.head.unpack()
            if shared not in (0, len(head)):
                raise ValueError(f"segment {p.index} shares {len(head)} frames with the one "
                                 f"before; the stitcher holds {shared}")
            return head, p.body, p.body_steps, p.tail.unpack()
        assert seg.frames is not None
        body_stop = len(seg.frames) - seg.shared_tail
        if body_stop < shared:
            raise ValueError(f"segment {self.next_index} is shorter than its overlaps")
        frames = seg.frames
        return frames[:shared], frames[shared:body_stop], None, frames[body_stop:]

    def _write_from(self, video: Video, start: int) -> int:
        """Write the frames of `video` (global indices from `start`) the outputs lack."""
        skip = max(0, self.written_before - start)
        if skip >= len(video):
            return 0
        video = _from_frame(video, start, start + skip)
        self._write(video)
        return len(video)

    def _observe(self, start: int, raw: Video, measured: MeasuredSteps | None
                 ) -> tuple[SeamQuality, ...]:
        assert self.probe is not None
        if measured is not None:
            return self.probe.observe_measured(start, measured)
        assert isinstance(raw, np.ndarray)
        skip = max(0, self.written_before - start)
        return self.probe.observe(start + skip, raw[skip:])

    @property
    def frames_out(self) -> int:
        """Frames the outputs hold (also those a resumed run found there)."""
        return max(self.next_frame, self.written_before)

    def _keep(self, pieces: list[Video], last: bool) -> None:
        """Store the carry once `pieces`, the output of segment `next_index`, went to the sinks."""
        assert self.carry is not None
        if last:  # the video is complete: nothing left to resume
            self.carry.discard()
            return
        out_start = self.next_frame - sum(len(p) for p in pieces)
        keep_from = self.carry.keep_from(self.frames_out)
        keep_all = keep_from < out_start and len(self.recent)
        kept = ([self.recent] if keep_all else []) + [p for p in pieces if len(p)]
        start = self.next_frame - sum(len(p) for p in kept)
        keep_from = max(keep_from, start)  # a resumed run has nothing from before it
        self.recent = _from_frame(_join(kept), start, keep_from)
        size = (self.encoding.height, self.encoding.width) if self.encoding else None
        self.carry.save(self.next_index, keep_from, self.recent, self.held, size)

    def _write(self, video: Video) -> None:
        if not len(video):
            return
        for sink in self.sinks:
            if isinstance(video, EncodedVideo):
                sink.write_encoded(video)  # type: ignore[attr-defined]
            else:
                sink.write(video)

    def close(self) -> int:
        """Close every sink and return the number of frames the outputs hold.

        Held frames are not written: they are the first half of a blend whose second half
        (the next segment) never came, so a stopped render ends at its last finished frame,
        and a resumed one goes on from there as if it had never stopped."""
        # Always finish the files: what was already written must stay playable.
        for sink in self.sinks:
            sink.close()
        if self.pending:
            raise RuntimeError(f"stitcher closed while waiting for segment {self.next_index}")
        return self.frames_out


def _join(pieces: list[Video]) -> Video:
    if not pieces:
        return np.empty((0,), np.uint8)
    if isinstance(pieces[0], EncodedVideo):
        return EncodedVideo.join(pieces)  # type: ignore[arg-type]
    return np.concatenate(pieces)


def _from_frame(video: Video, start: int, frame: int) -> Video:
    if isinstance(video, EncodedVideo):
        return video.from_frame(frame)
    return video[frame - start:]
