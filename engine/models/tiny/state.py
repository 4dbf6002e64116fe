"""The tiny model's keyframe state (numpy only: the registry imports it without torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.models.base import KeyframeState


@dataclass(frozen=True)
class TinyState(KeyframeState):
    # The subject's pose (see layers.Pose): centre in [0, 1] of the frame, size, angle.
    x: float
    y: float
    scale: float
    angle: float
    beat_phase: float  # the beat's running integral at the keyframe: the pose model reads its advance
    canvas: np.ndarray  # [CANVAS_CHANNELS, 32, 32] float16: the layered canvas (the model's latent)
