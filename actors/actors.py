"""Ray actors: thin shells that hold an engine, memory or stitcher object and forward.

The same objects run in one process in unit tests; here they run across a cluster.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import ray

from engine.stages import KeyframeStage, RenderedSegment, SegmentKeyframes, SegmentStage
from engine.timeline import SegmentPlan, Timeline
from memory.replay import ReplayMemory
from stitcher.outputs import OutputConfig, open_sinks
from stitcher.stitch import Stitcher, StitchStats


def _limit_threads(threads: int) -> None:
    """One actor per core: keep torch and OpenCV from oversubscribing the machine.

    Call it after the backend is loaded: torch is only configured where a backend imported
    it, so torch-free backends don't pay its start-up time and memory in every actor.
    """
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


@dataclass(frozen=True)
class SegmentInfo:
    """The small half of a render result: what the driver needs for stats."""

    index: int
    frames: int
    render_seconds: float
    keyframe_seconds: float


@ray.remote
class KeyframeActor:
    """Stage 1 and the only writer of the LMDB replay memory and ledger."""

    def __init__(self, timeline: Timeline, model: str, workdir: str, threads: int = 1) -> None:
        self.memory = ReplayMemory(Path(workdir))
        self.stage = KeyframeStage(timeline, model, self.memory)
        _limit_threads(threads)

    def put_job(self, info: dict) -> None:
        self.memory.put_job(info)

    def run_segment(self, k: int) -> SegmentKeyframes:
        return self.stage.run_segment(k)

    def mark_segment_done(self, k: int, info: dict) -> None:
        self.memory.mark_segment_done(k, info)

    def close(self) -> None:
        self.memory.close()


@ray.remote
class SegmentActor:
    """Stage 2: renders whole segments."""

    def __init__(self, model: str, threads: int = 1) -> None:
        self.stage = SegmentStage(model)
        _limit_threads(threads)

    @ray.method(num_returns=2)
    def render(self, plan: SegmentPlan, keys: SegmentKeyframes,
               after: RenderedSegment | None = None) -> tuple[SegmentInfo, RenderedSegment]:
        # `after` only exists for the autoregressive-chain baseline of the benchmarks: Ray
        # starts this task once the previous segment is done and ships it here, the way
        # chain extenders condition on the last frames of the segment before.
        segment = self.stage.render(plan, keys)
        info = SegmentInfo(plan.index, plan.num_frames, segment.model_seconds, keys.model_seconds)
        return info, segment


@ray.remote
class StitcherActor:
    """Stage 3: orders, blends and encodes; owns the output files."""

    def __init__(self, outputs: OutputConfig, blend: str = "flow", threads: int = 1) -> None:
        self.stitcher = Stitcher(open_sinks(outputs), blend=blend)
        _limit_threads(threads)

    def add(self, segment: RenderedSegment, shared_tail: int) -> StitchStats:
        return self.stitcher.add(segment.index, segment.frame_start, segment.frames, shared_tail)

    def close(self) -> int:
        self.stitcher.close()
        return self.stitcher.next_frame
