"""The tiny model's keyframe state (numpy only: the registry imports it without torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.models.base import KeyframeState


def _still() -> np.ndarray:
    return np.zeros(8, np.float32)


@dataclass(frozen=True)
class TinyState(KeyframeState):
    # The subject's pose (see layers.Pose): centre in [0, 1] of the frame, size, angle.
    x: float
    y: float
    scale: float
    angle: float
    beat_phase: float  # the beat's running integral at the keyframe: the pose model reads its advance
    canvas: np.ndarray  # [CANVAS_CHANNELS, 32, 32] float16: the layered canvas (the model's latent)
    # The pose's motion at the keyframe: velocity then acceleration of (x, y, scale, angle),
    # per second (trajectory.py: Stage 2's path between keyframes follows it).
    motion: np.ndarray = field(default_factory=_still)
