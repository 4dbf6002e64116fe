"""The keyframe replay memory and the job ledger, in one LMDB environment.

Layout (keys are ASCII so `mdb_dump` output is readable):
  kf/<ms:012d>   PNG bytes of the keyframe at that video time
  km/<ms:012d>   JSON metadata of that keyframe (prompt, seed, model, time, ...)
  seg/<k:08d>    JSON ledger entry of a finished segment (the basis of resume)
  ck/<k:08d>     Stage 1's state when segment k's keyframes were asked for (engine/checkpoint.py)
  job            JSON summary of the job that owns this store
Only one process writes; readers in other processes open their own environment.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import lmdb
import numpy as np

# Address space only: LMDB files grow with the data. A keyframe is a few kB and an hour of
# video about 20 MiB, so this is far beyond a 24 h job; a fixed size avoids remapping while
# readers are open. LVP_MEMORY_GIB changes it (a full store says so, and resumes with more).
DEFAULT_MAP_SIZE = 16 << 30
MAP_SIZE_VARIABLE = "LVP_MEMORY_GIB"


def configured_map_size() -> int:
    """The store's map size: $LVP_MEMORY_GIB GiB, else DEFAULT_MAP_SIZE."""
    value = os.environ.get(MAP_SIZE_VARIABLE)
    try:
        return max(1 << 16, int(float(value) * (1 << 30))) if value else DEFAULT_MAP_SIZE
    except ValueError:
        return DEFAULT_MAP_SIZE


class MemoryFullError(RuntimeError):
    """The store reached its map size."""
STORE_NAME = "memory.lmdb"
# Stage 1 checkpoints kept behind the newest: a resume starts a segment before the first one
# the outputs lack, which is at most the segments in flight (2 per worker) behind.
KEEP_CHECKPOINTS = 64


@dataclass(frozen=True)
class MemoryEntry:
    t: float
    image: np.ndarray  # [h, w, 3] uint8 RGB
    meta: dict[str, Any]


def _time_key(prefix: bytes, t: float) -> bytes:
    return prefix + b"%012d" % round(t * 1000)


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("corrupt keyframe PNG in replay memory")
    return np.ascontiguousarray(bgr[..., ::-1])


class DamagedStoreError(ValueError):
    """The store's files are not a whole LMDB environment (truncated, overwritten)."""


class ReplayMemory:
    """LMDB-backed keyframe store. Open with readonly=True from any reader process."""

    def __init__(self, workdir: Path | str, readonly: bool = False,
                 map_size: int | None = None) -> None:
        self.path = Path(workdir) / STORE_NAME
        map_size = map_size or configured_map_size()
        if readonly and not self.path.exists():
            raise FileNotFoundError(f"no replay memory at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._env = lmdb.open(str(self.path), map_size=map_size, readonly=readonly,
                              subdir=True, max_dbs=0, lock=not readonly)
        if readonly:
            try:
                self.check_intact()
            except BaseException:
                self._env.close()
                raise

    def check_intact(self) -> None:
        """Raise DamagedStoreError when data.mdb is shorter than the pages its header counts.

        LMDB maps the file and trusts that header: reading a page past the end of a truncated
        file kills the process with SIGBUS instead of raising. (Pages are never read beyond
        the header's last page, so with this check a damaged file raises lmdb errors only.)
        """
        info, page = self._env.info(), self._env.stat()["psize"]
        needed = (info["last_pgno"] + 1) * page
        size = (self.path / "data.mdb").stat().st_size
        if size < needed:
            raise DamagedStoreError(f"replay memory {self.path} is truncated: data.mdb has "
                                    f"{size:,} bytes of the {needed:,} its header counts")

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> ReplayMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[lmdb.Transaction]:
        """A write transaction; a full map is an error that says how to go on."""
        try:
            with self._env.begin(write=True) as txn:
                yield txn
        except lmdb.MapFullError:
            size = self._env.info()["map_size"] / (1 << 30)
            raise MemoryFullError(
                f"the replay memory {self.path} is full (its map is {size:.4g} GiB); set "
                f"{MAP_SIZE_VARIABLE} higher and run the same command again to resume") from None

    # keyframes
    def put_keyframe(self, t: float, image: np.ndarray, meta: dict[str, Any]) -> None:
        meta = {**meta, "t": t, "height": image.shape[0], "width": image.shape[1]}
        with self._write() as txn:
            txn.put(_time_key(b"kf/", t), encode_png(image))
            txn.put(_time_key(b"km/", t), json.dumps(meta).encode())

    def get_keyframe(self, t: float) -> MemoryEntry | None:
        with self._env.begin() as txn:
            png = txn.get(_time_key(b"kf/", t))
            meta = txn.get(_time_key(b"km/", t))
        if png is None or meta is None:
            return None
        return MemoryEntry(t, decode_png(png), json.loads(meta))

    def _scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Every (key without prefix, value) under a prefix, in key order."""
        items = []
        with self._env.begin() as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    items.append((key[len(prefix):], value))
        return items

    def keyframe_times(self) -> list[float]:
        return [int(key) / 1000.0 for key, _ in self._scan(b"km/")]

    def metadata(self) -> Iterator[dict[str, Any]]:
        """Metadata of every keyframe, in time order, without decoding images."""
        return (json.loads(value) for _, value in self._scan(b"km/"))

    def nearest_at_or_before(self, t: float) -> MemoryEntry | None:
        times = [x for x in self.keyframe_times() if x <= t + 1e-9]
        return self.get_keyframe(times[-1]) if times else None

    def forget_after(self, t: float, segment: int) -> None:
        """Drop what was made for video a live stream took back: keyframes after time t,
        Stage 1 states after segment `segment`'s and ledger entries from it on."""
        with self._write() as txn:
            cursor = txn.cursor()
            doomed = []
            for prefix, first in ((b"kf/", _time_key(b"kf/", t)), (b"km/", _time_key(b"km/", t)),
                                  (b"ck/", b"ck/%08d" % segment), (b"seg/", b"seg/%08d" % (segment - 1))):
                if cursor.set_range(first):
                    for key in cursor.iternext(values=False):
                        if not key.startswith(prefix):
                            break
                        if key != first:
                            doomed.append(key)
            for key in doomed:
                txn.delete(key)

    # Stage 1 state at segment boundaries: only the last few are kept
    def put_checkpoint(self, segment: int, data: bytes) -> None:
        with self._write() as txn:
            txn.put(b"ck/%08d" % segment, data)
            cursor = txn.cursor()
            stale = []
            if cursor.set_range(b"ck/"):
                for key in cursor.iternext(values=False):
                    if not key.startswith(b"ck/") or int(key[3:]) > segment - KEEP_CHECKPOINTS:
                        break
                    stale.append(key)
            for key in stale:
                txn.delete(key)

    def get_checkpoint(self, segment: int) -> bytes | None:
        with self._env.begin() as txn:
            return txn.get(b"ck/%08d" % segment)

    # ledger
    def mark_segment_done(self, index: int, info: dict[str, Any]) -> None:
        with self._write() as txn:
            txn.put(b"seg/%08d" % index, json.dumps(info).encode())

    def finished_segments(self) -> dict[int, dict[str, Any]]:
        return {int(key): json.loads(value) for key, value in self._scan(b"seg/")}

    # job
    def put_job(self, info: dict[str, Any]) -> None:
        with self._write() as txn:
            txn.put(b"job", json.dumps(info, default=str).encode())

    def job(self) -> dict[str, Any] | None:
        with self._env.begin() as txn:
            raw = txn.get(b"job")
        return json.loads(raw) if raw else None

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
