"""The ltx-video backend's two models: LTX-Video with keyframes conditioned at their frames.

Stage 1 (keyframes, one per second, in order): the same model at low resolution
(`keyframe_short_side`, 256 pixels by default) and a low frame rate. The first keyframe is one
frame drawn from the prompt, or the user's picture itself when there is one (hard-conditioned
at frame 0). Each next keyframe is the last frame of a short clip (t + 1 frames, the
smallest the VAE takes: 9 for LTX-Video) spanning the time since the previous keyframe: the
previous keyframe's latent is that clip's frame 0 (in place), and the replay memory's anchor
for the prompt (its first remembered keyframe: the subject's identity, as StreamingT2V and
LongLive keep a first-frame anchor) joins as a soft reference (`anchor_strength`) at the
clip's last frame. The new keyframe's state is its own VAE latent (encoded once, from the frame
just decoded), so the next keyframe conditions on it without touching pixels.

Stage 2 (segments, any order, on any worker): every interval between two consecutive
keyframes is one clip. The interval's first keyframe is the clip's frame 0 (in place) and its
second joins as extra tokens at its exact frame index m = round(t_b * fps) - round(t_a * fps),
which LTX takes at any index; the clip has the smallest t*n + 1 frame count above m (frames
past the second keyframe are dropped), at the job's frame rate. A segment is the frames of
every interval it touches, context keyframes included: the overlap at a boundary falls in
intervals both neighbours render from the same two keyframes with the same seed (job seed,
stage 2, the interval's first frame), so both render it identically and the seam is the
stitcher's easy case. Frame 0 of each clip is the keyframe itself, so keyframes reappear at
their frames. The cost: the two intervals a segment shares with its neighbours are rendered
twice (7 clips for a 5 s segment instead of 5), and LTX sees one second at a time rather than
the whole segment (continuity across keyframes comes from the keyframes, which Stage 1 made
one from the other).

Keyframes are upscaled for Stage 2 by decoding their latent at Stage 1's resolution, resizing
the picture to the segment's and encoding it there (once per keyframe per segment). Sizes the
VAE does not take (sides not divisible by its 32) are rendered at the next size up and
centre-cropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from engine.models.base import BackendConfig, Keyframe, MemoryView
from engine.models.ltx.sampler import Condition, Ltx, generator, load_for
from engine.models.ltx.state import LtxState
from engine.timeline import KeyframePlan, SegmentPlan

log = logging.getLogger("lvp.ltx")

STAGE1, STAGE2, DECODE = 1, 2, 3  # generator streams: (job seed, stream, index)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    shrink = width < image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def _crop(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre crop [T, H', W', 3] to [T, height, width, 3]."""
    top, left = (frames.shape[1] - height) // 2, (frames.shape[2] - width) // 2
    return np.ascontiguousarray(frames[:, top:top + height, left:left + width])


def clip_frames(model: Ltx, frames: int) -> int:
    """The smallest frame count the VAE takes (t*n + 1) that holds `frames` frames."""
    t = model.temporal
    return -(-(frames - 1) // t) * t + 1


class LtxKeyframeModel:
    """Stage 1: one instance per job, called in keyframe order."""

    def __init__(self, config: BackendConfig) -> None:
        self.model = load_for(config)

    def stage1_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """Stage 1's (width, height): the keyframes' aspect at `keyframe_short_side`."""
        width, height = size
        scale = self.model.settings.keyframe_short_side / min(width, height)
        s = self.model.spatial
        return max(s, round(width * scale / s) * s), max(s, round(height * scale / s) * s)

    def next_keyframe(self, plan: KeyframePlan, history: Sequence[Keyframe[LtxState]],
                      memory: MemoryView) -> Keyframe[LtxState]:
        model = self.model
        width, height = self.stage1_size(plan.size)
        gen = generator(plan.seed, STAGE1, plan.index)
        text = model.text(plan.prompt)
        conditions: list[Condition] = []
        if not history:
            frames, rate = 1, 1.0
            if plan.reference is not None:
                picture = _resize(plan.reference, width, height)
                conditions.append(Condition(model.encode(picture[None]), 0))
        else:
            previous = history[-1]
            frames = model.temporal + 1
            rate = model.temporal / max(plan.t - previous.t, 1e-3)
            conditions.append(Condition(_latent(previous, width, height, model), 0))
            anchor = _anchor_for(plan.prompt, memory)
            if anchor is not None and anchor.t != previous.t:
                conditions.append(Condition(_latent(anchor, width, height, model), frames - 1,
                                            model.settings.anchor_strength))
        latent = model.sample(text, width, height, frames, rate, conditions, gen)
        picture = model.decode(latent, gen)[-1]
        # A one-frame latent is the picture's own; a clip's last latent frame also holds the
        # frames before it, so the keyframe is encoded alone (what frame 0 conditioning takes).
        own = latent if frames == 1 else model.encode(picture[None])
        state = LtxState(width, height, own[0].numpy().astype(np.float16))
        shown = _resize(picture, *plan.size)
        return Keyframe(plan.t, shown, plan.prompt, state)


def _anchor_for(prompt: str, memory: MemoryView) -> Keyframe[LtxState] | None:
    """The identity anchor: the earliest remembered keyframe made under this prompt."""
    return next((entry for entry in memory.entries if entry.prompt == prompt), None)


def _latent(keyframe: Keyframe[LtxState], width: int, height: int, model: Ltx) -> torch.Tensor:
    """The keyframe's latent at (width, height): its own when the sizes match, else decoded,
    resized and encoded again."""
    state = keyframe.state
    latent = torch.from_numpy(state.latent.astype(np.float32))[None]
    if (state.width, state.height) == (width, height):
        return latent
    picture = model.decode(latent, torch.Generator().manual_seed(0))[0]
    return model.encode(_resize(picture, width, height)[None])


class LtxSegmentModel:
    """Stage 2: renders any segment of the job, in any order."""

    def __init__(self, config: BackendConfig) -> None:
        self.model = load_for(config)

    def render(self, plan: SegmentPlan, keyframes: Sequence[Keyframe[LtxState]],
               memory: MemoryView) -> np.ndarray:
        start = time.perf_counter()
        model = self.model
        width, height = model.size(plan.width, plan.height)
        at = [round(k.t * plan.fps) for k in keyframes]  # each keyframe's global frame index
        if not keyframes or at[0] > plan.frame_start:
            raise ValueError(f"segment {plan.index}: no keyframe at or before frame {plan.frame_start} "
                             "(the overlap reaches past the context keyframes)")
        out = np.empty((plan.num_frames, height, width, 3), np.uint8)
        latents: dict[int, torch.Tensor] = {}

        def latent(i: int) -> torch.Tensor:
            if i not in latents:
                latents[i] = _latent(keyframes[i], width, height, model)
            return latents[i]

        clips = 0
        for i in range(len(keyframes)):
            first = at[i]
            last = at[i + 1] if i + 1 < len(keyframes) else plan.frame_stop  # exclusive
            lo, hi = max(first, plan.frame_start), min(last, plan.frame_stop)
            if lo >= hi:
                continue
            length = last - first
            conditions = [Condition(latent(i), 0)]
            if i + 1 < len(keyframes):
                conditions.append(Condition(latent(i + 1), length))
                prompt = plan.cue_at(keyframes[i + 1].t).prompt
            else:  # the video's last frames, after its last keyframe
                prompt = plan.cue_at(keyframes[i].t).prompt
            frames = clip_frames(model, length + 1)
            clip = model.decode(model.sample(model.text(prompt), width, height, frames, plan.fps,
                                             conditions, generator(plan.seed, STAGE2, first)),
                                generator(plan.seed, DECODE, first))
            out[lo - plan.frame_start:hi - plan.frame_start] = clip[lo - first:hi - first]
            clips += 1
        log.info("ltx-video segment %d: %d clips, %d frames of %dx%d in %.1f s; %s", plan.index,
                 clips, plan.num_frames, plan.width, plan.height, time.perf_counter() - start,
                 model.memory())
        return _crop(out, plan.width, plan.height)
