"""The render loop's own decisions, on the in-process executor: what it does when a render
is lost before the stitcher reads it (on Ray: the node holding it died)."""

from __future__ import annotations

import numpy as np

from engine.executor import Done, LocalExecutor
from engine.loop import LoopConfig, run_loop
from engine.models.base import create_backend
from engine.stages import KeyframeStage, SegmentStage
from engine.stats import JobClock, RunTotals
from memory.replay import ReplayMemory
from stitcher.stitch import Stitcher
from tests.conftest import make_spec, make_timeline


class ListSink:
    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def write(self, frames: np.ndarray) -> None:
        self.chunks.append(frames.copy())

    def close(self) -> None:
        pass


class RenderLost(Exception):
    pass


class LosesARender(LocalExecutor):
    """The first stitch of segment `lost` fails as a Ray stitch does when its input is gone."""

    def __init__(self, *args, lost: int) -> None:
        super().__init__(*args)
        self.lost = lost
        self.stitched: list[int] = []

    def stitch(self, segment: Done, shared_tail: int) -> Done:
        index = segment.value.index
        self.stitched.append(index)
        if index == self.lost and self.stitched.count(index) == 1:
            return Done(RenderLost(f"segment {index}"))
        return super().stitch(segment, shared_tail)

    def get(self, handles):
        for handle in handles:
            if isinstance(handle.value, RenderLost):
                raise handle.value
        return super().get(handles)

    def lost_input(self, exc: BaseException) -> bool:
        return isinstance(exc, RenderLost)


def _render(tmp_path, lost: int | None) -> tuple[np.ndarray, RunTotals, list[int]]:
    spec = make_spec(tmp_path, duration=20.0, workdir=tmp_path / "work")
    timeline = make_timeline(spec)
    backend = create_backend(spec.model)
    sink = ListSink()
    with ReplayMemory(spec.workdir) as memory:
        stages = (KeyframeStage(timeline, backend, memory), SegmentStage(backend),
                  Stitcher([sink], blend="crossfade"), memory)
        executor = LosesARender(*stages, lost=lost) if lost is not None else LocalExecutor(*stages)
        totals = RunTotals(spec.fps)
        run_loop(timeline, executor, LoopConfig(in_flight=2), totals, JobClock())
        executor.stitcher.close()
    stitched = executor.stitched if lost is not None else []
    return np.concatenate(sink.chunks), totals, stitched


def test_a_render_lost_before_it_is_written_is_rendered_again(tmp_path):
    reference, _, _ = _render(tmp_path / "a", lost=None)
    frames, totals, stitched = _render(tmp_path / "b", lost=2)
    assert np.array_equal(frames, reference)
    assert stitched.count(2) == 2  # given to the stitcher again, once rendered again
    assert [r["part"] for r in totals.restarts] == ["segment"]
    assert "segment 2 was lost" in totals.restarts[0]["what"]
