"""The render loop's own decisions, on the in-process executor: what it does when a render
is lost before the stitcher reads it (on Ray: the node holding it died)."""

from __future__ import annotations

from functools import partial

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


class LosesRenders(LocalExecutor):
    """A handle holding RenderLost fails as a Ray stitch does when its input is gone."""

    def get(self, handles):
        for handle in handles:
            if isinstance(handle.value, RenderLost):
                raise handle.value
        return super().get(handles)

    def lost_input(self, exc: BaseException) -> bool:
        return isinstance(exc, RenderLost)


class LosesARender(LosesRenders):
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


def _render(tmp_path, make_executor=LocalExecutor) -> tuple[np.ndarray, RunTotals, LocalExecutor]:
    spec = make_spec(tmp_path, duration=20.0, workdir=tmp_path / "work")
    timeline = make_timeline(spec)
    backend = create_backend(spec.model)
    sink = ListSink()
    with ReplayMemory(spec.workdir) as memory:
        executor = make_executor(KeyframeStage(timeline, backend, memory), SegmentStage(backend),
                                 Stitcher([sink], blend="crossfade"), memory)
        totals = RunTotals(spec.fps)
        run_loop(timeline, executor, LoopConfig(in_flight=2), totals, JobClock())  # closes the sink
    return np.concatenate(sink.chunks), totals, executor


def test_a_render_lost_before_it_is_written_is_rendered_again(tmp_path):
    reference, _, _ = _render(tmp_path / "a")
    frames, totals, executor = _render(tmp_path / "b", partial(LosesARender, lost=2))
    assert np.array_equal(frames, reference)
    assert executor.stitched.count(2) == 2  # given to the stitcher again, once rendered again
    assert [r["part"] for r in totals.restarts] == ["segment"]
    assert "segment 2 was lost" in totals.restarts[0]["what"]


class StitchWaitsOnALostWorker(LosesRenders):
    """Two workers; the stitch of segment `held` waits on the worker that rendered it and that
    worker is gone (on Ray: its node died and no other node has room to restart it). Nothing is
    rendering then, so only a loop that asks about idle workers finds the loss."""

    def __init__(self, *args, held: int) -> None:
        super().__init__(*args)
        self.held = held
        self.rendered_by: dict[int, int] = {}
        self.waiting: Done | None = None  # the held stitch, pending
        self.lost_worker = -1  # the worker it waits on
        self.asked: list[list[int]] = []

    @property
    def workers(self) -> int:
        return 2

    def render(self, worker, plan, keys, after=None):
        self.rendered_by[plan.index] = worker
        return super().render(worker, plan, keys, after)

    def stitch(self, segment: Done, shared_tail: int) -> Done:
        index = segment.value.index
        if index == self.held and self.waiting is None:
            self.waiting = Done(None)
            self.lost_worker = self.rendered_by[index]
            return self.waiting
        return super().stitch(segment, shared_tail)

    def wait(self, handles, timeout=None):
        return [h for h in handles if h is not self.waiting or isinstance(h.value, RenderLost)]

    def lost_workers(self, asked):
        self.asked.append(list(asked))
        assert len(self.asked) < 5, f"the loop never asked about worker {self.lost_worker}"
        return [self.lost_worker] if self.lost_worker in asked else []

    def drop_worker(self, worker: int) -> None:
        assert worker == self.lost_worker
        object.__setattr__(self.waiting, "value", RenderLost(f"segment {self.held}"))


def test_a_stitch_waiting_on_a_lost_idle_worker_does_not_hang_the_job(tmp_path):
    reference, _, _ = _render(tmp_path / "a")
    frames, totals, executor = _render(tmp_path / "b", partial(StitchWaitsOnALostWorker, held=1))
    assert np.array_equal(frames, reference)
    assert executor.asked[0] == [0, 1]
    what = [r["what"] for r in totals.restarts]
    assert len(what) == 2, what
    assert f"worker {executor.lost_worker} stopped answering" in what[0]
    assert "segment 1 was lost" in what[1]
