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
from engine.timeline import Timeline


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


def _run_from(first: int, timeline: Timeline, executor: Executor, cfg: LoopConfig,
              stats: StatLogger, clock: JobClock) -> None:
    total = timeline.num_segments - first
    load = [0] * executor.workers
    renders: dict[Handle, tuple[int, int, Handle]] = {}  # info -> (segment, worker, frames)
    stitches: dict[Handle, int] = {}  # stitch result -> segment
    records: dict[Handle, int] = {}  # ledger write -> segment
    written = 0
    next_k = first
    previous: Handle | None = None
    while written < total or records:
        while next_k < timeline.num_segments and len(renders) + len(stitches) < cfg.in_flight:
            plan = timeline.segment(next_k)
            keys = executor.keyframes(next_k)
            worker = min(range(len(load)), key=load.__getitem__)
            info, segment = executor.render(worker, plan, keys, previous if cfg.chain else None)
            previous = segment
            renders[info] = (next_k, worker, segment)
            load[worker] += 1
            next_k += 1
        stats.in_flight(len(renders) + len(stitches))
        ready = executor.wait([*renders, *stitches, *records])

        ready_renders = [h for h in ready if h in renders]
        for handle in ready_renders:
            k, worker, segment = renders.pop(handle)
            load[worker] -= 1
            stitches[executor.stitch(segment, timeline.shared_tail(k))] = k
        rendered: list[SegmentRendered] = executor.get(ready_renders)
        for info in rendered:
            stats.rendered(info)
            for part in info.restarted:
                stats.restarted(part, f"a {part} worker died and was started again; segment "
                                      f"{info.index} and the work in flight were done again")

        ready_stitches = [h for h in ready if h in stitches]
        results: list[StitchResult] = executor.get(ready_stitches)
        for handle, result in zip(ready_stitches, results, strict=True):
            stitches.pop(handle)
            written += len(result.emitted)
            for k in result.emitted:
                plan = timeline.segment(k)
                entry = {"frame_start": plan.frame_start, "frame_stop": plan.frame_stop,
                         "written_through": result.next_frame}
                records[executor.record(k, entry)] = k
            stats.written(result, clock.now())

        ready_records = [h for h in ready if h in records]
        executor.get(ready_records)  # a failed ledger write ends the job here
        for handle in ready_records:
            records.pop(handle)
    stats.in_flight(0)
