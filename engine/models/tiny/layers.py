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
from engine.sprites import draw_sprite, paste, sprite_to_frame

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
    """The subject drawn upright-relative at the center: [side, side, 4] float in [0, 1]."""
    return draw_sprite(scene, angle, side, SPRITE_RADIUS * side / CANVAS)


def composite(background: np.ndarray, layer: np.ndarray, pose: Pose,
              premultiplied: bool = False) -> np.ndarray:
    """Paste an RGBA sprite layer ([s, s, 4] float 0..1, any side s) onto a uint8 background."""
    return paste(background, layer, pose, SPRITE_RADIUS * layer.shape[0] / CANVAS, premultiplied)


def crop_sprite(image: np.ndarray, pose: Pose, side: int = CANVAS) -> np.ndarray:
    """The inverse of `composite`'s warp: the sprite-sized patch of `image` around `pose`."""
    height, width = image.shape[:2]
    m = cv2.invertAffineTransform(sprite_to_frame(pose, width, height, side,
                                                  SPRITE_RADIUS * side / CANVAS))
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
