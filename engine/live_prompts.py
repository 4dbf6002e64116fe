"""The prompt schedule of a live job, which grows while the job runs (`lvp stream`).

One object, made by the driver, holds the schedule in force and the changes asked for and not
applied yet. The driver's Timeline applies them while planning (Timeline._steer) and writes
the whole record, atomically, to a JSON file in the job's workdir (beside the replay memory).
Copies of the Timeline elsewhere (Stage 1 in a Ray actor) get a read-only copy of this object
that re-reads that file when it changes: the driver writes it before it asks Stage 1 for the
segment that needs it, so every copy plans the same keyframes. The record doubles as the
session's prompt schedule: `lvp render --prompts` of `prompts.txt` replays it.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from engine.schedule import PromptSchedule, format_time

RECORD_NAME = "live_prompts.json"
SCHEDULE_NAME = "live_prompts.txt"


class LivePrompts:
    def __init__(self, schedule: PromptSchedule, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / RECORD_NAME
        self._schedule = schedule
        self._lock = threading.Lock()
        self._pending: list[tuple[str, float]] = []  # text, wall time asked
        self.changes: list[dict[str, Any]] = []  # applied: video time, wall times, text
        self.writer = True  # False in copies: they only read the record
        self.planned = -1  # the driver's highest planned segment
        self._seen_version = 0
        self._version = 0  # changes applied; a reader compares it with the record's

    # driver side
    def request(self, text: str, wall: float | None = None) -> None:
        """Ask for `text` from the next keyframe Stage 1 has not made (any thread)."""
        with self._lock:
            self._pending.append((text, time.time() if wall is None else wall))

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def apply_pending(self, t: float) -> None:
        """Put the pending changes in force from video time t (the last one wins) and write
        the record before returning."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        now = time.time()
        starts, texts = list(self._schedule.starts), list(self._schedule.texts)
        keep = sum(1 for s in starts if s < t) or 1  # the first entry always starts at 0
        if t <= 0:
            starts, texts = [0.0], [pending[-1][0]]
        else:
            starts, texts = starts[:keep] + [t], texts[:keep] + [pending[-1][0]]
        for change in self.changes:  # planned from t on, taken back before it was listed
            if change["video_time"] >= t and not change["superseded"]:
                change.update(superseded=True, taken_back=True)
        for i, (text, asked) in enumerate(pending):
            self.changes.append({"video_time": t, "asked_wall": asked, "applied_wall": now,
                                 "text": text, "superseded": i < len(pending) - 1})
        self._schedule = PromptSchedule(tuple(starts), tuple(texts))
        self._version += 1
        self._write()

    def _write(self) -> None:
        record = {"version": self._version, "starts": list(self._schedule.starts),
                  "texts": list(self._schedule.texts), "changes": self.changes}
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name, text in ((RECORD_NAME, json.dumps(record, indent=1)),
                           (SCHEDULE_NAME, self.schedule_text())):
            tmp = self.workdir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.workdir / name)

    def schedule_text(self) -> str:
        """The schedule in force as a `lvp render --prompts` file."""
        return "".join(f"{format_time(s)} {t}\n" for s, t in
                       zip(self._schedule.starts, self._schedule.texts, strict=True))

    # every side
    def current(self) -> tuple[PromptSchedule, bool]:
        """The schedule in force, and whether it changed since this copy last asked."""
        if not self.writer:
            self._reload()
        changed = self._version != self._seen_version
        self._seen_version = self._version
        return self._schedule, changed

    def _reload(self) -> None:
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        if record["version"] != self._version:
            self._schedule = PromptSchedule(tuple(record["starts"]), tuple(record["texts"]))
            self.changes = record["changes"]
            self._version = record["version"]

    # a copy for another process reads the record instead of taking requests
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_lock=None, _pending=[], writer=False)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
