"""Stage 1 and Stage 2 as plain objects: Ray actors hold one and forward to it, and
unit tests run the same objects in one process."""

from __future__ import annotations

import bisect
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.image_input import load_image
from engine.models.base import (
    Keyframe,
    MemoryView,
    create_keyframe_model,
    create_segment_model,
)
from engine.timeline import SegmentPlan, Timeline
from memory.replay import ReplayMemory

HISTORY = 4  # short-term context: the last few keyframes
# Long-term context: the video's first keyframe, the first remembered keyframe of the prompt
# in force (so a prompt that comes back finds its scene again) and the latest few entries.
MEMORY_RECENT = 3
CONTEXT = 2  # keyframes beyond each end of a segment that Stage 2 also gets


@dataclass(frozen=True)
class SegmentKeyframes:
    """What Stage 2 needs from Stage 1 for one segment."""

    index: int
    keyframes: tuple[Keyframe, ...]  # the segment's own, both ends included
    memory: MemoryView
    model_seconds: float  # time spent inside the keyframe model
    # Neighbours' keyframes: the overlap frames at a boundary are rendered by both segments,
    # and with the same keyframes around them both renders agree, so the seam vanishes.
    before: tuple[Keyframe, ...] = ()
    after: tuple[Keyframe, ...] = ()

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

    Calls must come in segment order (0, 1, 2, ...): each keyframe is conditioned on
    the ones before it.
    """

    def __init__(self, timeline: Timeline, model: str, memory: ReplayMemory,
                 use_memory: bool = True) -> None:
        self.timeline = timeline
        self.use_memory = use_memory  # False: the model never sees the replay memory (ablation)
        self.model_name = model
        self.model = create_keyframe_model(model)
        self.memory = memory
        spec = timeline.spec
        self.reference = load_image(spec.image, spec.keyframe_size) if spec.image else None
        self.history: list[Keyframe] = []
        # What the model may read back from the replay memory (all of it is also in LMDB):
        # bounded, so an unbounded live job does not grow.
        self.prompt_anchors: dict[str, Keyframe] = {}  # each prompt's first remembered keyframe
        self.recent_memory: deque[Keyframe] = deque(maxlen=MEMORY_RECENT)
        self.track = timeline.all_keyframe_times()  # every keyframe time of the video
        self.made: dict[int, Keyframe] = {}  # position in the track -> keyframe (recent only)
        self.count = 0  # keyframes generated so far == position of the next one

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
            self.made[self.count] = keyframe
            self.count += 1
            self.history = [*self.history[-HISTORY:], keyframe]
            if plan.store_in_memory:
                self.memory.put_keyframe(t, keyframe.image, {
                    "prompt": keyframe.prompt, "seed": plan.seed, "model": self.model_name,
                    "index": plan.index, "state": keyframe.state,
                })
                self.prompt_anchors.setdefault(keyframe.prompt, keyframe)
                self.recent_memory.append(keyframe)
        return seconds

    def _made(self, lo: int, hi: int) -> tuple[Keyframe, ...]:
        return tuple(self.made[i] for i in range(max(lo, 0), min(hi, self.count)))

    def run_segment(self, k: int) -> SegmentKeyframes:
        own = self.timeline.keyframe_times(k)
        first = bisect.bisect_left(self.track, own[0] - 1e-9)
        last = first + len(own) - 1
        # Stage 1 runs CONTEXT keyframes ahead, so the segment also gets its successor's first ones.
        seconds = self._generate_through(min(last + CONTEXT, len(self.track) - 1))
        keys = SegmentKeyframes(k, self._made(first, last + 1), self.memory_view(), seconds,
                                before=self._made(first - CONTEXT, first),
                                after=self._made(last + 1, last + 1 + CONTEXT))
        for i in [i for i in self.made if i < first - CONTEXT]:
            del self.made[i]  # nothing older is needed again
        return keys


class SegmentStage:
    """Renders whole segments at full frame rate and resolution."""

    def __init__(self, model: str) -> None:
        self.model = create_segment_model(model)

    def render(self, plan: SegmentPlan, keys: SegmentKeyframes) -> RenderedSegment:
        if keys.index != plan.index:
            raise ValueError(f"keyframes of segment {keys.index} given for segment {plan.index}")
        start = time.perf_counter()
        frames = self.model.render(plan, keys.around(), keys.memory)
        seconds = time.perf_counter() - start
        expected = (plan.num_frames, plan.height, plan.width, 3)
        if frames.shape != expected or frames.dtype != np.uint8:
            raise ValueError(f"segment model returned {frames.shape} {frames.dtype}, "
                             f"expected {expected} uint8")
        return RenderedSegment(plan.index, plan.frame_start, frames, seconds)
