"""What the viewers get, read back from the playlist: lag, segments, late ones, and when a
prompt change reached the stream.

It reads the published playlist (as a player does), so it measures the same in every mode:
a stream rendered in this process, in a Ray actor, or a `lvp render --hls` folder served
with `lvp stream --serve DIR`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 60)
LATE_TOLERANCE = 0.05  # seconds, as stitcher.playlist.LivePublisher


@dataclass
class Listing:
    media_sequence: int
    segments: list[tuple[str, float, float | None]]  # uri, duration, program date (epoch s)
    ended: bool


def parse_playlist(text: str) -> Listing:
    sequence, segments, ended = 0, [], False
    duration: float | None = None
    date: float | None = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            date = datetime.fromisoformat(line.split(":", 1)[1]).timestamp()
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif line and not line.startswith("#") and duration is not None:
            segments.append((line, duration, date))
            duration = date = None
    return Listing(sequence, segments, ended)


@dataclass
class PendingChange:
    video_time: float
    asked_wall: float
    text: str


class PlaylistWatcher:
    """Polls the playlist every `interval` seconds on a thread and keeps the live metrics."""

    def __init__(self, playlist: Path, registry: CollectorRegistry | None = None,
                 interval: float = 0.1,
                 changes: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.playlist = Path(playlist)
        self._changes = changes  # the applied prompt changes so far (LivePrompts.changes)
        self._changes_seen = 0
        self.interval = interval
        r = registry or CollectorRegistry()
        self.lag_gauge = Gauge("lvp_live_lag_seconds", "How overdue the next segment is at the "
                               "live edge (0 while the stream keeps wall-clock pace)", registry=r)
        self.published_counter = Counter("lvp_live_segments_published",
                                         "Segments listed on the live playlist", registry=r)
        self.late_counter = Counter("lvp_live_late_segments",
                                    "Segments listed after their wall-clock due time", registry=r)
        self.latency_hist = Histogram("lvp_live_prompt_change_latency_seconds",
                                      "From a prompt change's request to the playlist listing "
                                      "the first segment that shows it", buckets=_LATENCY_BUCKETS,
                                      registry=r)
        self.lock = threading.Lock()
        self.published = 0  # segments ever listed (media sequence + listed)
        self.video_seconds = 0.0  # of media ever listed
        self.late = 0
        self.ended = False
        self.first_listed_wall: float | None = None
        self._next_date: float | None = None  # when the next segment is due (its PDT)
        self._pending: list[PendingChange] = []
        self.latencies: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lvp-live-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.poll()  # the final playlist

    def _collect_changes(self) -> None:
        applied = self._changes() if self._changes else []
        for change in applied[self._changes_seen:]:
            self._pending.append(PendingChange(change["video_time"], change["asked_wall"],
                                               change["text"]))
        self._changes_seen = len(applied)
        # A change a later one took back (a live stream's rewind) is never shown.
        gone = {(c["video_time"], c["asked_wall"], c["text"]) for c in applied if c.get("taken_back")}
        if gone:
            self._pending = [c for c in self._pending
                             if (c.video_time, c.asked_wall, c.text) not in gone]

    def lag(self) -> float:
        with self.lock:
            if self.ended or self._next_date is None:
                return 0.0
            return max(0.0, time.time() - self._next_date)

    def end_due(self) -> float | None:
        """Wall time at which the last listed segment ends by the stream's clock."""
        with self.lock:
            return self._next_date

    def status(self) -> dict[str, Any]:
        lag = self.lag()
        with self.lock:
            return {"live_lag_seconds": round(lag, 3), "segments_published": self.published,
                    "video_seconds_published": round(self.video_seconds, 3),
                    "late_segments": self.late, "ended": self.ended,
                    "prompt_change_latencies": list(self.latencies)}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        try:
            listing = parse_playlist(self.playlist.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # not there yet
        now = time.time()
        with self.lock:
            self._collect_changes()
            for index, (_, duration, date) in enumerate(listing.segments,
                                                        start=listing.media_sequence):
                if index < self.published:
                    continue
                self.published += 1
                self.published_counter.inc()
                if self.first_listed_wall is None:
                    self.first_listed_wall = now
                if date is not None:
                    if self._next_date is not None and date - self._next_date > LATE_TOLERANCE:
                        self.late += 1
                        self.late_counter.inc()
                    self._next_date = date + duration
                self.video_seconds += duration
                self._settle_changes(now)
            self.ended = listing.ended
        self.lag_gauge.set(self.lag())

    def _settle_changes(self, now: float) -> None:
        """Changes whose video time the listed media now reaches are on the stream."""
        for change in [c for c in self._pending if c.video_time < self.video_seconds]:
            self._pending.remove(change)
            latency = now - change.asked_wall
            self.latency_hist.observe(latency)
            self.latencies.append({"video_time": change.video_time, "text": change.text,
                                   "latency_seconds": round(latency, 3)})
