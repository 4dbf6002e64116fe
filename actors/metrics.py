"""Prometheus metrics: one consumer of the plain stats the driver collects."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """A private registry per job, so tests and repeated jobs never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("lvp_frames", "Frames written to the outputs", registry=r)
        self.segments = Counter("lvp_segments", "Segments stitched and written", registry=r)
        self.keyframes = Counter("lvp_keyframes", "Stage 1 keyframes generated", registry=r)
        self.stage_seconds = Histogram("lvp_stage_seconds", "Seconds per call of each stage",
                                       ["stage"], buckets=_BUCKETS, registry=r)
        self.realtime_factor = Gauge("lvp_realtime_factor",
                                     "Video seconds produced per wall-clock second", registry=r)
        self.in_flight = Gauge("lvp_segments_in_flight", "Segments submitted, not yet stitched",
                               registry=r)
        self._server = None

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose /metrics; loopback only unless the caller asks otherwise."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
