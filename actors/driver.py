"""Wire the three stages together on Ray and drive one job to the end."""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.actors import KeyframeActor, SegmentActor, SegmentInfo, StitcherActor
from actors.metrics import Metrics
from engine.spec import JobSpec
from engine.timeline import BeatTrack, Timeline
from memory.replay import STORE_NAME
from stitcher.audio_track import AudioInput
from stitcher.outputs import OutputConfig
from stitcher.stitch import StitchStats

GiB = 1 << 30


@dataclass
class StageTimes:
    keyframe: float = 0.0
    render: float = 0.0
    blend: float = 0.0
    encode: float = 0.0


@dataclass
class JobProgress:
    """Everything the driver learns while a job runs; the report is built from it."""

    frames: int = 0
    segments_done: list[int] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)
    first_segment_wall: float | None = None


def ray_init_local(workers: int, object_store_bytes: int) -> None:
    # Explicit figures: Ray must not size itself from the whole machine. address="local"
    # starts a private instance even when a `ray start` cluster runs on this machine.
    ray.init(
        address="local",
        num_cpus=workers + 1,
        object_store_memory=object_store_bytes,
        _memory=max(2 * GiB, object_store_bytes),
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=True,
    )


def object_store_size(spec: JobSpec, in_flight: int) -> int:
    """Room for every segment in flight twice over (render result + stitcher input)."""
    segment_bytes = (spec.segment_seconds * spec.fps + spec.overlap) * spec.width * spec.height * 3
    return int(min(max(512 << 20, 2.5 * in_flight * segment_bytes), 16 * GiB))


def output_config(spec: JobSpec) -> OutputConfig:
    audio = AudioInput(str(spec.audio), spec.audio_mode) if spec.audio else None
    return OutputConfig(fps=spec.fps, width=spec.width, height=spec.height, mp4=spec.out,
                        hls=spec.hls, audio=audio, hls_segment_seconds=spec.hls_segment_seconds,
                        crf=spec.crf, preset=spec.encoder_preset)


def prepare_workdir(workdir: Path) -> None:
    """A new job starts with an empty replay memory: old keyframes belong to another video."""
    store = workdir / STORE_NAME
    if store.exists():
        shutil.rmtree(store)
    workdir.mkdir(parents=True, exist_ok=True)


ProgressCallback = Callable[[int, float], None]  # (frames written so far, wall seconds)


def run_job(
    spec: JobSpec,
    beats: BeatTrack,
    address: str | None = None,
    metrics: Metrics | None = None,
    on_progress: ProgressCallback | None = None,
    blend: str = "flow",
    schedule: str = "parallel",
) -> dict:
    """Render one job; returns the run report (a JSON-ready dict)."""
    timeline = Timeline(spec, beats)
    in_flight_limit = 2 * spec.workers
    started_ray = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, configure_logging=False)
        else:
            ray_init_local(spec.workers, object_store_size(spec, in_flight_limit))
        started_ray = True
    prepare_workdir(spec.workdir)
    wall0 = time.perf_counter()
    progress = JobProgress()
    status = "ok"
    error: str | None = None
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    keyframer = KeyframeActor.options(num_cpus=0.5, scheduling_strategy=here).remote(
        timeline, spec.model, str(spec.workdir))
    stitcher = StitcherActor.options(num_cpus=0.5, scheduling_strategy=here).remote(
        output_config(spec), blend)
    workers = [SegmentActor.options(num_cpus=1, num_gpus=spec.gpus_per_worker).remote(spec.model)
               for _ in range(spec.workers)]
    keyframer.put_job.remote(spec.summary())
    try:
        _pump(timeline, keyframer, workers, stitcher, in_flight_limit, progress, metrics,
              on_progress, wall0, chain=schedule == "chain")
    except BaseException as exc:  # also Ctrl-C: finish the files before leaving
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        try:
            written = ray.get(stitcher.close.remote())
            progress.frames = max(progress.frames, written)
        except Exception as close_exc:  # noqa: BLE001 - report, never mask the first error
            error = error or f"closing outputs failed: {close_exc}"
            status = "failed"
        try:
            ray.get(keyframer.close.remote())
        except Exception as close_exc:  # noqa: BLE001 - a dead actor's LMDB closes with it
            error = error or f"closing the replay memory failed: {close_exc}"
            status = "failed"
        wall = time.perf_counter() - wall0
        report = build_report(spec, timeline, progress, wall, status, error)
        write_report(spec, report)
        if started_ray:
            ray.shutdown()
    return report


def _pump(timeline: Timeline, keyframer, workers: list, stitcher, limit: int,
          progress: JobProgress, metrics: Metrics | None,
          on_progress: ProgressCallback | None, wall0: float, chain: bool = False) -> None:
    """Keep up to `limit` segments in flight; forward renders to the stitcher as they finish.

    chain=True makes segment k wait for segment k-1 (the autoregressive baseline).
    """
    total = timeline.num_segments
    load = [0] * len(workers)
    renders: dict[ray.ObjectRef, tuple[int, int, ray.ObjectRef]] = {}  # info -> (k, actor, seg)
    stitches: dict[ray.ObjectRef, int] = {}
    next_k = 0
    previous: ray.ObjectRef | None = None
    while len(progress.segments_done) < total:
        while next_k < total and len(renders) + len(stitches) < limit:
            plan = timeline.segment(next_k)
            keys = keyframer.run_segment.remote(next_k)
            actor = min(range(len(workers)), key=load.__getitem__)
            info_ref, seg_ref = workers[actor].render.remote(plan, keys,
                                                             previous if chain else None)
            previous = seg_ref
            renders[info_ref] = (next_k, actor, seg_ref)
            load[actor] += 1
            next_k += 1
        if metrics:
            metrics.in_flight.set(len(renders) + len(stitches))
        ready, _ = ray.wait([*renders, *stitches], num_returns=1)
        ready_renders = [r for r in ready if r in renders]
        ready_stitches = [r for r in ready if r in stitches]
        for ref in ready_renders:
            k, actor, seg_ref = renders.pop(ref)
            load[actor] -= 1
            stitches[stitcher.add.remote(seg_ref, _shared_tail(timeline, k))] = k
        infos: list[SegmentInfo] = ray.get(ready_renders)
        for info in infos:
            progress.times.render += info.render_seconds
            progress.times.keyframe += info.keyframe_seconds
            if metrics:
                metrics.stage_seconds.labels("render").observe(info.render_seconds)
                metrics.stage_seconds.labels("keyframe").observe(info.keyframe_seconds)
                metrics.keyframes.inc(len(timeline.keyframe_times(info.index)))
        stats: list[StitchStats] = ray.get(ready_stitches)
        for ref, stat in zip(ready_stitches, stats, strict=True):
            stitches.pop(ref)
            _account(stat, timeline, keyframer, progress, metrics, wall0)
        if on_progress and ready_stitches:
            on_progress(progress.frames, time.perf_counter() - wall0)


def _shared_tail(timeline: Timeline, k: int) -> int:
    if k + 1 >= timeline.num_segments:
        return 0
    return timeline.segment(k).frame_stop - timeline.segment(k + 1).frame_start


def _account(stat: StitchStats, timeline: Timeline, keyframer, progress: JobProgress,
             metrics: Metrics | None, wall0: float) -> None:
    wall = time.perf_counter() - wall0
    progress.frames += stat.frames_written
    progress.times.blend += stat.blend_seconds
    progress.times.encode += stat.encode_seconds
    for k in stat.emitted:
        progress.segments_done.append(k)
        plan = timeline.segment(k)
        keyframer.mark_segment_done.remote(k, {"frame_start": plan.frame_start,
                                               "frame_stop": plan.frame_stop,
                                               "written_through": stat.next_frame})
    if stat.emitted and progress.first_segment_wall is None:
        progress.first_segment_wall = wall
    if metrics:
        metrics.frames.inc(stat.frames_written)
        metrics.segments.inc(len(stat.emitted))
        metrics.stage_seconds.labels("stitch").observe(stat.blend_seconds)
        metrics.stage_seconds.labels("encode").observe(stat.encode_seconds)
        metrics.realtime_factor.set(progress.frames / timeline.spec.fps / max(wall, 1e-9))


def build_report(spec: JobSpec, timeline: Timeline, progress: JobProgress, wall: float,
                 status: str, error: str | None) -> dict:
    from importlib.metadata import version

    from engine import __version__

    segments = [timeline.segment(k) for k in range(timeline.num_segments)]
    return {
        "status": status,
        "error": error,
        "frames": progress.frames,
        "expected_frames": spec.total_frames,
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
        "segments": [{"index": p.index, "frame_start": p.frame_start, "frame_stop": p.frame_stop,
                      "t0": p.t0, "t1": p.t1} for p in segments],
        "keyframe_times": timeline.all_keyframe_times(),
        "stage_seconds": vars(progress.times),
        "wall_seconds": wall,
        "first_segment_seconds": progress.first_segment_wall,
        "realtime_factor": progress.frames / spec.fps / wall if wall > 0 else None,
        "warnings": list(spec.warnings),
        "versions": {"lvp": __version__, "python": platform.python_version(),
                     "ray": ray.__version__, "av": version("av"), "numpy": version("numpy"),
                     "torch": version("torch")},
        "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }


def report_path(spec: JobSpec) -> Path:
    if spec.report:
        return spec.report
    if spec.out:
        return spec.out.with_suffix(".json")
    assert spec.hls is not None
    return spec.hls / "report.json"


def write_report(spec: JobSpec, report: dict) -> None:
    import json

    path = report_path(spec)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, path)
