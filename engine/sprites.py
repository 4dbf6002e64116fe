"""The world's subject as a sprite layer: drawn once, then warped into any frame.

Shared by the tiny model (its canvas holds a sprite layer) and the evaluation judge (which
trains on that look too). Each caller passes its own sprite geometry, so neither depends on
the other's constants.
"""

from __future__ import annotations

import math
from typing import Protocol

import cv2
import numpy as np

from engine.prompt import Scene
from engine.world import BASE_RADIUS, SubjectState, draw_subject


class Placement(Protocol):
    """Where a subject stands: center as fractions of the frame, size, angle (radians)."""

    @property
    def x(self) -> float: ...
    @property
    def y(self) -> float: ...
    @property
    def scale(self) -> float: ...  # multiplies BASE_RADIUS
    @property
    def angle(self) -> float: ...


def draw_sprite(scene: Scene, angle: float, side: int, radius: float) -> np.ndarray:
    """The subject at the center of a side x side layer, `radius` pixels at scale 1:
    [side, side, 4] straight-alpha float in [0, 1].

    Drawn once on black and once on white: the difference gives the exact anti-aliased
    alpha, and the black render is the premultiplied color.
    """
    state = SubjectState(0.5, 0.5, radius / (BASE_RADIUS * side), angle)
    on_black = np.zeros((side, side, 3), np.uint8)
    on_white = np.full((side, side, 3), 255, np.uint8)
    draw_subject(on_black, scene, state)
    draw_subject(on_white, scene, state)
    alpha = 1.0 - (on_white.astype(np.float32) - on_black.astype(np.float32)).mean(-1) / 255.0
    alpha = np.clip(alpha, 0.0, 1.0)
    color = on_black.astype(np.float32) / 255.0 / np.maximum(alpha, 1e-3)[..., None]
    color = np.where(alpha[..., None] > 1e-3, np.clip(color, 0.0, 1.0), 0.0)
    return np.concatenate([color, alpha[..., None]], axis=-1).astype(np.float32)


def sprite_to_frame(where: Placement, width: int, height: int, side: int, radius: float) -> np.ndarray:
    """2x3 affine map from the pixels of a side x side sprite (subject radius `radius` pixels)
    to frame pixels."""
    radius_frame = BASE_RADIUS * where.scale * min(width, height)
    zoom = radius_frame / radius
    c, s = math.cos(where.angle) * zoom, math.sin(where.angle) * zoom
    center = side * 0.5
    # Counter-clockwise on screen (y down): x' = c*x + s*y, y' = -s*x + c*y.
    m = np.array([[c, s, 0.0], [-s, c, 0.0]], dtype=np.float64)
    m[:, 2] = [where.x * width, where.y * height] - m[:, :2] @ [center, center]
    return m


def premultiply(layer: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA -> premultiplied (colors times alpha), the form that mixes linearly."""
    return np.concatenate([layer[..., :3] * layer[..., 3:], layer[..., 3:]], axis=-1)


def paste(background: np.ndarray, layer: np.ndarray, where: Placement, radius: float,
          premultiplied: bool = False) -> np.ndarray:
    """Paste an RGBA sprite ([s, s, 4] float 0..1, subject `radius` pixels at scale 1) onto
    a uint8 background at `where`.

    Only the sprite's bounding box is warped and blended, so the cost per frame is the
    sprite's size, not the frame's.
    """
    height, width = background.shape[:2]
    side = layer.shape[0]
    m = sprite_to_frame(where, width, height, side, radius)
    corners = m[:, :2] @ np.array([[0, side, 0, side], [0, 0, side, side]], np.float64) + m[:, 2:]
    x0, y0 = np.floor(corners.min(axis=1)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=1)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    out = background.astype(np.uint8, copy=True)
    if x1 <= x0 or y1 <= y0:
        return out  # entirely outside the frame
    rgba = layer if premultiplied else premultiply(layer)
    m[:, 2] -= (x0, y0)  # warp straight into the box
    warped = cv2.warpAffine(rgba, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    box = out[y0:y1, x0:x1].astype(np.float32)
    blended = box * (1.0 - warped[..., 3:]) + warped[..., :3] * 255.0
    out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out
