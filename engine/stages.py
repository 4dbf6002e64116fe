"""Stage 1 and Stage 2 as plain objects: Ray actors hold one and forward to it, and
unit tests run the same objects in one process."""

from __future__ import annotations

import time
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
MEMORY_RECENT = 3  # long-term context: the anchor plus the latest few memory entries


@dataclass(frozen=True)
class SegmentKeyframes:
    """What Stage 2 needs from Stage 1 for one segment."""

    index: int
    keyframes: tuple[Keyframe, ...]
    memory: MemoryView
    model_seconds: float  # time spent inside the keyframe model


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
        self.remembered: list[Keyframe] = []
        self.count = 0

    def memory_view(self) -> MemoryView:
        if not self.remembered or not self.use_memory:
            return MemoryView()
        anchor, rest = self.remembered[0], self.remembered[1:]
        return MemoryView((anchor, *rest[-MEMORY_RECENT:]))

    def run_segment(self, k: int) -> SegmentKeyframes:
        seconds = 0.0
        keyframes = []
        for t in self.timeline.keyframe_times(k):
            if self.history and abs(self.history[-1].t - t) < 1e-9:
                keyframes.append(self.history[-1])  # shared boundary keyframe
                continue
            plan = self.timeline.keyframe_plan(self.count, t, self.reference)
            start = time.perf_counter()
            keyframe = self.model.next_keyframe(plan, tuple(self.history[-HISTORY:]),
                                                self.memory_view())
            seconds += time.perf_counter() - start
            self.count += 1
            self.history = [*self.history[-HISTORY:], keyframe]
            keyframes.append(keyframe)
            if plan.store_in_memory:
                self.memory.put_keyframe(t, keyframe.image, {
                    "prompt": keyframe.prompt, "seed": plan.seed, "model": self.model_name,
                    "index": plan.index, "state": keyframe.state,
                })
                self.remembered.append(keyframe)
        return SegmentKeyframes(k, tuple(keyframes), self.memory_view(), seconds)


class SegmentStage:
    """Renders whole segments at full frame rate and resolution."""

    def __init__(self, model: str) -> None:
        self.model = create_segment_model(model)

    def render(self, plan: SegmentPlan, keys: SegmentKeyframes) -> RenderedSegment:
        if keys.index != plan.index:
            raise ValueError(f"keyframes of segment {keys.index} given for segment {plan.index}")
        start = time.perf_counter()
        frames = self.model.render(plan, keys.keyframes, keys.memory)
        seconds = time.perf_counter() - start
        expected = (plan.num_frames, plan.height, plan.width, 3)
        if frames.shape != expected or frames.dtype != np.uint8:
            raise ValueError(f"segment model returned {frames.shape} {frames.dtype}, "
                             f"expected {expected} uint8")
        return RenderedSegment(plan.index, plan.frame_start, frames, seconds)
