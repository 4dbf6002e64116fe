"""Temporal quality of every run, measured on the frames as they are written.

The probe keeps a downscaled copy of the last frame (short side PROBE_SIDE) and the step of
every frame (mean absolute difference to the frame before, 0-255 levels), and turns them into:
- the keyframe step ratio: the mean step onto a model keyframe (every second) over the mean
  step elsewhere (1.0: keyframes are invisible; a pulse once a second shows as more);
- one seam ratio per segment boundary (stitcher.quality.seam_ratio_at: the largest step in the
  blend window over the local median, both plus STEP_FLOOR so a still picture reads 1.0).
Memory is bounded for any length of video: running sums, and the steps of the last few seconds.
The figures only need frames with their global index, so whoever holds the frames can run a
probe (the stitcher today; the segment actors for their own frames if they encode).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from stitcher.quality import STEP_FLOOR, seam_ratio_at

PROBE_SIDE = 64


@dataclass(frozen=True)
class ProbePlan:
    """Where the keyframes and the boundaries are, in global frame indices."""

    fps: int
    segment_frames: int  # a boundary every this many frames
    overlap: int  # frames blended at each boundary
    total_frames: int | None = None  # None: unbounded (live)


@dataclass(frozen=True)
class SeamQuality:
    boundary: int  # index of the segment that starts at this boundary
    frame: int  # its first own frame (global index)
    seam_ratio: float


@dataclass(frozen=True)
class StepTotals:
    """Running sums of frame steps: at model keyframes and elsewhere."""

    keyframe_sum: float = 0.0
    keyframe_count: int = 0
    other_sum: float = 0.0
    other_count: int = 0

    @property
    def keyframe_step(self) -> float | None:
        return self.keyframe_sum / self.keyframe_count if self.keyframe_count else None

    @property
    def other_step(self) -> float | None:
        return self.other_sum / self.other_count if self.other_count else None

    @property
    def ratio(self) -> float | None:
        """Mean step onto a keyframe over the mean step elsewhere (None before both exist).

        A floor of STEP_FLOOR levels keeps a perfectly still picture at 1.0 instead of 0/0."""
        if self.keyframe_step is None or self.other_step is None:
            return None
        return (self.keyframe_step + STEP_FLOOR) / (self.other_step + STEP_FLOOR)



class TemporalProbe:
    def __init__(self, plan: ProbePlan, start_frame: int = 0) -> None:
        """`start_frame`: the first frame this probe sees (a resumed run measures what it
        writes; a seam whose window began before it is measured on the part it sees)."""
        self.plan = plan
        self.totals = StepTotals()
        self._last: np.ndarray | None = None  # downscaled previous frame
        self._next_frame = start_frame
        # The steps of the last frames, enough for one boundary's window and its context.
        self._steps: deque[float] = deque(maxlen=2 * plan.fps + plan.overlap + 8)
        self._next_boundary = 1
        while self._boundary_frame() <= start_frame:  # its step onto the boundary is not seen
            self._next_boundary += 1

    def observe(self, frame_start: int, frames: np.ndarray) -> tuple[SeamQuality, ...]:
        """Take frames written at global indices frame_start, ...; returns the seams whose
        windows became complete."""
        self._expect(frame_start)
        seams: list[SeamQuality] = []
        for frame in frames:
            small = _downscale(frame)
            step = None if self._last is None else _step(self._last, small)
            self._last = small
            self._take(step, seams)
        return tuple(seams)

    def observe_measured(self, frame_start: int, measured: MeasuredSteps) -> tuple[SeamQuality, ...]:
        """Like observe, for frames measured where they were (measure_steps). A probe that
        starts inside them (a resumed run) takes the frames from its start on."""
        skip = self._next_frame - frame_start
        if not 0 <= skip < measured.frames:
            self._expect(frame_start)
        seams: list[SeamQuality] = []
        if skip == 0:
            first = None if self._last is None else _step(self._last, measured.first)
            self._take(first, seams)
        else:
            self._take(None, seams)  # the frame before this probe's first is not seen
        for step in measured.steps[skip:]:
            self._take(float(step), seams)
        self._last = measured.last
        return tuple(seams)

    def _expect(self, frame_start: int) -> None:
        if frame_start != self._next_frame:
            raise ValueError(f"probe expected frame {self._next_frame}, got {frame_start}")

    def _take(self, step: float | None, seams: list[SeamQuality]) -> None:
        """Account for the next frame, `step` being its step from the frame before (None: the
        first frame seen)."""
        if step is not None:
            self._steps.append(step)
            t = self.totals
            if self._next_frame % self.plan.fps == 0:
                self.totals = StepTotals(t.keyframe_sum + step, t.keyframe_count + 1,
                                         t.other_sum, t.other_count)
            else:
                self.totals = StepTotals(t.keyframe_sum, t.keyframe_count,
                                         t.other_sum + step, t.other_count + 1)
        self._next_frame += 1
        if self._next_frame - 1 == self._seam_complete_at():
            seams.append(self._seam())

    def finish(self) -> tuple[SeamQuality, ...]:
        """The seams still open at the end of the video, measured on the frames that exist."""
        seams = []
        while self._boundary_frame() < self._next_frame - 1:
            seams.append(self._seam())
        return tuple(seams)

    def _boundary_frame(self) -> int:
        return self._next_boundary * self.plan.segment_frames

    def _seam_complete_at(self) -> int:
        """The frame whose step is the last one the next boundary's window reads."""
        return self._boundary_frame() + self.plan.overlap // 2 + 1 + self.plan.fps

    def _seam(self) -> SeamQuality:
        frame = self._boundary_frame()
        # self._steps[m] is the step onto frame `first + m`, i.e. diffs[first - 1 + m].
        first = self._next_frame - len(self._steps)
        diffs = np.array(self._steps, np.float32)
        ratio = seam_ratio_at(diffs, frame - (first - 1), self.plan.overlap, self.plan.fps,
                              floor=STEP_FLOOR)
        seam = SeamQuality(self._next_boundary, frame, ratio)
        self._next_boundary += 1
        return seam


@dataclass(frozen=True, eq=False)
class MeasuredSteps:
    """What the probe needs of frames it does not see: the downscaled first and last frame,
    and the step onto each frame after the first."""

    first: np.ndarray
    steps: np.ndarray  # float64 [frames - 1]
    last: np.ndarray

    @property
    def frames(self) -> int:
        return len(self.steps) + 1

    @property
    def nbytes(self) -> int:
        return self.first.nbytes + self.steps.nbytes + self.last.nbytes


def measure_steps(frames: np.ndarray) -> MeasuredSteps:
    """Measure consecutive frames (at least one) for a probe elsewhere (observe_measured)."""
    if not len(frames):
        raise ValueError("no frames to measure")
    first = last = _downscale(frames[0])
    steps = []
    for frame in frames[1:]:
        small = _downscale(frame)
        steps.append(_step(last, small))
        last = small
    return MeasuredSteps(first, np.array(steps, np.float64), last)


def _step(before: np.ndarray, after: np.ndarray) -> float:
    return float(np.abs(after - before).mean())


def _downscale(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    scale = PROBE_SIDE / min(height, width)
    if scale >= 1.0:
        return frame.astype(np.float32)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA).astype(np.float32)
