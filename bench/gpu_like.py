"""A benchmark backend that behaves like a GPU model, for measuring the engine, not a model.

Stage 2 takes a set wall time per segment while using almost no CPU (a process waiting on a
GPU sleeps), Stage 1 a set time per keyframe; frames are cheap to make but not trivially
compressible (a seeded noise texture that drifts, so the encoder works as on real video).
Registered the way any plug-in is (the `lvp.backends` entry point `gpu-like`, see
pyproject.toml), and not among the models `lvp render --help` offers.

Costs come from a JSON file given as the weights:
    {"segment_seconds": 2.0, "keyframe_seconds": 0.02}
    lvp render --model gpu-like --weights costs.json ...
Without one, both cost nothing (the contract tests).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.models.base import Backend, BackendConfig, Capabilities, Keyframe, KeyframeState, MemoryView
from engine.timeline import KeyframePlan, SegmentPlan

DRIFT = 3  # pixels the texture moves per frame, across and down


@dataclass(frozen=True)
class Costs:
    segment_seconds: float = 0.0
    keyframe_seconds: float = 0.0

    @classmethod
    def read(cls, path: Path | None) -> Costs:
        if path is None:
            return cls()
        try:
            data = json.loads(Path(path).read_text())
            costs = cls(float(data.get("segment_seconds", 0.0)), float(data.get("keyframe_seconds", 0.0)))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise InputError(f"gpu-like costs {path}: not a JSON object of seconds ({exc})") from None
        if not (0 <= costs.segment_seconds <= 600 and 0 <= costs.keyframe_seconds <= 60):
            raise InputError(f"gpu-like costs {path}: segment_seconds 0-600, keyframe_seconds 0-60")
        return costs


@dataclass(frozen=True)
class GpuLikeState(KeyframeState):
    frame: int  # the video frame the keyframe shows


def _texture(seed: int, height: int, width: int) -> np.ndarray:
    """A noise texture, blurred a little so x264 sees structure and not pure noise."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(noise, 4, axis=0), 4, axis=1)[:height, :width]


def _frame(texture: np.ndarray, index: int) -> np.ndarray:
    return np.roll(texture, (index * DRIFT, index * DRIFT), axis=(0, 1))


class GpuLikeKeyframeModel:
    def __init__(self, costs: Costs) -> None:
        self.costs = costs

    def next_keyframe(self, plan: KeyframePlan, history: Sequence[Keyframe],
                      memory: MemoryView) -> Keyframe:
        time.sleep(self.costs.keyframe_seconds)
        width, height = plan.size
        index = round(plan.t * 30)
        return Keyframe(plan.t, _frame(_texture(plan.seed, height, width), index), plan.prompt,
                        GpuLikeState(index))


class GpuLikeSegmentModel:
    def __init__(self, costs: Costs) -> None:
        self.costs = costs

    def render(self, plan: SegmentPlan, keyframes: Sequence[Keyframe],
               memory: MemoryView) -> np.ndarray:
        time.sleep(self.costs.segment_seconds)  # the GPU's time: the CPU idles meanwhile
        texture = _texture(plan.seed, plan.height, plan.width)
        return np.stack([_frame(texture, i) for i in range(plan.frame_start, plan.frame_stop)])


class GpuLikeBackend(Backend):
    name = "gpu-like"
    # Its "weights" are the costs file (optional: without it nothing costs time).
    capabilities = Capabilities(strict_prompts=False, reads_memory=False, reads_image=False,
                                needs_weights=True)
    state_type = GpuLikeState

    @classmethod
    def check(cls, config: BackendConfig) -> None:
        Costs.read(config.weights)

    def keyframe_model(self) -> GpuLikeKeyframeModel:
        return GpuLikeKeyframeModel(Costs.read(self.config.weights))

    def segment_model(self) -> GpuLikeSegmentModel:
        return GpuLikeSegmentModel(Costs.read(self.config.weights))
