"""The render loop: the one place that decides what runs when.

It keeps up to `in_flight` segments between Stage 1 and the outputs, gives each render to the
least loaded worker, forwards every finished render to the stitcher (segments may finish in
any order; the stitcher writes them in order) and records each written segment in the ledger.
It runs unchanged on any `Executor`: in this process or on Ray actors. A resumed render starts
at a later segment (cli/job.py works out which from what the outputs hold); real-time pacing
belongs here too.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.executor import Executor, Handle
from engine.stats import JobClock, SegmentRendered, StatLogger, StitchResult
from engine.timeline import SegmentPlan, Timeline

# How often the loop, when nothing finished, asks whether a busy worker is lost.
HEALTH_CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class LoopConfig:
    in_flight: int  # segments submitted and not yet written
    chain: bool = False  # segment k waits for segment k-1 (the autoregressive baseline)
    output_restarts: int = 3  # times the outputs may fail and be reopened in one run


def run_loop(timeline: Timeline, executor: Executor, cfg: LoopConfig, stats: StatLogger,
             clock: JobClock, first_segment: int = 0) -> None:
    """Render segments `first_segment`.. of `timeline` to the executor's outputs.

    When the outputs fail (the stitcher died), the executor reopens them where they are
    whole and the loop starts again from the segment that position needs, up to
    `cfg.output_restarts` times. Segment and keyframe workers restart inside the executor.
    """
    restarts = 0
    while True:
        try:
            _run_from(first_segment, timeline, executor, cfg, stats, clock)
            for part in executor.unreported_restarts():
                stats.restarted(part, f"a {part} worker died while idle and was started again")
            return
        except executor.output_failures as exc:
            if restarts >= cfg.output_restarts:
                raise
            restarts += 1
            first_segment = executor.reopen_outputs()
            stats.restarted("stitcher", f"the stitcher failed ({one_line(exc)}); the outputs "
                            f"were reopened where whole and the job went on from segment "
                            f"{first_segment}")


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


def _run_from(first: int, timeline: Timeline, executor: Executor, cfg: LoopConfig,
              stats: StatLogger, clock: JobClock) -> None:
    total = timeline.num_segments - first
    load = [0] * executor.workers
    alive = set(range(executor.workers))
    renders: dict[Handle, _Render] = {}  # info handle -> the render
    stitches: dict[Handle, int] = {}  # stitch result -> segment
    records: dict[Handle, int] = {}  # ledger write -> segment
    written = 0
    next_k = first
    previous: Handle | None = None

    def submit(plan: SegmentPlan, keys: Handle, after: Handle | None) -> Handle:
        worker = min(alive, key=lambda w: (load[w], w))
        info, segment = executor.render(worker, plan, keys, after)
        renders[info] = _Render(plan.index, worker, segment, plan, keys, after)
        load[worker] += 1
        return segment

    def lose(worker: int, why: str) -> None:
        """Give a lost worker's renders to the others; the job goes on with fewer."""
        alive.discard(worker)
        executor.drop_worker(worker)
        if not alive:
            raise RuntimeError(f"every segment worker is gone (the last: {why})")
        moved = [h for h, r in renders.items() if r.worker == worker]
        for handle in moved:
            r = renders.pop(handle)
            submit(r.plan, r.keys, r.after)
        load[worker] = 0
        stats.restarted("segment", f"a segment worker was lost ({why}); the job goes on with "
                                   f"{len(alive)}, which render its {len(moved)} segment(s)")

    while written < total or records:
        while next_k < timeline.num_segments and len(renders) + len(stitches) < cfg.in_flight:
            plan = timeline.segment(next_k)
            previous = submit(plan, executor.keyframes(next_k), previous if cfg.chain else None)
            next_k += 1
        stats.in_flight(len(renders) + len(stitches))
        ready = executor.wait([*renders, *stitches, *records], timeout=HEALTH_CHECK_SECONDS)
        if not ready:
            for worker in executor.lost_workers(sorted({r.worker for r in renders.values()})):
                lose(worker, f"worker {worker} stopped answering")
            continue

        for handle in [h for h in ready if h in renders]:
            r = renders.pop(handle)
            load[r.worker] -= 1
            try:
                info: SegmentRendered = executor.get([handle])[0]
            except executor.worker_failures as exc:
                renders[handle] = r  # lose() moves it with the worker's other renders
                load[r.worker] += 1
                lose(r.worker, one_line(exc))
                continue
            stats.rendered(info)
            for part in info.restarted:
                stats.restarted(part, f"a {part} worker died and was started again; segment "
                                      f"{info.index} and the work in flight were done again")
            stitches[executor.stitch(r.segment, timeline.shared_tail(r.k))] = r.k

        ready_stitches = [h for h in ready if h in stitches]
        results: list[StitchResult] = executor.get(ready_stitches)
        for handle, result in zip(ready_stitches, results, strict=True):
            stitches.pop(handle)
            written += len(result.emitted)
            for k in result.emitted:
                entry = {"frame_start": timeline.frame_start(k), "frame_stop": timeline.frame_stop(k),
                         "written_through": result.next_frame}
                records[executor.record(k, entry)] = k
            stats.written(result, clock.now())

        ready_records = [h for h in ready if h in records]
        executor.get(ready_records)  # a failed ledger write ends the job here
        for handle in ready_records:
            records.pop(handle)
    stats.in_flight(0)
