"""Reorder segments, blend their shared frames, and stream the result to sinks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from stitcher.blend import BLENDS
from stitcher.probe import ProbePlan, SeamQuality, StepTotals, TemporalProbe
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
    carried: np.ndarray = field(default_factory=_no_frames, repr=False)
    held: np.ndarray = field(default_factory=_no_frames, repr=False)


class CarryStore(Protocol):
    """Keeps what a resume needs beyond the outputs' whole GOPs (stitcher.carry.CarryFile)."""

    def keep_from(self, frames_out: int) -> int: ...

    def save(self, segment: int, frame_start: int, frames: np.ndarray, held: np.ndarray) -> None: ...

    def discard(self) -> None: ...


@dataclass
class _Pending:
    frame_start: int
    frames: np.ndarray
    shared_tail: int


class Stitcher:
    """Accepts segments in any order and writes them in order.

    Segment k renders global frames [start_k, stop_k); its last `shared_tail` frames are
    also rendered by segment k+1 as its first frames. Those are held back until k+1
    arrives and then blended, so every output frame is written exactly once.
    """

    def __init__(self, sinks: Sequence[Sink], blend: str = "flow",
                 probe: ProbePlan | None = None, start: ResumePoint | None = None,
                 carry: CarryStore | None = None) -> None:
        self.sinks = list(sinks)
        self.blend = BLENDS[blend]
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
        probe = self.probe_plan
        self.probe = TemporalProbe(probe, start.written) if probe else None
        self.pending: dict[int, _Pending] = {}
        self.next_index = start.segment
        self.next_frame = start.frame_start
        self.written_before = start.written  # frames the outputs already hold
        self.held = start.held  # tail of the last emitted segment
        self.recent = start.carried  # the last output frames, up to next_frame: the carry
        if len(start.carried):
            if start.written + len(start.carried) != start.frame_start:
                raise ValueError("carried frames do not end where the resume starts")
            self._write(start.carried)
            if self.probe is not None:
                self.probe.observe(start.written, start.carried)

    def add(self, index: int, frame_start: int, frames: np.ndarray, shared_tail: int) -> StitchStats:
        if index < self.next_index or index in self.pending:
            raise ValueError(f"segment {index} was already given to the stitcher")
        if not 0 <= shared_tail <= len(frames):
            raise ValueError(f"segment {index}: shared tail {shared_tail} out of range")
        self.pending[index] = _Pending(frame_start, frames, shared_tail)
        emitted: list[int] = []
        seams: list[SeamQuality] = []
        written = 0
        blend_s = encode_s = 0.0
        while self.next_index in self.pending:
            seg = self.pending.pop(self.next_index)
            if seg.frame_start != self.next_frame:
                raise ValueError(f"segment {self.next_index} starts at frame {seg.frame_start}, "
                                 f"expected {self.next_frame}")
            shared = len(self.held)
            t0 = time.perf_counter()
            head = self.blend(self.held, seg.frames[:shared]) if shared else seg.frames[:0]
            t1 = time.perf_counter()
            body_stop = len(seg.frames) - seg.shared_tail
            if body_stop < shared:
                raise ValueError(f"segment {self.next_index} is shorter than its overlaps")
            out = np.concatenate([head, seg.frames[shared:body_stop]]) if shared else \
                seg.frames[:body_stop]
            new = out[max(0, self.written_before - self.next_frame):]
            self._write(new)
            t2 = time.perf_counter()
            if self.probe is not None and len(new):  # its few milliseconds count as blending
                seams += self.probe.observe(self.next_frame + len(out) - len(new), new)
                if seg.shared_tail == 0:  # the last segment: nothing follows its frames
                    seams += self.probe.finish()
            encode_s += t2 - t1
            blend_s += t1 - t0 + time.perf_counter() - t2
            self.held = seg.frames[body_stop:]
            self.next_frame += len(out)
            written += len(new)
            if self.carry is not None:
                self._keep(out, last=seg.shared_tail == 0)
            emitted.append(self.next_index)
            self.next_index += 1
        steps = self.probe.totals if self.probe is not None else StepTotals()
        return StitchStats(tuple(emitted), written, self.frames_out, blend_s, encode_s,
                           tuple(seams), steps)

    @property
    def frames_out(self) -> int:
        """Frames the outputs hold (also those a resumed run found there)."""
        return max(self.next_frame, self.written_before)

    def _keep(self, out: np.ndarray, last: bool) -> None:
        """Store the carry once `out`, the frames of segment `next_index`, went to the sinks."""
        assert self.carry is not None
        if last:  # the video is complete: nothing left to resume
            self.carry.discard()
            return
        keep_from = self.carry.keep_from(self.frames_out)
        out_start = self.next_frame - len(out)
        recent = out if keep_from >= out_start or not len(self.recent) else \
            np.concatenate([self.recent, out])
        start = self.next_frame - len(recent)
        keep_from = max(keep_from, start)  # a resumed run has nothing from before it
        self.recent = recent[keep_from - start:]
        self.carry.save(self.next_index, keep_from, self.recent, self.held)

    def _write(self, frames: np.ndarray) -> None:
        if len(frames):
            for sink in self.sinks:
                sink.write(frames)

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
