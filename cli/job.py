"""Run one render job: build the stages on an executor, run the loop, write the report."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.failure import one_line
from engine.executor import Executor, LocalExecutor
from engine.interrupts import interrupts_deferred
from engine.loop import LoopConfig, run_loop
from engine.models.base import BackendConfig, create_backend
from engine.spec import JobSpec, default_report
from engine.stages import KeyframeStage, SegmentStage
from engine.stats import JobClock, RunTotals, StatLogger, StatLoggers
from engine.threads import limit_threads
from engine.timeline import BeatTrack, Timeline
from memory.replay import STORE_NAME, ReplayMemory
from stitcher.audio_track import AudioInput
from stitcher.carry import CarryFile, LiveCarry, resume_point
from stitcher.outputs import OutputConfig, open_sinks
from stitcher.probe import ProbePlan
from stitcher.stitch import ResumePoint, Stitcher

EXECUTORS = ("ray", "local")


@dataclass(frozen=True)
class ResumePlan:
    written: int  # frames the outputs keep from an interrupted run (0: start afresh)
    resumed: bool  # the work folder holds this job: its store is kept
    complete: bool = False  # the outputs already hold the whole job


def output_config(spec: JobSpec) -> OutputConfig:
    audio = AudioInput(str(spec.audio), spec.audio_mode) if spec.audio else None
    return OutputConfig(fps=spec.fps, width=spec.width, height=spec.height, mp4=spec.out,
                        hls=spec.hls, audio=audio, hls_segment_seconds=spec.hls_segment_seconds,
                        crf=spec.crf, preset=spec.encoder_preset,
                        hls_live=spec.hls_live)  # lvp stream: paced sliding window


def carry_file(spec: JobSpec, outputs: OutputConfig) -> CarryFile | None:
    """Where the stitcher keeps what a resume needs beyond the outputs' whole GOPs (a live
    stream never resumes: it keeps none)."""
    return CarryFile(spec.workdir, outputs.gop_frames) if outputs.hls_live is None else None


def probe_plan(spec: JobSpec) -> ProbePlan:
    """Where the stitcher measures the run's temporal quality: keyframes and boundaries."""
    return ProbePlan(fps=spec.fps, segment_frames=spec.segment_seconds * spec.fps,
                     overlap=spec.overlap, total_frames=spec.total_frames)


def backend_config(spec: JobSpec) -> BackendConfig:
    return BackendConfig(weights=spec.weights, threads=1)


def prepare_workdir(workdir: Path, resumed: bool) -> None:
    """A new job starts with an empty replay memory: old keyframes belong to another video
    (a resumed job keeps its own). Only LMDB's own two files are removed (validation refused
    a store holding anything else, and a job there that is not this one without --overwrite)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if resumed:
        return
    store = workdir / STORE_NAME
    for name in ("data.mdb", "lock.mdb"):
        (store / name).unlink(missing_ok=True)
    CarryFile(workdir, 1).discard()


def local_executor(timeline: Timeline, spec: JobSpec, blend: str,
                   start: ResumePoint | None = None) -> LocalExecutor:
    """Every stage in this process, on the same objects the Ray actors hold."""
    start = start or ResumePoint()
    backend = create_backend(spec.model, backend_config(spec))
    memory = ReplayMemory(spec.workdir)
    try:
        keyframes = KeyframeStage(timeline, backend, memory)
        segments = SegmentStage(backend)
        outputs = output_config(spec)
        # A live stream in this process keeps its recent carries in memory: a prompt change
        # may take back video not listed yet (the loop's _rewind).
        live = outputs.hls_live
        carry = (LiveCarry(outputs.gop_frames, keep=math.ceil(live.ahead / spec.segment_seconds) + 2)
                 if live is not None else carry_file(spec, outputs))
        stitcher = Stitcher(open_sinks(outputs, start.written), blend=blend,
                            probe=probe_plan(spec), start=start, carry=carry,
                            encoding=outputs.encoding)
        limit_threads(backend.config.threads)  # as in the actors: the same frames
    except BaseException:
        memory.close()
        raise
    return LocalExecutor(keyframes, segments, stitcher, memory)


def run_job(
    spec: JobSpec,
    beats: BeatTrack,
    address: str | None = None,
    loggers: Sequence[StatLogger] = (),
    blend: str = "flow",
    schedule: str = "parallel",
    executor: str = "ray",
    clock: JobClock | None = None,
    resume: ResumePlan | None = None,
    in_flight: int | None = None,
) -> dict:
    """Render one job; returns the run report (a JSON-ready dict), also written to disk.

    `clock.launched` is when the user asked for the job (the lvp process's start time), so
    the report's times include start-up. A failure is recorded in the report and re-raised.
    `resume` (cli.resume.plan_resume) continues an interrupted run of this job. `in_flight`
    bounds the segments between Stage 1 and the outputs (default: two per worker; a live
    stream keeps it lower, so a prompt change waits behind fewer rendered segments).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}")
    clock = clock or JobClock()
    resume = resume or ResumePlan(0, resumed=False)
    timeline = Timeline(spec, beats)
    outputs = output_config(spec)
    carry = carry_file(spec, outputs)
    start = resume_point(timeline, resume.written, carry.load() if carry and resume.resumed else None)
    if resume.resumed:
        print(f"lvp: resuming this job at frame {resume.written} ({resume.written / spec.fps:.1f} s) "
              f"of {spec.total_frames}, rendering from segment {start.segment}", file=sys.stderr)
    totals = RunTotals(spec.fps, start_frame=resume.written)
    stats = StatLoggers([totals, *loggers])
    cfg = LoopConfig(in_flight=in_flight or 2 * spec.workers, chain=schedule == "chain")
    started_ray = False
    status, error = "ok", None
    runner: Executor | None = None
    try:
        prepare_workdir(spec.workdir, resume.resumed)
        if executor == "ray":
            from actors.cluster import connect
            from actors.ray_executor import RayExecutor

            started_ray = connect(spec, address, cfg.in_flight)
            runner = RayExecutor(timeline, spec.model, backend_config(spec), spec.workdir,
                                 outputs, blend, spec.workers, spec.gpus_per_worker,
                                 probe_plan(spec), start, carry)
        else:
            runner = local_executor(timeline, spec, blend, start)
        runner.start(spec.summary())
        stats.ready(clock.now())
        run_loop(timeline, runner, cfg, stats, clock, first_segment=start.segment)
    except BaseException as exc:  # also Ctrl-C: finish the files before leaving
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        error = one_line(exc)
        raise
    finally:
        with interrupts_deferred():
            report = _finish(spec, timeline, totals, stats, clock, runner, started_ray, status,
                             error)
    return report


def _finish(spec: JobSpec, timeline: Timeline, totals: RunTotals, stats: StatLogger,
            clock: JobClock, runner: Executor | None, started_ray: bool, status: str,
            error: str | None) -> dict[str, Any]:
    """Close the outputs and the ledger, stop a Ray we started, write the report."""
    try:
        if runner is not None:
            try:
                held = runner.close()
                if held != totals.output_frames and status == "ok":
                    status, error = "failed", (f"outputs hold {held} frames, "
                                               f"{totals.output_frames} were sent")
                totals.output_frames = max(totals.output_frames, held)
            except Exception as close_exc:  # noqa: BLE001 - report, never mask the first error
                error = error or f"closing the outputs or the ledger failed: {close_exc}"
                status = "failed"
        if started_ray:
            import ray

            ray.shutdown()
    finally:
        stats.finished(clock.now())
        report = build_report(spec, timeline, totals, clock.now(), status, error)
        write_report(spec, report)  # a full disk: the command line says it was not written
    return report


def build_report(spec: JobSpec, timeline: Timeline, totals: RunTotals, wall: float,
                 status: str, error: str | None) -> dict[str, Any]:
    from importlib.metadata import version

    from engine import __version__

    # A live stream's timeline runs on for a day: list what it made, not what it might have.
    count = timeline.num_segments if spec.live is None else max(totals.segments_done, default=-1) + 1
    segments = [(k, timeline.frame_start(k), timeline.frame_stop(k), *timeline.span(k))
                for k in range(count)]
    keyframe_times = list(timeline.track) if spec.live is None else \
        [t for t in timeline.track if t <= (segments[-1][4] if segments else 0.0)]
    return {
        "status": status,
        "error": error,
        "frames": totals.output_frames,
        "expected_frames": spec.total_frames,
        "resumed_from_frame": totals.start_frame,
        "frames_this_run": totals.frames,
        "segments_rendered": totals.segments_rendered,
        "restarts": totals.restarts,
        "fps": spec.fps,
        "size": [spec.width, spec.height],
        "duration_seconds": spec.duration,
        "model": spec.model,
        "seed": spec.seed,
        "workers": spec.workers,
        "overlap_frames": spec.overlap,
        "outputs": {"mp4": str(spec.out) if spec.out else None,
                    "hls": str(spec.hls) if spec.hls else None,
                    "workdir": str(spec.workdir)},
        "prompts": [{"start": s, "text": t} for s, t in
                    zip(spec.schedule.starts, spec.schedule.texts, strict=True)],
        "segments": [{"index": k, "frame_start": start, "frame_stop": stop, "t0": t0, "t1": t1}
                     for k, start, stop, t0, t1 in segments],
        "keyframe_times": keyframe_times,
        "keyframes_made": totals.keyframes,
        "stage_seconds": vars(totals.stage_seconds),
        "shipped_bytes": totals.shipped_bytes,  # segment workers -> stitcher
        "peak_memory": totals.peak_memory(),
        "temporal": totals.temporal(),
        **totals.timing(wall),
        "warnings": list(spec.warnings),
        "versions": {"lvp": __version__, "python": platform.python_version(),
                     "ray": version("ray"), "av": version("av"), "numpy": version("numpy"),
                     "torch": version("torch")},
        "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }


def report_complete(spec: JobSpec, beats: BeatTrack, clock: JobClock) -> bool:
    """The outputs already hold the whole job. The report of the run that finished it is kept;
    if there is none (that run was killed after its last fragment, before its report), one is
    written now. False if it could not be written."""
    try:
        previous = json.loads(report_path(spec).read_text())
        if previous.get("status") == "ok" and previous.get("frames") == spec.total_frames:
            return True
    except (OSError, ValueError):
        pass
    totals = RunTotals(spec.fps, start_frame=spec.total_frames)
    report = build_report(spec, Timeline(spec, beats), totals, clock.now(), "ok", None)
    return write_report(spec, report)


def report_path(spec: JobSpec) -> Path:
    return spec.report or default_report(spec.out, spec.hls)


def write_report(spec: JobSpec, report: dict) -> bool:
    """Write the report atomically; False (and no temp file left) if the disk refuses."""
    path = report_path(spec)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True
