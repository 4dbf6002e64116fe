"""The render loop: the one place that decides what runs when.

It keeps up to `in_flight` segments between Stage 1 and the outputs, gives each render to the
least loaded worker, forwards every finished render to the stitcher (segments may finish in
any order; the stitcher writes them in order) and records each written segment in the ledger.
It runs unchanged on any `Executor`: in this process or on Ray actors. A resumed render starts
at a later segment (cli/job.py works out which from what the outputs hold); real-time pacing
belongs here too.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from engine.executor import Executor, Handle
from engine.interrupts import interrupts_deferred
from engine.stats import JobClock, SegmentRendered, StatLogger, StitchResult
from engine.timeline import SegmentPlan, Timeline

# How often the loop, when nothing finished, asks whether a worker is lost.
HEALTH_CHECK_SECONDS = 5.0
# A paced (live) loop holding a rendered segment looks this often for room and prompt changes.
PACE_SECONDS = 0.05
# Unlisted video a prompt change takes back must be due at least this long from now, plus
# REWIND_MARGIN_FACTOR times what the last segments took to make (plan, keyframes, render,
# stitch), so the first segment made again is listed on time. Measured on the 2-core VM: the
# first segment after a rewind is written 1.1-1.2x a segment's making time after it.
REWIND_MARGIN_SECONDS = 0.2
REWIND_MARGIN_FACTOR = 1.25


@dataclass(frozen=True)
class LoopConfig:
    in_flight: int  # segments submitted and not yet written
    chain: bool = False  # segment k waits for segment k-1 (the autoregressive baseline)
    output_restarts: int = 3  # times the outputs may fail and be reopened in one run


def run_loop(timeline: Timeline, executor: Executor, cfg: LoopConfig, stats: StatLogger,
             clock: JobClock, first_segment: int = 0) -> None:
    """Render segments `first_segment`.. of `timeline` to the executor's outputs.

    When the outputs fail (the stitcher died), the executor reopens them where they are
    whole and the loop goes on from the segment that position needs, up to
    `cfg.output_restarts` times; renders already made are given to the new stitcher, not made
    again. Segment and keyframe workers restart inside the executor.
    """
    loop = _Loop(timeline, executor, cfg, stats, clock, first_segment)
    restarts = 0
    while True:
        try:
            loop.run()
            with interrupts_deferred():  # inside the retry: a stitcher may die finishing them
                executor.finish_outputs()
            for part, what in executor.unreported_restarts():
                stats.restarted(part, what)
            return
        except executor.output_failures as exc:
            if restarts >= cfg.output_restarts:
                raise
            restarts += 1
            first = executor.reopen_outputs()
            kept = loop.outputs_reopened(first)
            stats.restarted("stitcher", f"the stitcher failed ({one_line(exc)}); the outputs "
                            f"were reopened where whole and the job went on from segment "
                            f"{first}" + (f" ({kept} rendered segment(s) kept)" if kept else ""))


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


@dataclass
class _Render:
    """A render in flight, with what it takes to give it to another worker."""

    k: int
    worker: int
    segment: Handle
    plan: SegmentPlan
    keys: Handle
    after: Handle | None


class _Loop:
    """The loop's state, kept across a stitcher restart."""

    def __init__(self, timeline: Timeline, executor: Executor, cfg: LoopConfig,
                 stats: StatLogger, clock: JobClock, first: int) -> None:
        self.timeline = timeline
        self.executor = executor
        self.cfg = cfg
        self.stats = stats
        self.clock = clock
        self.load = [0] * executor.workers
        self.alive = set(range(executor.workers))
        self.made_seconds: deque[float] = deque(maxlen=4)  # wall seconds per segment (paced)
        self._start_at(first)

    def _start_at(self, first: int) -> None:
        self.next_k = first  # the next segment to submit
        self.next_write = first  # the next segment the outputs need
        self.renders: dict[Handle, _Render] = {}  # info handle -> the render
        self.sent: dict[int, _Render] = {}  # given to the stitcher, not yet written
        self.stitches: dict[Handle, int] = {}  # stitch result -> segment
        self.records: dict[Handle, int] = {}  # ledger write -> segment
        self.previous: Handle | None = None
        self.load = [0] * len(self.load)

    def outputs_reopened(self, first: int) -> int:
        """A new stitcher starts at segment `first`: give it the renders the dead one had not
        written; returns how many. If it must start before what was written (the outputs held
        less than the carry says, which the carry prevents), everything from there is redone."""
        if first < self.next_write:
            self._start_at(first)
            return 0
        for k in range(self.next_write, first):  # written by the stitcher that died
            self.sent.pop(k, None)
            self._record(k, self.timeline.frame_start(first))
        self.next_write = first
        self.stitches = {}
        for k in sorted(self.sent):
            self._stitch(self.sent[k])
        return len(self.sent)

    def _stitch(self, r: _Render) -> None:
        self.stitches[self.executor.stitch(r.segment, self.timeline.shared_tail(r.k))] = r.k

    def _submit(self, plan: SegmentPlan, keys: Handle, after: Handle | None) -> Handle:
        worker = min(self.alive, key=lambda w: (self.load[w], w))
        info, segment = self.executor.render(worker, plan, keys, after)
        self.renders[info] = _Render(plan.index, worker, segment, plan, keys, after)
        self.load[worker] += 1
        return segment

    def _lose(self, worker: int, why: str) -> None:
        """Give a lost worker's renders to the others; the job goes on with fewer."""
        self.alive.discard(worker)
        self.executor.drop_worker(worker)
        if not self.alive:
            raise RuntimeError(f"every segment worker is gone (the last: {why})")
        moved = [h for h, r in self.renders.items() if r.worker == worker]
        for handle in moved:
            r = self.renders.pop(handle)
            self._submit(r.plan, r.keys, r.after)
        self.load[worker] = 0
        took = f", which render its {len(moved)} segment(s)" if moved else ""
        self.stats.restarted("segment", f"a segment worker was lost ({why}); the job goes on "
                                        f"with {len(self.alive)}{took}")

    def _record(self, k: int, written_through: int) -> None:
        entry = {"frame_start": self.timeline.frame_start(k), "frame_stop": self.timeline.frame_stop(k),
                 "written_through": written_through}
        self.records[self.executor.record(k, entry)] = k

    def run(self) -> None:
        timeline, executor, cfg = self.timeline, self.executor, self.cfg
        while self.next_write < timeline.num_segments or self.records:
            if executor.paced:  # a prompt change asked since: take back what can be, first
                self._rewind_for_change()
            in_flight = len(self.renders) + len(self.sent)
            while self.next_k < timeline.num_segments and in_flight < cfg.in_flight:
                began = time.perf_counter()
                plan = timeline.segment(self.next_k)
                segment = self._submit(plan, executor.keyframes(self.next_k),
                                       self.previous if cfg.chain else None)
                if executor.paced:  # in this process: the segment is made by now
                    self.made_seconds.append(time.perf_counter() - began)
                self.previous = segment
                self.next_k += 1
                in_flight += 1
            self.stats.in_flight(in_flight)
            ready = executor.wait([*self.renders, *self.stitches, *self.records],
                                  timeout=HEALTH_CHECK_SECONDS)
            if not ready:
                # Every worker is asked, not only those rendering: a stitch may wait on any of
                # them (the render it was given lives there, or the overlap blended there).
                for worker in executor.lost_workers(sorted(self.alive)):
                    self._lose(worker, f"worker {worker} stopped answering")
                continue
            for handle in ready:
                if handle in self.renders:  # not moved to another worker by a loss just now
                    self._rendered(handle)
            for handle in [h for h in ready if h in self.stitches]:
                self._stitched(handle)
            ready_records = [h for h in ready if h in self.records]
            executor.get(ready_records)  # a failed ledger write ends the job here
            for handle in ready_records:
                self.records.pop(handle)
        self.stats.in_flight(0)

    def _rendered(self, handle: Handle) -> None:
        r = self.renders[handle]
        try:
            info: SegmentRendered = self.executor.get([handle])[0]
        except self.executor.worker_failures as exc:
            self._lose(r.worker, one_line(exc))  # moves this render with the worker's others
            return
        del self.renders[handle]
        self.load[r.worker] -= 1
        self.stats.rendered(info)
        for part in info.restarted:
            self.stats.restarted(part, f"a {part} worker died and was started again; segment "
                                       f"{info.index} and the work in flight were done again")
        if self.executor.paced and not self._when_due():
            return  # taken back for a prompt change: made again from an earlier segment
        self.sent[r.k] = r
        began = time.perf_counter()
        self._stitch(r)
        if self.executor.paced and self.made_seconds:
            self.made_seconds[-1] += time.perf_counter() - began

    def _when_due(self) -> bool:
        """A paced (live) loop holds a rendered segment until the outputs have room for it.
        A prompt change asked meanwhile may take back video not listed yet (`_rewind`), so
        it lands seconds sooner; then the held segment is dropped (False)."""
        while True:
            if self._rewind_for_change():
                return False
            if self.executor.has_room():
                return True
            time.sleep(PACE_SECONDS)

    def _rewind_for_change(self) -> bool:
        live = self.timeline.spec.live
        return live is not None and live.has_pending() and self._rewind()

    def _rewind(self) -> bool:
        """Go back to the earliest segment whose video is not listed yet and due late
        enough to be made again in time; the prompt change then applies right after the
        keyframes the written segments before it used (Timeline._steer)."""
        live = self.timeline.spec.live
        assert live is not None
        margin = REWIND_MARGIN_SECONDS + REWIND_MARGIN_FACTOR * max(self.made_seconds, default=1.0)
        first = self.executor.rewind(self.timeline, margin, before=live.planned)
        if first is None:
            return False
        live.planned = first - 1  # Stage 1 goes back to its state after segment first - 1
        self.renders.clear()
        self.sent.clear()
        self.stitches.clear()
        self.load = [0] * len(self.load)
        self.next_k = self.next_write = first
        self.previous = None
        return True

    def _stitched(self, handle: Handle) -> None:
        try:
            result: StitchResult = self.executor.get([handle])[0]
        except Exception as exc:
            if not self.executor.lost_input(exc):
                raise
            # The render was lost before the stitcher read it (its node died): make it again.
            r = self.sent.pop(self.stitches.pop(handle))
            self._submit(r.plan, r.keys, r.after)
            self.stats.restarted("segment", f"segment {r.k} was lost before it was written "
                                            f"({one_line(exc)}); it was rendered again")
            return
        del self.stitches[handle]
        for k in result.emitted:
            self.sent.pop(k, None)
            self._record(k, result.next_frame)
            self.next_write = k + 1
        self.stats.written(result, self.clock.now())
