"""The tiny model's layered picture: a background layer plus one subject sprite at a pose.

Everything here is plain numpy/OpenCV geometry shared by training (to build targets from the
procedural world) and inference (to composite what the networks generate):

- a *canvas* is the model's latent picture, [CANVAS_CHANNELS, 32, 32] float in [-1, 1]: the
  background (RGB) squeezed to 32x32 and the subject sprite (RGB + alpha) drawn upright at the
  center with radius SPRITE_RADIUS;
- a *pose* is where the sprite goes: center (fractions of the frame), scale (1 = the world's
  base radius) and rotation relative to the sprite's own orientation.

Coordinates follow OpenCV: pixel i has its center at coordinate i, as in engine/world.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from engine.prompt import Scene
from engine.spec import KEYFRAME_SHORT_SIDE
from engine.world import BASE_RADIUS, SubjectState, draw_subject

CANVAS = 32  # canvas side in pixels
SPRITE_RADIUS = 10.0  # subject radius inside the 32x32 sprite at scale 1
HI = KEYFRAME_SHORT_SIDE  # side of the upsampled canvas layers: drawn 1:1 at keyframe size
CANVAS_CHANNELS = 7  # background RGB, sprite RGB, sprite alpha
POSE_DIM = 5  # x, y, scale, cos(angle), sin(angle)


@dataclass(frozen=True)
class Pose:
    x: float  # center, fraction of width
    y: float  # center, fraction of height
    scale: float  # multiplies BASE_RADIUS
    angle: float  # radians, counter-clockwise on screen, relative to the sprite

    def vector(self) -> np.ndarray:
        return np.array([self.x, self.y, self.scale, math.cos(self.angle), math.sin(self.angle)],
                        dtype=np.float32)

    @classmethod
    def from_vector(cls, v: np.ndarray) -> Pose:
        return cls(float(v[0]), float(v[1]), float(v[2]), math.atan2(float(v[4]), float(v[3])))


def sprite(scene: Scene, angle: float, side: int = CANVAS) -> np.ndarray:
    """The subject drawn upright-relative at the center: [side, side, 4] float in [0, 1].

    Drawn once on black and once on white: the difference gives the exact anti-aliased
    alpha, and the black render is the premultiplied color.
    """
    radius = SPRITE_RADIUS * side / CANVAS
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


def sprite_to_frame(pose: Pose, width: int, height: int, side: int) -> np.ndarray:
    """2x3 affine map from sprite pixels (a side x side sprite) to frame pixels."""
    radius_frame = BASE_RADIUS * pose.scale * min(width, height)
    zoom = radius_frame / (SPRITE_RADIUS * side / CANVAS)
    c, s = math.cos(pose.angle) * zoom, math.sin(pose.angle) * zoom
    center = side * 0.5
    # Counter-clockwise on screen (y down): x' = c*x + s*y, y' = -s*x + c*y.
    m = np.array([[c, s, 0.0], [-s, c, 0.0]], dtype=np.float64)
    m[:, 2] = [pose.x * width, pose.y * height] - m[:, :2] @ [center, center]
    return m


def premultiply(layer: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA -> premultiplied (colors times alpha), the form that mixes linearly."""
    return np.concatenate([layer[..., :3] * layer[..., 3:], layer[..., 3:]], axis=-1)


def composite(background: np.ndarray, layer: np.ndarray, pose: Pose,
              premultiplied: bool = False) -> np.ndarray:
    """Paste an RGBA sprite ([s, s, 4] float 0..1) onto a uint8 background at `pose`.

    Only the sprite's bounding box is warped and blended, so the cost per frame is the
    sprite's size, not the frame's.
    """
    height, width = background.shape[:2]
    side = layer.shape[0]
    m = sprite_to_frame(pose, width, height, side)
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


def crop_sprite(image: np.ndarray, pose: Pose, side: int = CANVAS) -> np.ndarray:
    """The inverse of `composite`'s warp: the sprite-sized patch of `image` around `pose`."""
    height, width = image.shape[:2]
    m = cv2.invertAffineTransform(sprite_to_frame(pose, width, height, side))
    patch = cv2.warpAffine(image.astype(np.float32) / 255.0, m, (side, side),
                           flags=cv2.INTER_AREA if side < width else cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    return patch


def squeeze_background(image: np.ndarray, side: int = CANVAS) -> np.ndarray:
    """A background picture (any size, uint8) as a side x side float 0..1 layer."""
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def to_canvas(background: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """[32,32,3] + [32,32,4] floats in 0..1 -> [7, 32, 32] in [-1, 1]."""
    return (np.concatenate([background, layer], axis=-1).transpose(2, 0, 1) * 2.0 - 1.0).astype(
        np.float32)


def from_canvas(canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[7, s, s] in [-1, 1] -> background [s, s, 3] and sprite [s, s, 4], floats in 0..1."""
    hwc = np.clip((canvas.transpose(1, 2, 0) + 1.0) * 0.5, 0.0, 1.0)
    return hwc[..., :3], hwc[..., 3:]
