"""Ray actors: thin shells that hold an engine, memory or stitcher object and forward.

The same objects run in one process under engine.executor.LocalExecutor.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from pathlib import Path

import ray

from engine.models.base import BackendConfig, create_backend
from engine.stages import KeyframeStage, RenderedSegment, SegmentKeyframes, SegmentStage, rendered_stats
from engine.stats import SegmentRendered
from engine.threads import limit_threads
from engine.timeline import SegmentPlan, Timeline
from memory.replay import ReplayMemory
from stitcher.blend import BLENDS
from stitcher.carry import CarryFile
from stitcher.chunks import BlendedOverlap, EncodeSettings, PackagedSegment, blend_overlap, package_segment
from stitcher.outputs import OutputConfig, open_sinks
from stitcher.probe import ProbePlan
from stitcher.stitch import ResumePoint, Stitcher, StitchStats


def was_restarted() -> bool:
    """Whether Ray started this actor again after it died (its property warns of a private
    attribute it reads itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ray.get_runtime_context().was_current_actor_reconstructed


@ray.remote
class KeyframeActor:
    """Stage 1 and the only writer of the LMDB replay memory and ledger."""

    def __init__(self, timeline: Timeline, backend: str, config: BackendConfig, workdir: str) -> None:
        self.memory = ReplayMemory(Path(workdir))
        self.stage = KeyframeStage(timeline, create_backend(backend, config), self.memory)
        limit_threads(config.threads)
        self.unreported_restart = was_restarted()

    def put_job(self, info: dict) -> None:
        self.memory.put_job(info)

    def run_segment(self, k: int) -> SegmentKeyframes:
        keys = self.stage.run_segment(k)
        if self.unreported_restart:
            self.unreported_restart = False
            keys = dataclasses.replace(keys, restarted=True)
        return keys

    def take_restart(self) -> bool:
        """Whether this actor restarted and no result has said so yet (and now it has)."""
        restarted, self.unreported_restart = self.unreported_restart, False
        return restarted

    def mark_segment_done(self, k: int, info: dict) -> None:
        self.memory.mark_segment_done(k, info)

    def close(self) -> None:
        self.memory.close()


@ray.remote(concurrency_groups={"health": 1, "blend": 1})
class SegmentActor:
    """Stage 2: renders whole segments, one at a time, encodes them and blends the overlaps
    between them; `ping` answers on its own thread, `blend` runs on its own too.

    Started with max_concurrency=2 (RayExecutor), it encodes one segment while the model
    renders the next: a GPU model's worker keeps its GPU busy while its CPU encodes.

    Every result names the process that made it (`made_by`): the driver tells a restarted
    actor by a new name. A flag cleared by the first render after a restart would not do:
    Ray may re-run a finished render to rebuild a result lost with a node, and nobody reads
    that render's stats."""

    def __init__(self, backend: str, config: BackendConfig,
                 encoding: EncodeSettings | None = None) -> None:
        self.stage = SegmentStage(create_backend(backend, config))
        self.encoding = encoding  # None: the stitcher encodes, raw frames travel to it
        self.model_lock = threading.Lock()  # one render at a time; encodes run beside it
        limit_threads(config.threads)
        self.process = ray.get_runtime_context().get_worker_id()

    def ready(self) -> str:
        """Returns once the constructor (the model load) is done: this process's name."""
        return self.process

    @ray.method(concurrency_group="health")
    def ping(self) -> None:
        """Answers while a render runs: the driver tells a busy worker from a lost one."""

    @ray.method(num_returns=2)
    def render(self, plan: SegmentPlan, keys: SegmentKeyframes,
               after: RenderedSegment | PackagedSegment | None = None,
               overlaps: tuple[int, int] = (0, 0)
               ) -> tuple[SegmentRendered, RenderedSegment | PackagedSegment]:
        """Render a segment; with encoding settings, encode the frames between its `overlaps`
        (frames shared with the segment before, and after) and send those packets."""
        # `after` only exists for the autoregressive-chain baseline of the benchmarks: Ray
        # starts this task once the previous segment is done and ships it here, the way
        # chain extenders condition on the last frames of the segment before.
        with self.model_lock:
            segment = self.stage.render(plan, keys)
        result: RenderedSegment | PackagedSegment = segment
        if self.encoding is not None:
            result = package_segment(segment.index, segment.frame_start, segment.frames,
                                     *overlaps, self.encoding, segment.model_seconds)
        info = rendered_stats(keys, segment, result if self.encoding is not None else None)
        return dataclasses.replace(info, made_by=self.process), result

    @ray.method(concurrency_group="blend")
    def blend(self, before: PackagedSegment, after: PackagedSegment, blend: str) -> BlendedOverlap:
        """Blend and encode the frames `before` and `after` (consecutive segments) share."""
        assert self.encoding is not None, "overlaps are blended here only when workers encode"
        return blend_overlap(BLENDS[blend], before.tail, after, self.encoding)


@ray.remote
class StitcherActor:
    """Stage 3: orders, blends and encodes; owns the output files."""

    def __init__(self, outputs: OutputConfig, blend: str = "flow", probe: ProbePlan | None = None,
                 start: ResumePoint | None = None, carry: CarryFile | None = None,
                 threads: int = 1, blends_elsewhere: bool = False) -> None:
        start = start or ResumePoint()
        self.stitcher = Stitcher(open_sinks(outputs, start.written), blend=blend, probe=probe,
                                 start=start, carry=carry, encoding=outputs.encoding,
                                 blends_elsewhere=blends_elsewhere)
        limit_threads(threads)

    def ready(self) -> None:
        """Returns once the outputs are open."""

    def add(self, segment: RenderedSegment | PackagedSegment, shared_tail: int,
            *overlaps: BlendedOverlap) -> StitchStats:
        if isinstance(segment, PackagedSegment):
            if len(segment.tail) != shared_tail:
                raise ValueError(f"segment {segment.index} was encoded for a shared tail of "
                                 f"{len(segment.tail)} frames, not {shared_tail}")
            return self.stitcher.add_packaged(segment, overlaps)
        return self.stitcher.add(segment.index, segment.frame_start, segment.frames, shared_tail)

    def close(self) -> int:
        return self.stitcher.close()
