"""Seam metrics shared by tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute change between consecutive frames, [T-1]."""
    return np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))


def seam_ratio(frames: np.ndarray, boundaries: Sequence[int], overlap: int, fps: int) -> float:
    """Largest frame difference in any blended window over the median difference of the
    second of frames on either side of it (the local motion inside the segments)."""
    diffs = frame_differences(frames)
    return float(max(seam_ratio_at(diffs, b, overlap, fps) for b in boundaries))


def seam_ratio_at(diffs: np.ndarray, boundary: int, overlap: int, fps: int,
                  floor: float = 0.0) -> float:
    """One boundary's seam ratio; diffs[j] is the change from frame j to frame j + 1 and
    `boundary` the index of the first frame after the boundary. `floor` (levels) is added to
    both sides, so a still picture reads 1.0 rather than a ratio of invisible changes."""
    lo, hi = max(boundary - overlap // 2 - 1, 1), boundary + overlap // 2 + 1
    inside = np.median(np.concatenate([diffs[max(lo - fps, 0):lo], diffs[hi:hi + fps]]))
    return float((diffs[lo:hi].max() + floor) / max(inside + floor, 1e-6))


def edge_energy(frame: np.ndarray) -> float:
    """Mean squared Sobel gradient of a frame's luma: how much sharp detail it shows."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    return float(np.mean(gx * gx + gy * gy))


def sharpness_kept(frames: np.ndarray, boundaries: Sequence[int], overlap: int, fps: int) -> float:
    """Least edge energy in any blended window over the median of the second on either side.

    The seam ratio sees only change between frames; a cross-fade of two pictures that disagree
    by a few pixels changes little per frame but shows a double image, which this sees as lost
    detail (1.0: the blend is as sharp as the segments around it).
    """
    energy = np.array([edge_energy(f) for f in frames])
    kept = []
    for b in boundaries:
        lo, hi = max(b - overlap // 2, 0), b + overlap // 2
        around = np.median(np.concatenate([energy[max(lo - fps, 0):lo], energy[hi:hi + fps]]))
        kept.append(energy[lo:hi].min() / max(around, 1e-6))
    return float(min(kept))


# --- Temporal stability: does the picture jump at IDR frames or at model keyframes? ---
#
# A step is the mean absolute change onto a frame from the one before (0-255 levels, over all
# pixels and channels): step p = frame_differences(frames)[p - 1]; frame 0 has none. A pulse
# once a GOP or once a keyframe shows as a larger mean step at those positions than elsewhere.

# Below this many levels a step is invisible: 8-bit rounding of a slow change alone moves
# pixels by more. Added to both sides of a step ratio, it keeps a still clip at 1.0 instead
# of 0/0, and keeps a near-still one from turning invisible noise into a large ratio.
STEP_FLOOR = 0.02
_CHUNK = 64  # frames per frame_differences call: bounded float32 memory on long or big clips


def frame_steps(frames: np.ndarray) -> np.ndarray:
    """frame_differences in chunks of frames (same result, bounded memory), [T-1]."""
    parts = [frame_differences(frames[i:i + _CHUNK + 1])
             for i in range(0, max(len(frames) - 1, 0), _CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def every(period: int, count: int) -> list[int]:
    """Positions period, 2 * period, ... below `count`: IDR frames of a fixed GOP of `period`
    frames, or model keyframes at one per second with period = fps."""
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    return list(range(period, count, period))


def step_means(steps: np.ndarray, positions: Sequence[int],
               exclude: Sequence[int] = ()) -> tuple[float, float]:
    """(mean step onto the frames at `positions`, mean step onto every other frame that is not
    in `exclude`), from steps = frame_steps(frames). Positions outside 1..T-1 are ignored.

    Means, not medians: in calm footage most steps are exactly 0 at 8 bits (a slow change
    crosses a level only every few frames; the resting procedural clip has 2 of 3 steps at 0),
    so a median says 0 or nothing. The mean is the clip's rate of change; an encoder that only
    postpones change to its IDR frames keeps the total and moves it into the numerator.
    """
    n = len(steps) + 1
    at = np.zeros(len(steps), bool)
    valid = [p for p in positions if 1 <= p < n]
    at[np.asarray(valid, int) - 1] = True
    other = ~at
    skip = [p for p in exclude if 1 <= p < n]
    other[np.asarray(skip, int) - 1] = False
    if not at.any() or not other.any():
        raise ValueError(f"need steps both at and away from the positions ({n} frames)")
    return float(steps[at].mean()), float(steps[other].mean())


def step_ratio(frames: np.ndarray, positions: Sequence[int], exclude: Sequence[int] = (),
               floor: float = STEP_FLOOR) -> float:
    """Mean step onto the frames at `positions` over the mean step elsewhere (steps onto
    `exclude` count for neither), each plus `floor`. 1.0: those frames are invisible; a
    clip that jumps there and is still elsewhere scores (jump + floor) / floor."""
    at, elsewhere = step_means(frame_steps(frames), positions, exclude)
    return (at + floor) / (elsewhere + floor)


def static_mask(frames: np.ndarray, tolerance: int = 12) -> np.ndarray:
    """[H, W] bool: pixels whose every channel stays within `tolerance` levels over the
    frames (the background a subject never crosses). Compute it on the source frames and pass
    it on to judge encoded copies of them on the same pixels."""
    low, high = frames[0].copy(), frames[0].copy()
    for i in range(0, len(frames), _CHUNK):
        chunk = frames[i:i + _CHUNK]
        np.minimum(low, chunk.min(axis=0), out=low)
        np.maximum(high, chunk.max(axis=0), out=high)
    return ((high - low) <= tolerance).all(axis=-1)


def background_flicker(frames: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute change between consecutive frames on the static background (levels);
    mask: [H, W] bool, static_mask(frames) if None. 0.0 when the background is still."""
    mask = static_mask(frames) if mask is None else mask
    if not mask.any():
        raise ValueError("the mask holds no pixel")
    background = np.asarray(frames)[:, mask][:, :, None, :]  # [T, N, 1, 3]
    return float(frame_steps(background).mean()) if len(background) > 1 else 0.0


def flicker_score(frames: np.ndarray, mask: np.ndarray | None = None) -> float:
    """VBench's temporal flickering score, (255 - mean absolute frame difference) / 255, on
    the static background only (VBench scores whole frames of static-camera clips; our calm
    prompts move a subject over a backdrop, whose flicker is what encoders and models add).
    1.0: no flicker."""
    return (255.0 - background_flicker(frames, mask)) / 255.0
