"""Prometheus metrics: a stat logger over the render loop's plain stats."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from engine.stats import SegmentRendered, StatLogger, StitchResult

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# After the job, /metrics stays up this long by default: Prometheus scrapes every 15 s by
# default, so twice that lets one scrape see the final values.
DEFAULT_LINGER_SECONDS = 30.0
_SEAM_BUCKETS = (1.0, 1.1, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0)


class PrometheusLogger(StatLogger):
    """A private registry per job, so tests and repeated jobs never collide.

    Stage names match the run report's `stage_seconds`: keyframe, render, blend, encode
    (the stitcher's), segment_encode and segment_blend (in the segment workers).
    """

    def __init__(self, fps: int) -> None:
        self.fps = fps
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("lvp_frames", "Frames written to the outputs", registry=r)
        self.segments = Counter("lvp_segments", "Segments stitched and written", registry=r)
        self.keyframes = Counter("lvp_keyframes", "Stage 1 keyframes generated (each once)",
                                 registry=r)
        self.stage_seconds = Histogram("lvp_stage_seconds", "Seconds per call of each stage",
                                       ["stage"], buckets=_BUCKETS, registry=r)
        self.shipped = Counter("lvp_shipped_bytes", "Bytes the segment workers sent the "
                               "stitcher (encoded frames and the raw overlaps)", registry=r)
        self.realtime_factor = Gauge("lvp_realtime_factor",
                                     "Video seconds written per wall-clock second since launch",
                                     registry=r)
        self.in_flight_segments = Gauge("lvp_segments_in_flight",
                                        "Segments submitted, not yet written", registry=r)
        self.seam_ratio = Histogram("lvp_seam_ratio",
                                    "Per segment boundary: largest frame step in the blend window "
                                    "over the local median (1: invisible)",
                                    buckets=_SEAM_BUCKETS, registry=r)
        self.worst_seam_ratio = Gauge("lvp_worst_seam_ratio", "Largest seam ratio so far",
                                      registry=r)
        self.keyframe_step_ratio = Gauge("lvp_keyframe_step_ratio",
                                         "Mean frame step onto a model keyframe over the mean "
                                         "step elsewhere, so far (1: keyframes invisible)",
                                         registry=r)
        self.peak_memory = Gauge("lvp_peak_memory_bytes",
                                 "Peak memory of each worker process: GPU memory allocated where "
                                 "it uses CUDA (kind=gpu), else peak resident set (kind=rss)",
                                 ["stage", "worker", "kind"], registry=r)
        self._peaks: dict[tuple[str, str, str], int] = {}
        self._worst_seam = 0.0
        self._written_frames = 0
        self._server = None
        self._done = threading.Event()

    # StatLogger
    def rendered(self, stats: SegmentRendered) -> None:
        self.stage_seconds.labels("render").observe(stats.render_seconds)
        self.stage_seconds.labels("keyframe").observe(stats.keyframe_seconds)
        self.stage_seconds.labels("segment_encode").observe(stats.encode_seconds)
        self.shipped.inc(stats.shipped_bytes)
        self.keyframes.inc(stats.keyframes_made)
        for stage, peak in (("segment", stats.memory), ("keyframe", stats.keyframe_memory)):
            if peak is not None:  # a peak only grows; a result arriving late may hold a lower one
                key = (stage, peak.process, peak.kind)
                self._peaks[key] = max(self._peaks.get(key, 0), peak.bytes)
                self.peak_memory.labels(*key).set(self._peaks[key])

    def written(self, stats: StitchResult, now: float) -> None:
        self._written_frames += stats.frames_written
        self.frames.inc(stats.frames_written)
        self.segments.inc(len(stats.emitted))
        self.stage_seconds.labels("blend").observe(stats.blend_seconds)
        self.stage_seconds.labels("encode").observe(stats.encode_seconds)
        self.stage_seconds.labels("segment_blend").observe(stats.worker_blend_seconds)
        self.realtime_factor.set(self._written_frames / self.fps / max(now, 1e-9))
        for seam in stats.seams:
            self.seam_ratio.observe(seam.seam_ratio)
            self._worst_seam = max(self._worst_seam, seam.seam_ratio)
            self.worst_seam_ratio.set(self._worst_seam)
        if stats.steps.ratio is not None:
            self.keyframe_step_ratio.set(stats.steps.ratio)

    def in_flight(self, segments: int) -> None:
        self.in_flight_segments.set(segments)

    def finished(self, now: float) -> None:
        self.realtime_factor.set(self._written_frames / self.fps / max(now, 1e-9))

    # server
    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose /metrics; loopback only unless the caller asks otherwise."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)

    def linger(self, seconds: float) -> None:
        """Keep serving the final values for `seconds` (Ctrl-C ends the wait)."""
        if self._server is not None and seconds > 0:
            self._done.wait(seconds)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
