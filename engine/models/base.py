"""The backend contract and the backend registry.

A backend is one class that declares what it can do (`Capabilities`), the typed state its
keyframes carry (a `KeyframeState` dataclass) and takes a `BackendConfig` (weights, device,
dtype, threads) in its constructor. It makes the two models the stages call:

- Stage 1, `KeyframeModel.next_keyframe(plan, history, memory) -> Keyframe`: the keyframe at
  `plan.t`, given the last few keyframes (oldest first) and a bounded view of the replay memory.
- Stage 2, `SegmentModel.render(plan, keyframes, memory) -> frames [T, H, W, 3] uint8`: every
  frame of `plan` (overlap included). `keyframes` are in time order: the segment's own, both
  ends included, plus up to `CONTEXT_KEYFRAMES` of each neighbour's. What the job says at each of
  those times (prompt, beat, audio window) is in `plan.cue_at(t)`, not in the keyframe state.

Backends are named by a string and imported lazily, so choosing one never loads another (or
its weights), and nothing touches a device at import time.

Does this fit a real open-weights video model on GPUs? Checked against a latent video diffusion
model (LTX-Video's condition pipeline, Wan's first-last-frame model):
- Keyframe state: the keyframe's VAE latent (an `np.ndarray` field of the backend's state
  dataclass, serialised by `to_bytes`), so Stage 2 conditions on latents without re-encoding
  pixels; `Keyframe.image` stays the small decoded picture the replay memory stores and people
  inspect.
- Stage 2: keyframe i is at frame index `round(keyframes[i].t * plan.fps) - plan.frame_start`
  (negative or past the end for context keyframes): exactly what a pipeline that takes
  conditioning frames at given indices needs; a first-last-frame model takes the segment's own
  first and last keyframes. Neighbours get the same keyframes around their shared overlap, so a
  deterministic model renders the overlap alike on both sides.
- Memory: `MemoryView` entries are keyframes with the same typed state, usable as reference
  latents (a first-frame anchor, as StreamingT2V and LongLive keep).
- Config: a weights folder checked by `check()` before any work starts (one-line error naming
  what is missing), `device="cuda"` and `dtype="bfloat16"` honoured by the constructor that loads
  the weights (never at import); Ray gives each segment actor its GPU (`num_gpus`).
- Determinism: every draw comes from a generator seeded by (job seed, stage, index), as the
  bundled backend does, so frames do not depend on the worker count.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import numpy as np

from engine.errors import InputError
from engine.timeline import KeyframePlan, SegmentPlan


@dataclass(frozen=True)
class KeyframeState:
    """Base of a backend's keyframe state: a frozen dataclass of numbers, strings and arrays.

    Serialisable without pickle (`to_bytes`/`from_bytes`, an .npz archive), so it can be
    stored and read back by a process that never imported the backend's code.
    """

    def to_bytes(self) -> bytes:
        arrays = {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)
                  if isinstance(getattr(self, f.name), np.ndarray)}
        header = json.dumps(self.summary()).encode()
        buffer = io.BytesIO()
        np.savez(buffer, __scalars__=np.frombuffer(header, np.uint8), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            values: dict[str, Any] = json.loads(archive["__scalars__"].tobytes())
            values.update({name: archive[name] for name in archive.files if name != "__scalars__"})
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """The fields that are not arrays: what the replay memory's metadata shows."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not isinstance(getattr(self, f.name), np.ndarray)}


S = TypeVar("S", bound=KeyframeState)


@dataclass(frozen=True)
class Keyframe(Generic[S]):
    t: float  # video time, seconds
    image: np.ndarray  # [h, w, 3] uint8 at keyframe resolution
    prompt: str  # the prompt in force at t
    state: S  # the backend's own state (its declared `state_type`)


@dataclass(frozen=True)
class MemoryView:
    """Read-only keyframes from the replay memory, oldest first.

    The keyframe stage keeps the ones a model may read (the video's first, each prompt's
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
    """Stage 1: one instance per job, called in keyframe order."""

    def next_keyframe(
        self, plan: KeyframePlan, history: Sequence[Keyframe], memory: MemoryView
    ) -> Keyframe: ...


class SegmentModel(Protocol):
    """Stage 2: renders any segment of the job, in any order."""

    def render(
        self, plan: SegmentPlan, keyframes: Sequence[Keyframe], memory: MemoryView
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared once on its class."""

    # Draws only the world's vocabulary: a prompt must name a shape it knows.
    strict_prompts: bool = False
    # Stage 1 reads the replay memory (`lvp eval` measures the memory's gain only then).
    reads_memory: bool = True
    # Uses the reference image (otherwise --image gets a warning that it is ignored).
    reads_image: bool = True
    # Needs a weights file or folder (`check()` looks for it before any work starts).
    needs_weights: bool = False
    # Stage 1 runs the model too: on a Ray cluster with --gpus-per-worker, the keyframe actor
    # reserves as many GPUs as a segment actor (so a job needs workers + 1 GPU slots).
    keyframes_on_gpu: bool = False


@dataclass(frozen=True)
class BackendConfig:
    weights: Path | None = None  # file or folder; None: the backend's bundled default, if any
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1  # CPU threads for the backend's own math, per actor


class Backend(ABC):
    """A named model family: capabilities, state type, and its Stage 1 and Stage 2 models."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    state_type: ClassVar[type[KeyframeState]]

    def __init__(self, config: BackendConfig | None = None) -> None:
        self.config = config or BackendConfig()

    @classmethod
    def check(cls, config: BackendConfig) -> None:
        """Raise InputError when the backend cannot run with `config` (missing weights, ...).

        Cheap and import-light: the command line calls it before any work starts."""
        return None

    @classmethod
    def test_config(cls, folder: Path) -> BackendConfig:
        """A config with small random components (written under `folder` if they need files),
        for the contract tests: no shipped or downloaded weights."""
        return BackendConfig()

    @abstractmethod
    def keyframe_model(self) -> KeyframeModel: ...

    @abstractmethod
    def segment_model(self) -> SegmentModel: ...


# name -> "module:Class" of a Backend subclass
BACKENDS: dict[str, str] = {
    "procedural": "engine.models.procedural:ProceduralBackend",
    "tiny": "engine.models.tiny:TinyBackend",
    # LTX-Video through diffusers, for GPUs (`pip install 'lvp[diffusers]'`, weights folder).
    "ltx-video": "engine.models.ltx:LtxBackend",
}
# The bundled learned model; `procedural` is the world itself (the oracle the model is
# trained on and evaluated against).
DEFAULT_BACKEND = "tiny"

PLUGIN_GROUP = "lvp.backends"  # entry-point group where other packages register backends


def available_backends() -> dict[str, str]:
    """Built-in backends plus those installed packages declare under `lvp.backends`.

    A GPU backend lives in its own package and declares, in its pyproject.toml:
        [project.entry-points."lvp.backends"]
        mymodel = "mypackage.lvp_backend:MyBackend"   # a Backend subclass
    """
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP)}
    return {**found, **BACKENDS}


def backend_class(name: str) -> type[Backend]:
    known = available_backends()
    if name not in known:
        raise InputError(f"unknown model {name!r} (available: {', '.join(sorted(known))})")
    module, _, attr = known[name].partition(":")
    cls = getattr(importlib.import_module(module), attr or "Backend", None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise InputError(f"model {name!r}: {known[name]} is not an lvp Backend class")
    return cls


def check_backend(name: str, config: BackendConfig | None = None) -> type[Backend]:
    """Known name, and it can run with `config` (weights on disk); nothing heavy is loaded."""
    cls = backend_class(name)
    cls.check(config or BackendConfig())
    return cls


def create_backend(name: str, config: BackendConfig | None = None) -> Backend:
    config = config or BackendConfig()
    return check_backend(name, config)(config)
