"""Before a render starts: resume the same job, refuse to clobber another, lock the workdir.

The work folder's LMDB store records the job that owns it. Running the same command again
continues that job from what its outputs hold whole (the MP4's complete fragments); another
job there, or outputs that no job of this folder wrote, are refused unless `--overwrite`.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import lmdb

from cli.job import ResumePlan
from engine.errors import InputError
from engine.schedule import printable
from engine.spec import JobSpec
from memory.replay import STORE_NAME, DamagedStoreError, ReplayMemory
from stitcher.outputs import OutputConfig, committed_frames

# Job fields that do not change a single output frame: a resume may change them.
NOT_IDENTITY = frozenset({"workers", "gpus_per_worker", "report", "workdir", "warnings"})
LOCK_NAME = "lvp.lock"


def identity(summary: dict[str, Any]) -> dict[str, Any]:
    """The fields that decide the frames, as the store keeps them (JSON)."""
    stored = json.loads(json.dumps(summary, default=str))
    return {k: v for k, v in stored.items() if k not in NOT_IDENTITY}


def stored_job(workdir: Path) -> dict[str, Any] | None:
    """The job recorded in the work folder's store (None: no store, or one without a job)."""
    if not (workdir / STORE_NAME / "data.mdb").exists():
        return None
    try:
        with ReplayMemory(workdir, readonly=True) as store:
            return store.job()
    except (DamagedStoreError, lmdb.Error, ValueError) as exc:
        raise InputError(f"the replay memory in {printable(workdir)} is damaged ({printable(exc)}); "
                         "give --overwrite to start this job again from the beginning") from None


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def plan_resume(spec: JobSpec, outputs: OutputConfig, overwrite: bool, resume: bool) -> ResumePlan:
    """Decide, before any work, whether this render continues an interrupted one."""
    if overwrite:
        if resume:
            raise InputError("--resume and --overwrite contradict each other; give one")
        return ResumePlan(0, resumed=False)
    previous = stored_job(spec.workdir)
    if previous is not None:
        changed = _differences(identity(previous), identity(spec.summary()))
        if changed:
            raise InputError(f"{printable(spec.workdir)} holds another job (it differs in "
                             f"{', '.join(changed[:4])}); give --overwrite to replace it, or "
                             "another --out / --workdir")
        held = committed_frames(outputs, whole_gops=False)  # reads the outputs once
        if held >= spec.total_frames:
            return ResumePlan(spec.total_frames, resumed=True, complete=True)
        return ResumePlan(held - held % outputs.gop_frames, resumed=True)
    if resume:
        raise InputError(f"--resume: {printable(spec.workdir)} holds no interrupted job to resume")
    for label, path in _outputs(spec):
        if os.path.lexists(path):
            raise InputError(f"{label} {printable(path)} exists and no job in "
                             f"{printable(spec.workdir)} wrote it; give --overwrite to replace it")
    return ResumePlan(0, resumed=False)


def _outputs(spec: JobSpec) -> list[tuple[str, Path]]:
    found = []
    if spec.out is not None:
        found.append(("--out", spec.out))
    if spec.hls is not None:
        found.append(("the HLS playlist", spec.hls / "stream.m3u8"))
    return found


class RenderLock:
    """One render per work folder and per output at a time. An flock: the kernel drops it
    when the process dies, however it dies, so a killed render never blocks the next."""

    def __init__(self, spec: JobSpec) -> None:
        paths = [spec.workdir / LOCK_NAME]
        if spec.out is not None:
            paths.append(spec.out.with_name(f".{spec.out.name}.lvp-lock"))
        self.paths = paths
        self._fds: list[int] = []

    def acquire(self) -> None:
        try:
            for path in self.paths:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise InputError(f"another lvp render (pid {printable(holder)}) is writing "
                                     f"{printable(path.parent)}; wait for it to finish or "
                                     "choose another --out / --workdir") from None
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self._fds.append(fd)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for fd, path in zip(self._fds, self.paths, strict=False):
            # Remove the file while still holding it, so no second render holds a lock on a
            # file that is gone; the work folder's own lock file stays with the store.
            if path.name != LOCK_NAME:
                Path(path).unlink(missing_ok=True)
            os.close(fd)
        self._fds = []
