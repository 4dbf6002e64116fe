"""Ordered (Bayer) dithering: the thresholds that turn float pictures into uint8 without
whole-frame jumps.

Plain rounding flips every pixel whose value crosses a level at the same instant, so a slow
change (a cross-fade, a tint spread over frames) shows as a flicker of the whole frame; with
a tiled 8x8 threshold map each frame moves only its share of the pixels. A leaf module: the
stitcher and the models use it alike.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def bayer_threshold(height: int, width: int) -> np.ndarray:
    """8x8 Bayer thresholds in [0, 1), tiled to [height, width, 1] float32 (read-only, cached):
    quantise with floor(value + threshold)."""
    m = np.array([[0]])
    for _ in range(3):
        m = np.block([[4 * m, 4 * m + 2], [4 * m + 3, 4 * m + 1]])
    tile = (m + 0.5) / m.size
    reps = (height // 8 + 1, width // 8 + 1)
    out = np.ascontiguousarray(np.tile(tile, reps)[:height, :width, None].astype(np.float32))
    out.flags.writeable = False  # shared by every caller through the cache
    return out
