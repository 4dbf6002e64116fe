"""RFC 8216 media playlist writer: EVENT playlists (`lvp render --hls`) and live sliding
windows (`lvp stream`).

Pure Python: the HLS sink muxes segments itself and only needs the text of the playlist.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float  # seconds
    discontinuity: bool = False  # timestamps or format break before this segment
    date: float | None = None  # wall-clock time (epoch seconds) of its first frame


def _program_date_time(epoch: float) -> str:
    """ISO 8601 with milliseconds and a zone, as EXT-X-PROGRAM-DATE-TIME wants."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


class MediaPlaylist:
    """Media playlist of an event stream (segments only appended) or of a live one (a
    sliding window of the latest `window` segments).

    `target_duration` is a lower bound for EXT-X-TARGETDURATION. RFC 8216 forbids the value
    from changing between reloads, so a live writer passes its nominal segment length here;
    the value still grows if a segment turns out longer, to stay valid.

    A live window (`window` set) keeps at least 6 segments (RFC 8216 6.2.2: a live playlist
    must list at least three target durations; players start three segments from the end).
    Every segment starts with an IDR frame, so EXT-X-INDEPENDENT-SEGMENTS is always written.
    """

    MIN_WINDOW = 6

    def __init__(self, target_duration: int = 0, window: int | None = None) -> None:
        if target_duration < 0:
            raise ValueError(f"target_duration must be >= 0, got {target_duration}")
        if window is not None and window < self.MIN_WINDOW:
            raise ValueError(f"a live window holds at least {self.MIN_WINDOW} segments, got {window}")
        self._min_target = target_duration
        self._window = window
        self._segments: list[Segment] = []
        self.media_sequence = 0  # segments removed from the front so far
        self.discontinuity_sequence = 0  # discontinuity tags removed with them

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    @property
    def total_added(self) -> int:
        """Segments ever added: the index the next one gets."""
        return self.media_sequence + len(self._segments)

    def add_segment(self, uri: str, duration: float, discontinuity: bool = False,
                    date: float | None = None) -> list[Segment]:
        """Append a segment; returns the segments the live window pushed out (oldest first)."""
        if not uri or any(c in uri for c in "\r\n"):
            raise ValueError(f"invalid segment URI {uri!r}")
        if not math.isfinite(duration) or duration <= 0:
            raise ValueError(f"segment duration must be a positive number, got {duration}")
        self._segments.append(Segment(uri, duration, discontinuity, date))
        removed: list[Segment] = []
        while self._window is not None and len(self._segments) > self._window:
            gone = self._segments.pop(0)
            self.media_sequence += 1
            # RFC 8216 6.2.2: the count of discontinuity tags that left the playlist.
            self.discontinuity_sequence += gone.discontinuity
            removed.append(gone)
        return removed

    def duration(self) -> float:
        """Seconds of media the playlist lists now."""
        return sum(s.duration for s in self._segments)

    def target_duration(self) -> int:
        # Ceil of the value as written (3 decimals), so float noise cannot add a second.
        longest = max((math.ceil(round(s.duration, 3)) for s in self._segments), default=0)
        return max(self._min_target, longest)

    def render(self, ended: bool) -> str:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{self.target_duration()}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
        ]
        if self._window is None:
            lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
        elif self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        for seg in self._segments:
            if seg.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if seg.date is not None:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_program_date_time(seg.date)}")
            lines.append(f"#EXTINF:{seg.duration:.3f},")
            lines.append(seg.uri)
        if ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace `path` with `text` so that readers see either the old or the new file, whole.

    The temp file lives in the same folder because os.replace is only atomic within one
    filesystem.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temp_path_for(path: Path) -> Path:
    """A unique hidden sibling of `path` to write before os.replace-ing it into place.

    Not tempfile.mkstemp: its 0600 mode would survive the rename and hide the file from a
    web server that serves the folder.
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


class LivePublisher:
    """Publishes finished segments to a live (sliding-window) playlist at wall-clock pace.

    The HLS sink hands over each segment as soon as its file is complete (`submit`); a thread
    lists it when it is due: the first at once, each next one when the previous one's
    duration has passed. `submit` blocks while more than `ahead` seconds wait unlisted, so a
    fast renderer is held back there and the render loop's bounded in-flight count bounds
    Stage 1 and Stage 2 behind it. A segment that is ready only after its due time is listed
    at once and counted late, and the schedule restarts from it (policy: publish late and
    report the lag; a player that ran dry has stalled anyway, a catch-up burst would only
    make it skip).

    Segments the window pushed out are deleted once they have been off the playlist for
    longer than the playlist's duration plus one target, so a player that loaded an older
    playlist can still fetch them.
    """

    LATE_TOLERANCE = 0.05  # seconds; below this a segment counts as on time

    def __init__(self, folder: Path, playlist_path: Path, target_duration: int, window: int,
                 ahead: float, clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self.playlist_path = Path(playlist_path)
        self.playlist = MediaPlaylist(target_duration, window=window)
        self.ahead = ahead
        self.clock = clock
        self._cond = threading.Condition()
        self._queue: deque[tuple[str, float, bool]] = deque()  # unlisted: uri, duration, discontinuity
        self._doomed: deque[tuple[float, str]] = deque()  # (off the playlist since, uri)
        self._next_due: float | None = None
        self._closing = False
        self._closed = False
        self._error: BaseException | None = None
        self.published = 0
        self.late = 0
        self.late_seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="hls-publisher", daemon=True)
        self._thread.start()

    # called by the sink
    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, uri: str, duration: float, discontinuity: bool = False,
               block: bool = True) -> None:
        """Queue a finished segment; with `block`, then `wait_for_room`."""
        with self._cond:
            self._raise_error()
            self._queue.append((uri, duration, discontinuity))
            self._cond.notify_all()
        if block:
            self.wait_for_room()

    def wait_for_room(self) -> None:
        """Block while more than `ahead` seconds wait unlisted."""
        with self._cond:
            # Short waits: a Ctrl-C in this (main) thread is seen at once.
            while self._backlog() > self.ahead and not self._error:
                self._cond.wait(0.2)
            self._raise_error()

    def has_room(self) -> bool:
        """Whether at most `ahead` seconds wait unlisted (what `wait_for_room` waits for)."""
        with self._cond:
            self._raise_error()
            return self._backlog() <= self.ahead

    def queued(self) -> list[tuple[str, float]]:
        """The segments waiting unlisted, oldest first, with the wall time each is due."""
        with self._cond:
            due = self.clock() if self._next_due is None else self._next_due
            out = []
            for uri, duration, _ in self._queue:
                out.append((uri, due))
                due += duration
            return out

    def next_due(self) -> float:
        """When the next segment to list is due (now, if it would be listed at once)."""
        with self._cond:
            return self.clock() if self._next_due is None else self._next_due

    def withdraw(self, uri: str) -> list[str] | None:
        """Take back the unlisted segment `uri` and every one queued after it (a live prompt
        change replaces them); returns their names, or None if `uri` is no longer waiting
        (listed meanwhile). Their files are the caller's to delete."""
        with self._cond:
            names = [u for u, _, _ in self._queue]
            if uri not in names:
                return None
            keep = names.index(uri)
            gone = names[keep:]
            for _ in gone:
                self._queue.pop()
            self._cond.notify_all()
            return gone

    def close(self, ended: bool = True) -> None:
        """List everything still queued now (the stream is over: no reason to hold it
        back), then the final playlist with ENDLIST."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            while self._queue:
                self._publish_one(self.clock())
            write_atomic(self.playlist_path, self.playlist.render(ended=ended))
            self._raise_error()

    def lag(self) -> float:
        """Seconds the next segment is overdue (0 while the stream keeps pace)."""
        with self._cond:
            if self._next_due is None or self._queue:
                return 0.0
            return max(0.0, self.clock() - self._next_due)

    # the publishing thread
    def _backlog(self) -> float:
        return sum(d for _, d, _ in self._queue)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"publishing the HLS playlist failed: {self._error}") from self._error

    def _run(self) -> None:
        try:
            with self._cond:
                while not self._closing:
                    now = self.clock()
                    if self._queue and (self._next_due is None or now >= self._next_due):
                        self._publish_one(now)
                        write_atomic(self.playlist_path, self.playlist.render(ended=False))
                        self._cond.notify_all()
                        continue
                    self._delete_expired(now)
                    wait = 0.5 if not self._queue else min(0.5, self._next_due - now)
                    self._cond.wait(max(wait, 0.001))
        except BaseException as exc:  # noqa: BLE001 - surfaced to the sink by submit/close
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _publish_one(self, now: float) -> None:
        uri, duration, discontinuity = self._queue.popleft()
        due = now if self._next_due is None else self._next_due
        if now - due > self.LATE_TOLERANCE:
            self.late += 1
            self.late_seconds += now - due
            due = now  # restart the schedule from here
        for gone in self.playlist.add_segment(uri, duration, discontinuity, date=due):
            self._doomed.append((now, gone.uri))
        self._next_due = due + duration
        self.published += 1

    def _delete_expired(self, now: float) -> None:
        keep_for = self.playlist.duration() + self.playlist.target_duration()
        while self._doomed and now - self._doomed[0][0] > keep_for:
            _, uri = self._doomed.popleft()
            (self.folder / uri).unlink(missing_ok=True)


@dataclass(frozen=True)
class LiveHLS:
    """How an HLS sink runs live: paced publishing into a sliding window."""

    ahead: float = 2.0  # seconds of finished segments held back, unlisted
    window: int = 8  # segments the playlist lists
    run_id: str = ""  # in every segment name, so a browser never reuses another run's file

    def segment_name(self, index: int) -> str:
        return f"live_{self.run_id}_{index:06d}.ts" if self.run_id else f"live_{index:06d}.ts"
