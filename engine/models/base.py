"""Model contracts and the backend registry.

Two narrow contracts keep backends swappable:
- a keyframe model: next_keyframe(plan, history, memory) -> Keyframe   (Stage 1)
- a segment model: render(plan, keyframes, memory) -> frames [T, H, W, 3] uint8  (Stage 2)
Backends are named by a string and imported lazily, so choosing one never loads another
(or its weights) and nothing touches a device at import time.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engine.errors import InputError
from engine.timeline import KeyframePlan, SegmentPlan


@dataclass(frozen=True)
class Keyframe:
    t: float  # video time, seconds
    image: np.ndarray  # [h, w, 3] uint8 at keyframe resolution
    prompt: str
    state: dict[str, float] = field(default_factory=dict)  # backend-specific extras


@dataclass(frozen=True)
class MemoryView:
    """Read-only keyframes from the replay memory, oldest first.

    The keyframe actor reads them from LMDB and ships them with each segment's
    keyframes, so segment workers on other nodes need no access to the store.
    """

    entries: tuple[Keyframe, ...] = ()

    @property
    def anchor(self) -> Keyframe | None:
        """The first keyframe of the video: the subject's identity."""
        return self.entries[0] if self.entries else None

    def recent(self, n: int) -> tuple[Keyframe, ...]:
        return self.entries[-n:] if n > 0 else ()


class KeyframeModel(Protocol):
    def next_keyframe(
        self, plan: KeyframePlan, history: Sequence[Keyframe], memory: MemoryView
    ) -> Keyframe: ...


class SegmentModel(Protocol):
    def render(
        self, plan: SegmentPlan, keyframes: Sequence[Keyframe], memory: MemoryView
    ) -> np.ndarray: ...


# name -> module holding `KeyframeModel` and `SegmentModel` classes.
BACKENDS: dict[str, str] = {
    "procedural": "engine.models.procedural",
}


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        known = ", ".join(sorted(BACKENDS))
        raise InputError(f"unknown model {name!r} (available: {known})")


def create_keyframe_model(name: str) -> KeyframeModel:
    check_backend(name)
    return importlib.import_module(BACKENDS[name]).KeyframeModel()


def create_segment_model(name: str) -> SegmentModel:
    check_backend(name)
    return importlib.import_module(BACKENDS[name]).SegmentModel()
