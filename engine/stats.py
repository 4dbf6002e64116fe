"""Plain stats the render loop emits, and the stat loggers that consume them.

The loop knows nothing of Prometheus, progress bars or reports: it calls every logger it is
given (vLLM's stat-logger pattern). Each consumer is one implementation of `StatLogger`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.peak_memory import PeakMemory


@dataclass(frozen=True)
class SegmentRendered:
    """Stage 1 and Stage 2 finished one segment."""

    index: int
    frames: int
    render_seconds: float  # inside the segment model
    keyframe_seconds: float  # inside the keyframe model, for this segment's keyframes
    keyframes_made: int  # new keyframes Stage 1 generated for it (each counted once per job)
    # Workers that had died and were started again before this segment's work ("keyframe",
    # "segment"): each restart is named once, by the first result it produces.
    restarted: tuple[str, ...] = ()
    # Peak memory so far of the process that rendered it (Stage 2) and of Stage 1's process:
    # GPU memory where they use CUDA, else peak RSS (engine.peak_memory).
    memory: PeakMemory | None = None
    keyframe_memory: PeakMemory | None = None
    # Where the segment's worker encoded its own frames (stitcher.chunks): seconds it spent
    # encoding, and the bytes it sent the stitcher (raw frames when it did not encode).
    encode_seconds: float = 0.0
    shipped_bytes: int = 0
    # The worker process that rendered it (on Ray, its worker id): a new one for the same
    # worker means that worker died and was started again.
    made_by: str = ""


class SeamFigure(Protocol):
    """One segment boundary's quality (stitcher.probe.SeamQuality)."""

    @property
    def boundary(self) -> int: ...  # the segment that starts there
    @property
    def frame(self) -> int: ...
    @property
    def seam_ratio(self) -> float: ...


class StepFigures(Protocol):
    """The run's frame steps so far (stitcher.probe.StepTotals)."""

    @property
    def keyframe_step(self) -> float | None: ...
    @property
    def other_step(self) -> float | None: ...
    @property
    def ratio(self) -> float | None: ...


class StitchResult(Protocol):
    """What one stitcher call reports (stitcher.stitch.StitchStats)."""

    @property
    def emitted(self) -> tuple[int, ...]: ...  # segments fully written by this call, in order
    @property
    def frames_written(self) -> int: ...
    @property
    def next_frame(self) -> int: ...
    @property
    def blend_seconds(self) -> float: ...
    @property
    def encode_seconds(self) -> float: ...
    @property
    def worker_blend_seconds(self) -> float: ...  # segment workers' blends of these overlaps
    @property
    def seams(self) -> tuple[SeamFigure, ...]: ...
    @property
    def steps(self) -> StepFigures: ...


@dataclass(frozen=True)
class JobClock:
    """Wall-clock times of one job. `launched` is when the user started it (the lvp process's
    start), so start-up costs count in every figure a user could time from outside."""

    launched: float = field(default_factory=time.time)

    def now(self) -> float:
        """Seconds since launch."""
        return time.time() - self.launched


class StatLogger:
    """Base consumer: override what you need. Times are seconds since `JobClock.launched`."""

    def ready(self, startup_seconds: float) -> None:
        """The engine can render: executor up, models loaded."""

    def rendered(self, stats: SegmentRendered) -> None: ...

    def written(self, stats: StitchResult, now: float) -> None: ...

    def in_flight(self, segments: int) -> None: ...

    def restarted(self, part: str, what: str) -> None:
        """A part of the engine failed and was restarted; the job goes on (`what` says how)."""

    def finished(self, now: float) -> None: ...


class StatLoggers(StatLogger):
    """Fans every event out to a list of loggers."""

    def __init__(self, loggers: Sequence[StatLogger] = ()) -> None:
        self.loggers = list(loggers)

    def ready(self, startup_seconds: float) -> None:
        self._each("ready", startup_seconds)

    def rendered(self, stats: SegmentRendered) -> None:
        self._each("rendered", stats)

    def written(self, stats: StitchResult, now: float) -> None:
        self._each("written", stats, now)

    def in_flight(self, segments: int) -> None:
        self._each("in_flight", segments)

    def restarted(self, part: str, what: str) -> None:
        self._each("restarted", part, what)

    def finished(self, now: float) -> None:
        self._each("finished", now)

    def _each(self, event: str, *args: object) -> None:
        for logger in self.loggers:
            getattr(logger, event)(*args)


@dataclass
class StageSeconds:
    keyframe: float = 0.0
    render: float = 0.0
    blend: float = 0.0
    encode: float = 0.0
    segment_encode: float = 0.0  # encoding in the segment workers, beside their renders
    segment_blend: float = 0.0  # blending and encoding overlaps in the segment workers


class RunTotals(StatLogger):
    """Everything the run report needs, summed from the stats as they arrive."""

    def __init__(self, fps: int, start_frame: int = 0) -> None:
        self.fps = fps
        self.start_frame = start_frame  # frames the outputs held when this run began (resume)
        self.output_frames = start_frame  # frames the outputs hold now
        self.restarts: list[dict[str, str]] = []
        self.keyframes = 0
        self.segments_rendered = 0  # Stage 2 results this run (a resume renders some again)
        self.shipped_bytes = 0  # from the segment workers to the stitcher
        self.segments_done: list[int] = []
        self.stage_seconds = StageSeconds()
        self.startup_seconds: float | None = None
        self.first_segment_seconds: float | None = None
        self.first_segment_frames = 0
        self.end_seconds: float | None = None
        self.seams: list[SeamFigure] = []
        self.steps: StepFigures | None = None
        # (stage, process) -> its peak so far; a worker's peak only grows, the last is kept.
        self.peaks: dict[tuple[str, str], PeakMemory] = {}

    def ready(self, startup_seconds: float) -> None:
        self.startup_seconds = startup_seconds

    def rendered(self, stats: SegmentRendered) -> None:
        self.stage_seconds.keyframe += stats.keyframe_seconds
        self.stage_seconds.render += stats.render_seconds
        self.stage_seconds.segment_encode += stats.encode_seconds
        self.shipped_bytes += stats.shipped_bytes
        self.keyframes += stats.keyframes_made
        self.segments_rendered += 1
        for stage, peak in (("segment", stats.memory), ("keyframe", stats.keyframe_memory)):
            if peak is not None:
                known = self.peaks.get((stage, peak.process))
                if known is None or peak.bytes >= known.bytes:
                    self.peaks[(stage, peak.process)] = peak

    @property
    def frames(self) -> int:
        """Frames this run added to the outputs."""
        return self.output_frames - self.start_frame

    def restarted(self, part: str, what: str) -> None:
        self.restarts.append({"part": part, "what": what})

    def written(self, stats: StitchResult, now: float) -> None:
        self.output_frames = stats.next_frame
        self.stage_seconds.blend += stats.blend_seconds
        self.stage_seconds.encode += stats.encode_seconds
        self.stage_seconds.segment_blend += stats.worker_blend_seconds
        self.segments_done.extend(stats.emitted)
        self.seams.extend(stats.seams)
        self.steps = stats.steps
        if stats.emitted and self.first_segment_seconds is None:
            self.first_segment_seconds = now
            self.first_segment_frames = self.frames

    def finished(self, now: float) -> None:
        self.end_seconds = now

    def peak_memory(self) -> dict[str, Any]:
        """Peak memory per worker process and stage (GPU bytes where it used CUDA, else peak
        RSS), and the largest of each stage: what one GPU or node must hold per actor."""
        workers = [{"stage": stage, "worker": peak.process, "kind": peak.kind, "bytes": peak.bytes}
                   for (stage, _), peak in sorted(self.peaks.items())]
        return {
            "segment_max_bytes": max((w["bytes"] for w in workers if w["stage"] == "segment"),
                                     default=None),
            "keyframe_max_bytes": max((w["bytes"] for w in workers if w["stage"] == "keyframe"),
                                      default=None),
            "workers": workers,
        }

    def temporal(self) -> dict[str, Any]:
        """The run's temporal quality, measured by the stitcher on the frames it wrote."""
        steps = self.steps
        return {
            "keyframe_step_ratio": steps.ratio if steps else None,
            "keyframe_step": steps.keyframe_step if steps else None,
            "other_step": steps.other_step if steps else None,
            "worst_seam_ratio": max((s.seam_ratio for s in self.seams), default=None),
            "seams": [{"segment": s.boundary, "frame": s.frame, "seam_ratio": s.seam_ratio}
                      for s in self.seams],
        }

    def timing(self, wall_seconds: float) -> dict[str, float | None]:
        """The report's timing figures, all from launch except the loop's own."""
        video = self.frames / self.fps
        steady = None
        if self.first_segment_seconds is not None and wall_seconds > self.first_segment_seconds:
            steady = (self.frames - self.first_segment_frames) / self.fps / \
                (wall_seconds - self.first_segment_seconds)
        loop = None if self.startup_seconds is None else wall_seconds - self.startup_seconds
        return {
            "wall_seconds": wall_seconds,
            "startup_seconds": self.startup_seconds,
            "first_segment_seconds": self.first_segment_seconds,
            "loop_seconds": loop,
            "realtime_factor": video / wall_seconds if wall_seconds > 0 else None,
            "steady_realtime_factor": steady,
        }
