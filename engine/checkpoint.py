"""Stage 1's state at a segment boundary, as bytes for the replay memory.

Stage 1 is a chain: each keyframe is conditioned on the ones before it and on the memory the
stage keeps. A render that resumes, or a keyframe actor that restarts, continues from the
state stored when segment k's keyframes were asked for, and makes the same keyframes an
uninterrupted run would have. No pickle: keyframes are an .npz archive of arrays and a JSON
header, their backend state in its own `to_bytes` form.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.models.base import Keyframe, KeyframeState


@dataclass(frozen=True)
class Stage1Checkpoint:
    """Everything KeyframeStage carries from one segment to the next."""

    segment: int  # the segment whose keyframes are asked for next
    count: int  # keyframes generated so far
    history: tuple[Keyframe, ...]  # the last few, oldest first
    made: dict[int, Keyframe]  # track position -> keyframe, the recent ones neighbours need
    prompt_anchors: dict[str, Keyframe]  # in insertion order: the first is the video's anchor
    recent_memory: tuple[Keyframe, ...]


def encode(checkpoint: Stage1Checkpoint) -> bytes:
    # Each distinct keyframe once, named by its time; the structure refers to times.
    keyframes: dict[float, Keyframe] = {}
    for k in (*checkpoint.history, *checkpoint.made.values(), *checkpoint.prompt_anchors.values(),
              *checkpoint.recent_memory):
        keyframes.setdefault(k.t, k)
    times = sorted(keyframes)
    header: dict[str, Any] = {
        "segment": checkpoint.segment,
        "count": checkpoint.count,
        "keyframes": [{"t": t, "prompt": keyframes[t].prompt} for t in times],
        "history": [k.t for k in checkpoint.history],
        "made": [[i, k.t] for i, k in checkpoint.made.items()],
        "prompt_anchors": [[p, k.t] for p, k in checkpoint.prompt_anchors.items()],
        "recent_memory": [k.t for k in checkpoint.recent_memory],
    }
    arrays: dict[str, np.ndarray] = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8)}
    for i, t in enumerate(times):
        arrays[f"image{i}"] = keyframes[t].image
        arrays[f"state{i}"] = np.frombuffer(keyframes[t].state.to_bytes(), np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def decode(data: bytes, state_type: type[KeyframeState]) -> Stage1Checkpoint:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        header = json.loads(archive["header"].tobytes())
        by_time = {
            entry["t"]: Keyframe(entry["t"], archive[f"image{i}"], entry["prompt"],
                                 state_type.from_bytes(archive[f"state{i}"].tobytes()))
            for i, entry in enumerate(header["keyframes"])
        }
    return Stage1Checkpoint(
        segment=header["segment"],
        count=header["count"],
        history=tuple(by_time[t] for t in header["history"]),
        made={i: by_time[t] for i, t in header["made"]},
        prompt_anchors={p: by_time[t] for p, t in header["prompt_anchors"]},
        recent_memory=tuple(by_time[t] for t in header["recent_memory"]),
    )
