"""One executor interface for the render loop, and the in-process executor.

An executor runs the three stages somewhere and hands back opaque handles to their results
(vLLM's engine -> executor -> worker split): the loop in engine/loop.py decides what runs when,
the executor decides where. `LocalExecutor` runs everything here, at once, in call order
(tests, `lvp eval`, `lvp render --executor local`); actors/ray_executor.py runs the same stage
objects in Ray actors, where a handle is an ObjectRef and results flow actor to actor.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engine.stages import KeyframeStage, RenderedSegment, SegmentStage, rendered_stats
from engine.stats import SegmentRendered, StitchResult
from engine.timeline import CONTEXT_KEYFRAMES, SegmentPlan, Timeline
from stitcher.carry import LiveCarry
from stitcher.sinks import HLSSink
from stitcher.stitch import Stitcher


class Stitching(Protocol):
    """Stage 3 (stitcher.stitch.Stitcher): segments in any order, one stream out."""

    def add(self, index: int, frame_start: int, frames: np.ndarray, shared_tail: int) -> StitchResult: ...

    def close(self) -> int: ...  # frames written in all


class Ledger(Protocol):
    """The job's durable record (memory.replay.ReplayMemory)."""

    def put_job(self, info: dict[str, Any]) -> None: ...

    def mark_segment_done(self, index: int, info: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


Handle = Any  # an executor's reference to a result that may not exist yet


class Executor(ABC):
    """Where the stages run. Every method returns at once except `start`, `wait`, `get`,
    `finish_outputs` and `close`; a failure inside a stage surfaces from `get` (or `start`,
    `finish_outputs`, `close`)."""

    # Failures after which `reopen_outputs` can carry on (a dead stitcher process); none here.
    output_failures: tuple[type[BaseException], ...] = ()

    def reopen_outputs(self) -> int:
        """Open the outputs again where they are whole; returns the segment to go on from."""
        raise NotImplementedError(f"{type(self).__name__} cannot reopen its outputs")

    # Failures of a render after which its worker is gone for good (Ray gave up restarting it).
    worker_failures: tuple[type[BaseException], ...] = ()

    def lost_input(self, exc: BaseException) -> bool:
        """Whether a stitch failed because the render it was given is gone (it lived on a
        node that died before the stitcher read it), not because the stitcher did."""
        return False

    def lost_workers(self, asked: Sequence[int]) -> list[int]:
        """Of the workers `asked` about, those that have not answered for too long: dead and
        not coming back (no node has room to restart them), or hung. Never blocks."""
        return []

    def drop_worker(self, worker: int) -> None:
        """Stop a lost worker for good; the loop gives its renders to the others."""
        raise NotImplementedError(f"{type(self).__name__} cannot lose workers")

    def unreported_restarts(self) -> list[tuple[str, str]]:
        """(part, what happened) for workers ("segment", "keyframe") that died while idle, so
        no result said so: started again, or not running again. Asked once the job is done."""
        return []

    # A live stream whose outputs can take back unlisted video (LocalExecutor with a live HLS
    # sink): the loop waits for room before each stitch, and may rewind.
    paced: bool = False

    def has_room(self) -> bool:
        """Whether the outputs take the next segment now (only asked when `paced`)."""
        return True

    def rewind(self, timeline: Timeline, margin: float, before: int) -> int | None:
        """Take back the written video after the earliest segment w < `before` whose successor starts
        in a segment not listed yet and due at least `margin` seconds from now: the outputs
        go back to there and the replay memory forgets what was made after w's keyframes.
        Returns w + 1, the segment to go on from; None (nothing changed) if there is none."""
        return None

    @property
    @abstractmethod
    def workers(self) -> int:
        """Segment renderers that can work at once."""

    @abstractmethod
    def start(self, job: dict[str, Any]) -> None:
        """Record the job in the ledger and wait until every stage is ready to work."""

    @abstractmethod
    def keyframes(self, k: int) -> Handle:
        """Stage 1 for segment k (SegmentKeyframes). Calls come in segment order."""

    @abstractmethod
    def render(self, worker: int, plan: SegmentPlan, keys: Handle,
               after: Handle | None = None) -> tuple[Handle, Handle]:
        """Stage 2 on one worker: handles to (SegmentRendered, RenderedSegment). `after`, a
        previous segment's handle, makes this render wait for it (the chain baseline)."""

    @abstractmethod
    def stitch(self, segment: Handle, shared_tail: int) -> Handle:
        """Stage 3 for one rendered segment: a handle to its StitchResult."""

    @abstractmethod
    def record(self, k: int, entry: dict[str, Any]) -> Handle:
        """Write segment k's ledger entry: a handle that fails if the write failed."""

    @abstractmethod
    def wait(self, handles: Sequence[Handle], timeout: float | None = None) -> list[Handle]:
        """Block until at least one of `handles` is ready, or `timeout` seconds passed;
        return the ready ones (none after a timeout)."""

    @abstractmethod
    def get(self, handles: Sequence[Handle]) -> list[Any]:
        """The results behind ready handles (raises a stage's failure)."""

    _frames_out: int | None = None  # set once the outputs are finished

    def finish_outputs(self) -> int:
        """Write the outputs' last frames and trailers; frames written in all. The loop calls
        this inside its retry: a stitcher that dies here (one of `output_failures`) is
        replaced like one that dies mid-job, so a finished job always has whole files."""
        if self._frames_out is None:
            self._frames_out = self._close_outputs()
        return self._frames_out

    def close(self) -> int:
        """Finish the outputs (if the loop did not) and the ledger, whatever happened;
        frames written in all."""
        try:
            return self.finish_outputs()
        finally:
            self._close_ledger()

    @abstractmethod
    def _close_outputs(self) -> int:
        """Close the stitcher's sinks; frames they hold."""

    @abstractmethod
    def _close_ledger(self) -> None:
        """Close the replay memory."""


def _live_rewind(stitcher: Stitching) -> tuple[HLSSink, LiveCarry] | None:
    """The live HLS sink and in-memory carry of a stitcher that can take back unlisted video."""
    if not isinstance(stitcher, Stitcher) or not isinstance(stitcher.carry, LiveCarry):
        return None
    sinks = stitcher.sinks
    if len(sinks) != 1 or not isinstance(sinks[0], HLSSink) or not sinks[0].can_rewind:
        return None
    return sinks[0], stitcher.carry


@dataclass(frozen=True, eq=False)  # compared by identity: the loop keys dicts by handle
class Done:
    """A local result: computed when it was asked for."""

    value: Any


class LocalExecutor(Executor):
    """Every stage in this process, computed at the call: the reference the Ray executor
    must match frame for frame."""

    def __init__(self, keyframes: KeyframeStage, segments: SegmentStage, stitcher: Stitching,
                 ledger: Ledger) -> None:
        self.keyframe_stage = keyframes
        self.segment_stage = segments
        self.stitcher = stitcher
        self.ledger = ledger
        self._live = _live_rewind(stitcher)
        if self._live is not None:
            self.paced = True
            self._live[0].pace_in_sink = False  # the loop waits, where a change can reach it

    def has_room(self) -> bool:
        return self._live is None or self._live[0].has_room()

    def rewind(self, timeline: Timeline, margin: float, before: int) -> int | None:
        if self._live is None:
            return None
        sink, carry = self._live
        stitcher = self.stitcher
        assert isinstance(stitcher, Stitcher)
        now = time.time()
        points = {frame for frame, due in sink.rewind_points() if due - now >= margin}
        for w in sorted(k for k in carry.carries if k < before):
            start = carry.rewind_point(w)
            last_context = timeline.track_span(w)[1] + CONTEXT_KEYFRAMES
            if (start is None or start.written not in points or w >= stitcher.next_index
                    or last_context + 1 >= len(timeline.track)):
                continue
            if not sink.rewind(start.written):
                return None
            forget = getattr(self.ledger, "forget_after", None)
            if forget is not None:
                forget(timeline.track[last_context], w + 1)
            carry.drop_after(w)
            stitcher.rewind(start)
            return w + 1
        return None

    @property
    def workers(self) -> int:
        return 1

    def start(self, job: dict[str, Any]) -> None:
        self.ledger.put_job(job)

    def keyframes(self, k: int) -> Done:
        return Done(self.keyframe_stage.run_segment(k))

    def render(self, worker: int, plan: SegmentPlan, keys: Done,
               after: Done | None = None) -> tuple[Done, Done]:
        segment = self.segment_stage.render(plan, keys.value)
        info: SegmentRendered = rendered_stats(keys.value, segment)
        return Done(info), Done(segment)

    def stitch(self, segment: Done, shared_tail: int) -> Done:
        seg: RenderedSegment = segment.value
        return Done(self.stitcher.add(seg.index, seg.frame_start, seg.frames, shared_tail))

    def record(self, k: int, entry: dict[str, Any]) -> Done:
        self.ledger.mark_segment_done(k, entry)
        return Done(None)

    def wait(self, handles: Sequence[Done], timeout: float | None = None) -> list[Done]:
        return list(handles)

    def get(self, handles: Sequence[Done]) -> list[Any]:
        return [h.value for h in handles]

    def _close_outputs(self) -> int:
        return self.stitcher.close()

    def _close_ledger(self) -> None:
        self.ledger.close()
