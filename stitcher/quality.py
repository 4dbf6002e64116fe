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
    ratios = []
    for b in boundaries:
        lo, hi = max(b - overlap // 2 - 1, 1), b + overlap // 2 + 1
        inside = np.median(np.concatenate([diffs[max(lo - fps, 0):lo], diffs[hi:hi + fps]]))
        ratios.append(diffs[lo:hi].max() / max(inside, 1e-6))
    return float(max(ratios))


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
