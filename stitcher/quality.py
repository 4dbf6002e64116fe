"""Seam metrics shared by tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute change between consecutive frames, [T-1]."""
    return np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))


def seam_ratio(frames: np.ndarray, boundaries: Sequence[int], overlap: int, fps: int) -> float:
    """Largest frame difference in any blended window over the median difference of the
    second of frames on either side of it (the local motion inside the segments)."""
    diffs = frame_differences(frames)
    ratios = []
    for b in boundaries:
        lo, hi = max(b - overlap // 2 - 1, 1), b + overlap // 2 + 1
        inside = np.median(np.concatenate([diffs[max(lo - fps, 0):lo], diffs[hi:hi + fps]]))
        ratios.append(diffs[lo:hi].max() / max(inside, 1e-6))
    return float(max(ratios))
