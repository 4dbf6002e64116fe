"""Blend the frames two neighbouring segments both rendered at their boundary.

The flow blend warps each side toward the other along dense optical flow (OpenCV DIS)
and cross-fades, so a small disagreement between segments turns into a gradual morph
instead of a jump or a double image. Hard cut and linear cross-fade are kept as the
baselines the seam benchmark compares against.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from engine.dither import bayer_threshold

FLOW_MAX_SIDE = 512  # flow is smooth; estimating it on a smaller copy saves most of the cost

_dis: cv2.DISOpticalFlow | None = None


def _flow_estimator() -> cv2.DISOpticalFlow:
    global _dis
    if _dis is None:
        _dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    return _dis


def _quantize(mix: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Ordered dithering (engine.dither): a small global change spread over the overlap (a tint
    of 2 levels over 12 frames) would otherwise round into whole-frame one-level jumps."""
    return np.clip(np.floor(mix + threshold), 0, 255).astype(np.uint8)


def _weights(n: int) -> np.ndarray:
    """Weight of the incoming segment for each of n overlap frames, strictly inside (0, 1)."""
    return (np.arange(n, dtype=np.float32) + 1.0) / (n + 1.0)


def dense_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flow F [H, W, 2] with a(x) ~ b(x + F(x)), for RGB uint8 frames."""
    h, w = a.shape[:2]
    scale = min(1.0, FLOW_MAX_SIDE / max(h, w))
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        ga = cv2.resize(ga, size, interpolation=cv2.INTER_AREA)
        gb = cv2.resize(gb, size, interpolation=cv2.INTER_AREA)
    flow = _flow_estimator().calc(ga, gb, None)
    if scale < 1.0:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / scale
    return flow


def flow_blend(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a, b: [N, H, W, 3] uint8 renders of the same instants; returns the blend [N, H, W, 3]."""
    _check_pair(a, b)
    n, h, w = a.shape[:3]
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32),
                                np.arange(h, dtype=np.float32)), axis=-1)
    out = np.empty_like(a)
    threshold = bayer_threshold(h, w)
    for j, wb in enumerate(_weights(n)):
        flow = dense_flow(a[j], b[j])
        # Meet in the middle: a moves a fraction wb of the way toward b, b the rest back.
        map_a = grid - wb * flow
        map_b = grid + (1.0 - wb) * flow
        warped_a = cv2.remap(a[j], map_a[..., 0], map_a[..., 1], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        warped_b = cv2.remap(b[j], map_b[..., 0], map_b[..., 1], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        mix = warped_a.astype(np.float32) * (1.0 - wb) + warped_b.astype(np.float32) * wb
        out[j] = _quantize(mix, threshold)
    return out


def crossfade(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _check_pair(a, b)
    wb = _weights(len(a))[:, None, None, None]
    mix = a.astype(np.float32) * (1.0 - wb) + b.astype(np.float32) * wb
    return _quantize(mix, bayer_threshold(*a.shape[1:3]))


def hard_cut(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Outgoing frames up to the middle of the overlap, incoming after it."""
    _check_pair(a, b)
    half = len(a) // 2
    return np.concatenate([a[:half], b[half:]])


BLENDS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "flow": flow_blend,
    "crossfade": crossfade,
    "cut": hard_cut,
}


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"overlap shapes differ or are not [N, H, W, 3]: {a.shape} vs {b.shape}")
