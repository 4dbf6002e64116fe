"""Stage 1 and Stage 2 as plain objects: executors hold them (in this process or inside Ray
actors) and forward to them."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from engine import checkpoint
from engine.checkpoint import Stage1Checkpoint
from engine.image_input import load_image
from engine.models.base import Backend, Keyframe, MemoryView
from engine.peak_memory import PeakMemory, peak_memory
from engine.stats import SegmentRendered
from engine.timeline import CONTEXT_KEYFRAMES, SegmentPlan, Timeline

if TYPE_CHECKING:
    from stitcher.chunks import PackagedSegment

HISTORY = 4  # short-term context: the last few keyframes
KEEP_BACK = 64  # how far back a restart looks for stored state (memory.replay keeps 64)
# Long-term context: the video's first keyframe, the first remembered keyframe of the prompt
# in force (so a prompt that comes back finds its scene again) and the latest few entries.
MEMORY_RECENT = 3


class KeyframeWriter(Protocol):
    """Where Stage 1 puts the keyframes it remembers (the LMDB replay memory in a render),
    and its own state at each segment boundary (what a restart continues from)."""

    def put_keyframe(self, t: float, image: np.ndarray, meta: dict[str, Any]) -> None: ...

    def put_checkpoint(self, segment: int, data: bytes) -> None: ...

    def get_checkpoint(self, segment: int) -> bytes | None: ...


@dataclass(frozen=True)
class SegmentKeyframes:
    """What Stage 2 needs from Stage 1 for one segment."""

    index: int
    keyframes: tuple[Keyframe, ...]  # the segment's own, both ends included
    memory: MemoryView
    model_seconds: float  # time spent inside the keyframe model
    made: int  # keyframes Stage 1 generated for this call (each keyframe is counted once)
    # Neighbours' keyframes (see CONTEXT_KEYFRAMES).
    before: tuple[Keyframe, ...] = ()
    after: tuple[Keyframe, ...] = ()
    restarted: bool = False  # the first result of a keyframe worker that had died
    peak_memory: PeakMemory | None = None  # Stage 1's process's peak memory after this call

    def around(self) -> tuple[Keyframe, ...]:
        """All keyframes in time order: context before, own, context after."""
        return self.before + self.keyframes + self.after


@dataclass(frozen=True)
class RenderedSegment:
    index: int
    frame_start: int
    frames: np.ndarray  # [T, H, W, 3] uint8
    model_seconds: float


class KeyframeStage:
    """Generates the keyframe track in order and keeps the replay memory.

    Calls come in segment order (0, 1, 2, ...): each keyframe is conditioned on the ones
    before it. A call for any other segment (a resumed render, a restarted actor, a retry)
    first goes back to the state stored when the segment before it was done.
    """

    def __init__(self, timeline: Timeline, backend: Backend, memory: KeyframeWriter,
                 use_memory: bool = True) -> None:
        self.timeline = timeline
        self.use_memory = use_memory  # False: the model never sees the replay memory (ablation)
        self.backend = backend
        self.model = backend.keyframe_model()
        self.memory = memory
        spec = timeline.spec
        self.reference = load_image(spec.image, spec.keyframe_size) if spec.image else None
        self.history: list[Keyframe] = []
        # What the model may read back from the replay memory (all of it is also in LMDB):
        # bounded, so an unbounded live job does not grow.
        self.prompt_anchors: dict[str, Keyframe] = {}  # each prompt's first remembered keyframe
        self.recent_memory: deque[Keyframe] = deque(maxlen=MEMORY_RECENT)
        self.track = timeline.track
        self.made: dict[int, Keyframe] = {}  # position in the track -> keyframe (recent only)
        self.count = 0  # keyframes generated so far == position of the next one
        self.next_segment = 0

    def memory_view(self, prompt: str | None = None) -> MemoryView:
        """The video's anchor, `prompt`'s own anchor and the recent entries, oldest first."""
        if not self.prompt_anchors or not self.use_memory:
            return MemoryView()
        picked = [next(iter(self.prompt_anchors.values())), *self.recent_memory]
        if prompt in self.prompt_anchors:
            picked.append(self.prompt_anchors[prompt])
        by_time = {k.t: k for k in picked}  # one entry per memory slot
        return MemoryView(tuple(by_time[t] for t in sorted(by_time)))

    def _generate_through(self, position: int) -> float:
        """Generate keyframes in order up to track[position]; returns model seconds."""
        seconds = 0.0
        while self.count <= position:
            t = self.track[self.count]
            plan = self.timeline.keyframe_plan(self.count, t, self.reference)
            start = time.perf_counter()
            keyframe = self.model.next_keyframe(plan, tuple(self.history[-HISTORY:]),
                                                self.memory_view(plan.prompt))
            seconds += time.perf_counter() - start
            if not isinstance(keyframe.state, self.backend.state_type):
                raise TypeError(f"{self.backend.name} keyframe model returned a "
                                f"{type(keyframe.state).__name__} state, expected "
                                f"{self.backend.state_type.__name__}")
            self.made[self.count] = keyframe
            self.count += 1
            self.history = [*self.history[-HISTORY:], keyframe]
            if plan.store_in_memory:
                self.memory.put_keyframe(t, keyframe.image, {
                    "prompt": keyframe.prompt, "seed": plan.seed, "model": self.backend.name,
                    "index": plan.index, "state": keyframe.state.summary(),
                })
                self.prompt_anchors.setdefault(keyframe.prompt, keyframe)
                self.recent_memory.append(keyframe)
        return seconds

    def _made(self, lo: int, hi: int) -> tuple[Keyframe, ...]:
        return tuple(self.made[i] for i in range(max(lo, 0), min(hi, self.count)))

    def checkpoint(self) -> Stage1Checkpoint:
        """What segment `next_segment` starts from."""
        return Stage1Checkpoint(self.next_segment, self.count, tuple(self.history), dict(self.made),
                                dict(self.prompt_anchors), tuple(self.recent_memory))

    def restore(self, k: int) -> None:
        """Go back (or forward) to the state stored when segment k-1 was done. Without it
        (asked out of order: Ray may retry a dead actor's queued calls in any order), start
        from the latest state stored before it and make the segments in between again."""
        start = next((j for j in range(k, max(0, k - KEEP_BACK), -1)
                      if self.memory.get_checkpoint(j) is not None), 0)
        self._load(start)
        while self.next_segment < k:
            self.run_segment(self.next_segment)

    def _load(self, k: int) -> None:
        if k == 0:
            state = Stage1Checkpoint(0, 0, (), {}, {}, ())
        else:
            data = self.memory.get_checkpoint(k)
            if data is None:
                raise LookupError(f"the replay memory holds no Stage 1 state for segment {k}")
            state = checkpoint.decode(data, self.backend.state_type)
        self.next_segment, self.count = state.segment, state.count
        self.history = list(state.history)
        self.made = dict(state.made)
        self.prompt_anchors = dict(state.prompt_anchors)
        self.recent_memory = deque(state.recent_memory, maxlen=MEMORY_RECENT)

    def run_segment(self, k: int) -> SegmentKeyframes:
        if k != self.next_segment:
            self.restore(k)
        first, last = self.timeline.track_span(k)
        before = self.count
        # Stage 1 runs ahead, so the segment also gets its successor's first keyframes.
        seconds = self._generate_through(min(last + CONTEXT_KEYFRAMES, len(self.track) - 1))
        keys = SegmentKeyframes(k, self._made(first, last + 1), self.memory_view(), seconds,
                                made=self.count - before,
                                before=self._made(first - CONTEXT_KEYFRAMES, first),
                                after=self._made(last + 1, last + 1 + CONTEXT_KEYFRAMES),
                                peak_memory=peak_memory())
        for i in [i for i in self.made if i < first - CONTEXT_KEYFRAMES]:
            del self.made[i]  # nothing older is needed again
        self.next_segment = k + 1
        # Stored before anyone can ask for segment k+1: a restarted stage always finds it.
        self.memory.put_checkpoint(self.next_segment, checkpoint.encode(self.checkpoint()))
        return keys


class SegmentStage:
    """Renders whole segments at full frame rate and resolution."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.model = backend.segment_model()

    def render(self, plan: SegmentPlan, keys: SegmentKeyframes) -> RenderedSegment:
        if keys.index != plan.index:
            raise ValueError(f"keyframes of segment {keys.index} given for segment {plan.index}")
        keyframes = keys.around()
        foreign = [k for k in keyframes if not isinstance(k.state, self.backend.state_type)]
        if foreign:
            raise ValueError(f"the {self.backend.name} segment model cannot render keyframes with "
                             f"{type(foreign[0].state).__name__} state (made by another backend)")
        start = time.perf_counter()
        frames = self.model.render(plan, keyframes, keys.memory)
        seconds = time.perf_counter() - start
        expected = (plan.num_frames, plan.height, plan.width, 3)
        if frames.shape != expected or frames.dtype != np.uint8:
            raise ValueError(f"segment model returned {frames.shape} {frames.dtype}, "
                             f"expected {expected} uint8")
        return RenderedSegment(plan.index, plan.frame_start, frames, seconds)


def rendered_stats(keys: SegmentKeyframes, segment: RenderedSegment,
                   encoded: PackagedSegment | None = None) -> SegmentRendered:
    """The small half of a render result: what the loop's stat loggers need. Called where the
    segment was rendered, so `memory` is that worker's peak. `encoded`: the segment as its
    worker encoded it for the stitcher."""
    return SegmentRendered(segment.index, len(segment.frames), segment.model_seconds,
                           keys.model_seconds, keys.made,
                           restarted=("keyframe",) if keys.restarted else (),
                           memory=peak_memory(), keyframe_memory=keys.peak_memory,
                           encode_seconds=encoded.encode_seconds if encoded else 0.0,
                           shipped_bytes=encoded.nbytes if encoded else segment.frames.nbytes)
