"""The `procedural` backend: the world simulator itself, a ground-truth oracle.

It ignores the keyframes' pixels and renders what the world says is at each instant, so
it is the reference every learned backend is measured against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from engine.models.base import Backend, Capabilities, Keyframe, KeyframeState, MemoryView
from engine.schedule import scene_of
from engine.timeline import KeyframePlan, SegmentPlan
from engine.world import BeatSample, background, draw_subject, subject_state


@dataclass(frozen=True)
class ProceduralState(KeyframeState):
    """The subject's pose in the world at the keyframe."""

    x: float
    y: float
    scale: float
    angle: float


class ProceduralKeyframeModel:
    def next_keyframe(
        self, plan: KeyframePlan, history: Sequence[Keyframe], memory: MemoryView
    ) -> Keyframe:
        scene = scene_of(plan.prompt)
        state = subject_state(scene, plan.t, plan.seed, BeatSample(plan.beat_energy, plan.beat_phase))
        width, height = plan.size
        # Render at 4x and shrink: keyframes are small, so anti-alias them properly.
        big = background(scene.background, width * 4, height * 4, plan.seed).copy()
        draw_subject(big, scene, state)
        image = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA)
        return Keyframe(plan.t, image, plan.prompt,
                        ProceduralState(state.x, state.y, state.scale, state.angle))


class ProceduralSegmentModel:
    def render(
        self, plan: SegmentPlan, keyframes: Sequence[Keyframe], memory: MemoryView
    ) -> np.ndarray:
        frames = np.empty((plan.num_frames, plan.height, plan.width, 3), dtype=np.uint8)
        for i, t in enumerate(plan.frame_times()):
            scene = scene_of(plan.prompts.text_at(float(t)))
            beat = BeatSample(float(plan.beat_energy[i]), float(plan.beat_phase[i]))
            state = subject_state(scene, float(t), plan.seed, beat)
            frames[i] = background(scene.background, plan.width, plan.height, plan.seed)
            draw_subject(frames[i], scene, state)
        return frames


class ProceduralBackend(Backend):
    name = "procedural"
    # The world itself says what every keyframe shows: no memory, no image, a known shape.
    capabilities = Capabilities(strict_prompts=True, reads_memory=False, reads_image=False)
    state_type = ProceduralState

    def keyframe_model(self) -> ProceduralKeyframeModel:
        return ProceduralKeyframeModel()

    def segment_model(self) -> ProceduralSegmentModel:
        return ProceduralSegmentModel()
