"""The Ray executor: the render loop's stages as Ray actors.

The keyframe and stitcher actors are pinned to the driver's node (they own the LMDB store and
the output files); segment actors go wherever the cluster has room. Handles are ObjectRefs:
a render takes its keyframes' ref and the stitcher takes the render's ref, so frames travel
actor to actor and the driver only sees small stats.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.actors import KeyframeActor, SegmentActor, StitcherActor
from actors.cluster import START_TIMEOUT, keyframe_gpus
from engine.executor import Executor
from engine.models.base import BackendConfig
from engine.timeline import SegmentPlan, Timeline
from stitcher.carry import CarryFile, resume_point
from stitcher.outputs import OutputConfig, committed_frames
from stitcher.probe import ProbePlan
from stitcher.stitch import ResumePoint

# A worker that has not answered a ping for this long is given up: its renders go to
# the others (it waits for a node with room to restart on, or it hangs).
WORKER_TIMEOUT = float(os.environ.get("LVP_WORKER_TIMEOUT", "120"))
# At the end of a job, how long the workers have to say whether they restarted while idle.
IDLE_CHECK_SECONDS = 10.0
# A worker that dies (killed, out of memory, its node gone) is started again and its calls
# are retried, this many times each; renders are pure functions of their inputs and Stage 1
# restarts from the state it stored for the segment it is asked for, so retries are safe.
WORKER_RESTARTS = 8


class RayExecutor(Executor):
    output_failures = (ray.exceptions.RayActorError,)
    worker_failures = (ray.exceptions.ActorDiedError,)

    def __init__(self, timeline: Timeline, backend: str, config: BackendConfig, workdir: Path,
                 outputs: OutputConfig, blend: str, workers: int, gpus_per_worker: float = 0.0,
                 probe: ProbePlan | None = None, start: ResumePoint | None = None,
                 carry: CarryFile | None = None) -> None:
        self.timeline = timeline
        self.carry = carry
        self._pings: dict[int, tuple[ray.ObjectRef, float]] = {}  # worker -> (ping, sent at)
        self.dropped: set[int] = set()
        self.gpus = gpus_per_worker
        self.outputs = outputs
        self.blend = blend
        self.probe = probe
        # The segment workers encode the frames no neighbour shares (stitcher.chunks), so the
        # stitcher encodes only the blends and raw frames do not cross the object store.
        # LVP_ENCODE_IN_STITCHER=1 sends raw frames instead: the benchmarks' before case.
        encoding = None if os.environ.get("LVP_ENCODE_IN_STITCHER") == "1" else outputs.encoding
        # Then the workers blend the overlaps too, so the stitcher only muxes: each overlap
        # is blended by the worker that rendered the segment after it, once both are done.
        self.blends_elsewhere = encoding is not None
        self._renders: dict[ray.ObjectRef, tuple[int, int]] = {}  # render -> (segment, worker)
        self._infos: dict[ray.ObjectRef, int] = {}  # a render's stats -> its worker
        self._processes: dict[int, set[str]] = {}  # worker -> the processes it has run in
        self._given: dict[int, ray.ObjectRef] = {}  # segment -> its render, given to the stitcher
        self._first = start.segment if start is not None else 0  # this stitcher's first segment
        self.here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                                   soft=False)
        restartable = {"max_restarts": WORKER_RESTARTS, "max_task_retries": WORKER_RESTARTS}
        # A backend whose Stage 1 runs its model on a GPU gets one share like a segment actor.
        self.keyframe_gpus = keyframe_gpus(backend, gpus_per_worker)
        self.keyframer = KeyframeActor.options(num_cpus=0.5, num_gpus=self.keyframe_gpus,
                                               scheduling_strategy=self.here,
                                               **restartable).remote(
            timeline, backend, config, str(workdir))
        self.stitcher = self._stitcher(start)
        # Spread over the nodes: losing one node loses as few workers as it can.
        self.segment_actors = [
            SegmentActor.options(num_cpus=1, num_gpus=gpus_per_worker, scheduling_strategy="SPREAD",
                                 max_concurrency=2, **restartable).remote(backend, config, encoding)
            for _ in range(workers)]

    def _stitcher(self, start: ResumePoint | None) -> ray.actor.ActorHandle:
        # Not restarted by Ray: a new stitcher must first learn where the outputs are whole.
        return StitcherActor.options(num_cpus=0.5, scheduling_strategy=self.here).remote(
            self.outputs, self.blend, self.probe, start, self.carry,
            blends_elsewhere=self.blends_elsewhere)

    def reopen_outputs(self) -> int:
        ray.kill(self.stitcher, no_restart=True)
        written = committed_frames(self.outputs)
        start = resume_point(self.timeline, written, self.carry.load() if self.carry else None)
        self.stitcher = self._stitcher(start)
        self._given, self._first = {}, start.segment
        ray.get(self.stitcher.ready.remote())
        return start.segment

    def unreported_restarts(self) -> list[tuple[str, str]]:
        asked = [("keyframe", None, self.keyframer.take_restart.remote()),
                 *(("segment", w, a.ready.remote()) for w, a in enumerate(self.segment_actors)
                   if w not in self.dropped)]
        found = []
        deadline = time.monotonic() + IDLE_CHECK_SECONDS
        for part, worker, ref in asked:
            try:
                answer = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except (ray.exceptions.RayError, TimeoutError):
                found.append((part, f"a {part} worker was lost while idle and is not running "
                                    "again (no node with room for it, or still starting)"))
                continue
            if answer is True or (worker is not None and self._new_process(worker, answer)):
                found.append((part, f"a {part} worker died while idle and was started again"))
        return found

    def _new_process(self, worker: int, process: str) -> bool:
        """Whether `process` is one this worker had not run in before (it restarted)."""
        seen = self._processes.setdefault(worker, set())
        new = bool(seen) and process not in seen
        seen.add(process)
        return new

    @property
    def workers(self) -> int:
        return len(self.segment_actors)

    def start(self, job: dict[str, Any]) -> None:
        workers = [a.ready.remote() for a in self.segment_actors]
        refs = [self.keyframer.put_job.remote(job), self.stitcher.ready.remote(), *workers]
        try:
            ray.get(refs, timeout=START_TIMEOUT)
            for worker, process in enumerate(ray.get(workers)):
                self._new_process(worker, process)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(
                f"the workers did not start within {START_TIMEOUT:g} s (LVP_START_TIMEOUT): the "
                f"cluster may not have room for {self.workers} segment worker(s) of 1 CPU"
                f"{f' and {self.gpus:g} GPU' if self.gpus else ''} each, beside 1 CPU"
                f"{f' and {self.keyframe_gpus:g} GPU' if self.keyframe_gpus else ''} for "
                "Stage 1 and the stitcher on this node") from None

    def keyframes(self, k: int) -> ray.ObjectRef:
        return self.keyframer.run_segment.remote(k)

    def render(self, worker: int, plan: SegmentPlan, keys: ray.ObjectRef,
               after: ray.ObjectRef | None = None) -> tuple[ray.ObjectRef, ray.ObjectRef]:
        k = plan.index
        overlaps = (self.timeline.shared_tail(k - 1) if k > 0 else 0, self.timeline.shared_tail(k))
        info, segment = self.segment_actors[worker].render.remote(plan, keys, after, overlaps)
        self._renders[segment] = (k, worker)
        self._infos[info] = worker
        return info, segment

    def stitch(self, segment: ray.ObjectRef, shared_tail: int) -> ray.ObjectRef:
        """Give the stitcher a finished render, with the overlaps it now has both sides of
        (blended by a worker; the stitcher blends the one before its first segment itself)."""
        k, _ = self._renders[segment]
        self._given[k] = segment
        overlaps = []
        if self.blends_elsewhere:
            if k > self._first and k - 1 in self._given and self.timeline.shared_tail(k - 1):
                overlaps.append(self._blend(k - 1))
            if k + 1 in self._given and shared_tail:
                overlaps.append(self._blend(k))
        return self.stitcher.add.remote(segment, shared_tail, *overlaps)

    def _blend(self, k: int) -> ray.ObjectRef:
        """The overlap of segments k and k + 1, blended by the worker that rendered k + 1 (its
        head is in that node's object store) or, if that one is gone, by another."""
        before, after = self._given[k], self._given[k + 1]
        worker = self._renders[after][1]
        if worker in self.dropped:
            worker = min(set(range(self.workers)) - self.dropped)
        return self.segment_actors[worker].blend.remote(before, after, self.blend)

    def record(self, k: int, entry: dict[str, Any]) -> ray.ObjectRef:
        # Segment k is written: no overlap needs the renders before it any more.
        for ref, (j, _) in list(self._renders.items()):
            if j < k:
                del self._renders[ref]
        for j in [j for j in self._given if j < k]:
            del self._given[j]
        return self.keyframer.mark_segment_done.remote(k, entry)

    def wait(self, handles: Sequence[ray.ObjectRef], timeout: float | None = None) -> list[ray.ObjectRef]:
        ready, _ = ray.wait(list(handles), num_returns=1, timeout=timeout)
        return ready

    def lost_workers(self, asked: Sequence[int]) -> list[int]:
        """A worker is pinged (on its own thread: a long render does not hold the answer up);
        one whose ping has waited `WORKER_TIMEOUT` s is lost: it died and Ray cannot start it
        again anywhere (its node is gone and no other has room), or it hangs."""
        now = time.monotonic()
        lost = []
        for worker in asked:
            ping = self._pings.get(worker)
            if ping is None:
                self._pings[worker] = (self.segment_actors[worker].ping.remote(), now)
                continue
            ref, sent = ping
            if ray.wait([ref], timeout=0)[0]:
                del self._pings[worker]  # answered (or failed for good, which render calls show)
            elif now - sent > WORKER_TIMEOUT:
                lost.append(worker)
        return lost

    def lost_input(self, exc: BaseException) -> bool:
        # The stitcher itself dying raises RayActorError directly; its task failing to fetch
        # an argument raises inside the task, wrapped in a RayTaskError.
        return isinstance(exc, ray.exceptions.RayTaskError) and isinstance(
            exc.cause, ray.exceptions.ActorDiedError | ray.exceptions.ObjectLostError)

    def drop_worker(self, worker: int) -> None:
        self._pings.pop(worker, None)
        self._infos = {info: w for info, w in self._infos.items() if w != worker}
        self.dropped.add(worker)
        ray.kill(self.segment_actors[worker], no_restart=True)  # frees what it holds or waits for

    def get(self, handles: Sequence[ray.ObjectRef]) -> list[Any]:
        """The results; a render's stats name its worker's restart, if its process is new."""
        results = ray.get(list(handles)) if handles else []
        for i, handle in enumerate(handles):
            worker = self._infos.pop(handle, None)
            info = results[i]
            if worker is not None and self._new_process(worker, info.made_by):
                results[i] = dataclasses.replace(info, restarted=(*info.restarted, "segment"))
        return results

    def _close_outputs(self) -> int:
        return ray.get(self.stitcher.close.remote())

    def _close_ledger(self) -> None:
        ray.get(self.keyframer.close.remote())
