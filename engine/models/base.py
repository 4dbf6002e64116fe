"""Model contracts and the backend registry.

Two narrow contracts keep backends swappable:
- a keyframe model: next_keyframe(plan, history, memory) -> Keyframe   (Stage 1)
- a segment model: render(plan, keyframes, memory) -> frames [T, H, W, 3] uint8  (Stage 2);
  `keyframes` are in time order: the segment's own plus up to two of each neighbour's
Backends are named by a string and imported lazily, so choosing one never loads another
(or its weights) and nothing touches a device at import time.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from engine.errors import InputError
from engine.timeline import KeyframePlan, SegmentPlan


@dataclass(frozen=True)
class Keyframe:
    t: float  # video time, seconds
    image: np.ndarray  # [h, w, 3] uint8 at keyframe resolution
    prompt: str
    state: dict[str, Any] = field(default_factory=dict)  # backend-specific, JSON-serialisable
    latent: np.ndarray | None = None  # backend-specific picture state (the tiny model's canvas)


@dataclass(frozen=True)
class MemoryView:
    """Read-only keyframes from the replay memory, oldest first.

    The keyframe actor keeps the ones a model may read (the video's first, each prompt's
    first, the latest few) beside the LMDB store it writes, and ships them with each
    segment's keyframes, so segment workers on other nodes need no access to the store.
    """

    entries: tuple[Keyframe, ...] = ()

    @property
    def anchor(self) -> Keyframe | None:
        """The first keyframe of the video: the subject's identity."""
        return self.entries[0] if self.entries else None

    def recent(self, n: int) -> tuple[Keyframe, ...]:
        return self.entries[-n:] if n > 0 else ()


class KeyframeModel(Protocol):
    """Stage 1. A backend that never looks at the memory may say so with a class attribute
    `reads_memory = False` (optional, default True): `lvp eval` then reports no memory gain."""

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
    "tiny": "engine.models.tiny.pipeline",
}
# The bundled learned model; `procedural` is the world itself (the oracle the model is
# trained on and evaluated against).
DEFAULT_BACKEND = "tiny"
# Backends that draw only what the world's vocabulary names (a prompt needs a known shape).
STRICT_PROMPTS = {"procedural"}


PLUGIN_GROUP = "lvp.backends"  # entry-point group where other packages register backends


def available_backends() -> dict[str, str]:
    """Built-in backends plus those installed packages declare under `lvp.backends`.

    A GPU backend lives in its own package and declares, in its pyproject.toml:
        [project.entry-points."lvp.backends"]
        mymodel = "mypackage.lvp_backend"   # a module with KeyframeModel and SegmentModel
    """
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP)}
    return {**found, **BACKENDS}


def check_backend(name: str) -> None:
    """Known name, and its weights are on disk (checked without importing the backend)."""
    if name not in available_backends():
        known = ", ".join(sorted(available_backends()))
        raise InputError(f"unknown model {name!r} (available: {known})")
    if name == "tiny":
        from engine.models.tiny import check_weights

        check_weights()


def create_keyframe_model(name: str) -> KeyframeModel:
    check_backend(name)
    return importlib.import_module(available_backends()[name]).KeyframeModel()


def create_segment_model(name: str) -> SegmentModel:
    check_backend(name)
    return importlib.import_module(available_backends()[name]).SegmentModel()
