"""The procedural world: a deterministic scene simulator and renderer.

A scene (color, shape, motion, background) plus the video time, the job seed and the
audio's beat envelope fully determine every frame. The world is the training data of
the bundled model and the `procedural` backend: a ground-truth oracle for tests and
benchmarks. Positions are fractions of the frame, so any resolution renders the same
story.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from engine.prompt import Scene

BASE_RADIUS = 0.12  # subject radius as a fraction of the frame's shorter side
_SUBPIXEL_BITS = 4  # cv2 drawing precision: 1/16 pixel, so slow motion stays smooth


@dataclass(frozen=True)
class SubjectState:
    """Where the subject is at one instant."""

    x: float  # center, fraction of width
    y: float  # center, fraction of height
    scale: float  # multiplies BASE_RADIUS
    angle: float  # radians, counter-clockwise


@dataclass(frozen=True)
class BeatSample:
    """The audio's drive at one instant: envelope value and its running integral."""

    energy: float = 0.0  # onset envelope in [0, 1]
    phase: float = 0.0  # sum of the envelope up to now, in envelope-seconds


@lru_cache(maxsize=4096)
def _seed_phases(seed: int) -> tuple[float, ...]:
    """Per-job random phases so two seeds give different but equally valid videos."""
    return tuple(np.random.default_rng([seed, 0x5EED]).uniform(0.0, 1.0, size=4).tolist())


def subject_state(scene: Scene, t: float, seed: int, beat: BeatSample = BeatSample()) -> SubjectState:
    p = _seed_phases(seed)
    tau = 2.0 * math.pi
    motion = scene.motion
    if motion == "bouncing":
        period = 1.2
        u = ((t / period) + p[0]) % 1.0
        height = 4.0 * u * (1.0 - u)  # free fall under gravity: a parabola per bounce
        ground, top = 0.74, 0.30
        return SubjectState(0.5 + 0.25 * math.sin(tau * t / 13.0 + tau * p[1]),
                            ground - (ground - top) * height, 1.0, 0.0)
    if motion in ("drifting_left", "drifting_right"):
        direction = -1.0 if motion == "drifting_left" else 1.0
        margin = 2.0 * BASE_RADIUS
        span = 1.0 + 2.0 * margin
        x = (p[0] * span + direction * 0.07 * t) % span - margin
        return SubjectState(x, 0.5 + 0.05 * math.sin(tau * t / 4.0 + tau * p[1]), 1.0, 0.0)
    if motion == "orbiting":
        a = tau * t / 6.0 + tau * p[0]
        return SubjectState(0.5 + 0.27 * math.cos(a), 0.5 + 0.27 * math.sin(a), 1.0, -a)
    if motion == "spinning":
        return SubjectState(0.5 + 0.1 * (p[0] - 0.5), 0.5 + 0.1 * (p[1] - 0.5), 1.0,
                            tau * (t / 3.0 + p[2]))
    if motion == "pulsing":
        return SubjectState(0.5 + 0.1 * (p[0] - 0.5), 0.5 + 0.1 * (p[1] - 0.5),
                            1.0 + 0.35 * math.sin(tau * t / 1.6 + tau * p[2]), 0.0)
    if motion == "dancing":
        # Speed follows the beat (position moves along a Lissajous path by the envelope's
        # integral) and each onset makes the subject hop and swell.
        phi = beat.phase * 1.6 + tau * p[0]
        return SubjectState(0.5 + 0.24 * math.sin(phi),
                            0.55 + 0.08 * math.sin(2.0 * phi) - 0.14 * beat.energy,
                            1.0 + 0.25 * beat.energy, 0.4 * math.sin(1.5 * phi))
    # resting
    return SubjectState(0.5 + 0.2 * (p[0] - 0.5), 0.68,
                        1.0 + 0.015 * math.sin(tau * t / 3.0), 0.0)


def _vertical_gradient(h: int, w: int, stops: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    ys = np.linspace(0.0, 1.0, h)
    positions = [s for s, _ in stops]
    channels = [np.interp(ys, positions, [c[i] for _, c in stops]) for i in range(3)]
    column = np.stack(channels, axis=-1)  # [h, 3]
    return np.repeat(column[:, None, :], w, axis=1)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    coarse = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _disc(img: np.ndarray, cx: float, cy: float, r: float, color: tuple[int, int, int]) -> None:
    s = 1 << _SUBPIXEL_BITS
    cv2.circle(img, (round(cx * s), round(cy * s)), round(r * s), color, -1, cv2.LINE_AA,
               _SUBPIXEL_BITS)


def scene_light(seed: int) -> tuple[float, np.ndarray, float]:
    """Per-job look of the backdrop: brightness gain, color cast (RGB offsets) and horizon
    shift. Large enough to see at keyframe size, so a seed's scene is an identity a model
    must draw once and then keep (the replay memory's job), not only a texture detail."""
    rng = np.random.default_rng([seed, 0x11647])
    gain = float(rng.uniform(0.82, 1.12))
    warmth, green = rng.uniform(-1.0, 1.0, 2)
    cast = np.array([20.0 * warmth, 10.0 * green, -20.0 * warmth], np.float32)
    return gain, cast, float(rng.uniform(-0.07, 0.07))


@lru_cache(maxsize=16)
def background(name: str, width: int, height: int, seed: int) -> np.ndarray:
    """Static backdrop [H, W, 3] uint8; cached because every frame starts from it."""
    gain, cast, shift = scene_light(seed)
    img = _backdrop(name, width, height, seed, shift).astype(np.float32)
    img = np.clip(img * gain + cast, 0, 255)
    return np.ascontiguousarray((img + 0.5).astype(np.uint8))


def _backdrop(name: str, width: int, height: int, seed: int, shift: float) -> np.ndarray:
    """The backdrop before the job's light; `shift` moves the horizon (fraction of height)."""
    h, w = height, width
    rng = np.random.default_rng([seed, 0xB6])
    m = min(w, h)
    if name == "night":
        img = _vertical_gradient(h, w, [(0.0, (8, 10, 35)), (1.0, (28, 34, 75))])
        img = np.ascontiguousarray(img.astype(np.uint8))
        n = max(8, w * h // 700)
        xs, ys = rng.integers(0, w, n), rng.integers(0, int(h * 0.8), n)
        img[ys, xs] = rng.integers(150, 256, (n, 1)).astype(np.uint8)
        _disc(img, 0.18 * w, 0.16 * h, 0.05 * m, (225, 225, 205))
        return img
    if name == "sunset":
        horizon = 0.7 + shift
        img = _vertical_gradient(h, w, [(0.0, (70, 40, 110)), (horizon - 0.25, (210, 90, 90)),
                                        (horizon, (250, 160, 70)), (horizon + 1e-4, (70, 35, 55)),
                                        (1.0, (40, 20, 40))])
        img = np.ascontiguousarray(img.astype(np.uint8))
        _disc(img, 0.5 * w, horizon * h, 0.1 * m, (255, 200, 90))
        img[int(horizon * h):] = _vertical_gradient(h - int(horizon * h), w,
                                                    [(0.0, (70, 35, 55)), (1.0, (40, 20, 40))])
        return img
    if name == "meadow":
        horizon = 0.55 + shift
        img = _vertical_gradient(h, w, [(0.0, (110, 170, 235)), (horizon, (200, 230, 250)),
                                        (horizon + 1e-4, (70, 160, 60)), (1.0, (35, 110, 30))])
        noise = _smooth_noise(rng, h, w, 12)[..., None] * np.array([10.0, 18.0, 8.0])
        ground = np.arange(h)[:, None, None] >= horizon * h
        return np.clip(img + noise * ground, 0, 255)
    if name == "ocean":
        horizon = 0.45 + shift
        img = _vertical_gradient(h, w, [(0.0, (120, 180, 240)), (horizon, (210, 235, 250)),
                                        (horizon + 1e-4, (25, 100, 175)), (1.0, (10, 45, 105))])
        ys = np.arange(h)[:, None, None] / h
        waves = 12.0 * np.sin(ys * 90.0 + _smooth_noise(rng, h, w, 6)[..., None] * 2.0)
        return np.clip(img + waves * (ys > horizon), 0, 255)
    # day
    img = _vertical_gradient(h, w, [(0.0, (80, 150, 230)), (1.0, (185, 220, 250))])
    img = np.ascontiguousarray(img.astype(np.uint8))
    _disc(img, 0.84 * w, 0.14 * h, 0.07 * m, (255, 235, 120))
    return img


def _polygon(shape: str, r: float, angle: float) -> np.ndarray:
    if shape == "square":
        radii, count, offset = [r * 0.95], 4, math.pi / 4
    elif shape == "triangle":
        radii, count, offset = [r * 1.1], 3, -math.pi / 2
    else:  # star: alternate outer and inner points
        radii, count, offset = [r * 1.15, r * 0.5], 10, -math.pi / 2
    k = np.arange(count)
    a = offset - angle + 2.0 * math.pi * k / count
    rr = np.array([radii[i % len(radii)] for i in range(count)])
    return np.stack([rr * np.cos(a), rr * np.sin(a)], axis=-1)


def draw_subject(img: np.ndarray, scene: Scene, state: SubjectState) -> None:
    """Draw the subject in place, anti-aliased at sub-pixel precision."""
    h, w = img.shape[:2]
    r = BASE_RADIUS * state.scale * min(w, h)
    cx, cy = state.x * w, state.y * h
    color = scene.rgb
    edge = tuple(int(c * 0.55) for c in color)
    s = 1 << _SUBPIXEL_BITS
    thickness = max(1, round(r / 10))
    if scene.shape == "circle":
        _disc(img, cx, cy, r, edge)
        _disc(img, cx, cy, max(r - thickness, 1.0), color)
        return
    pts = _polygon(scene.shape, r, state.angle) + np.array([cx, cy])
    pts = np.round(pts * s).astype(np.int32)[None]
    cv2.fillPoly(img, pts, color, cv2.LINE_AA, _SUBPIXEL_BITS)
    cv2.polylines(img, pts, True, edge, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)


def render_frame(scene: Scene, state: SubjectState, width: int, height: int, seed: int) -> np.ndarray:
    img = background(scene.background, width, height, seed).copy()
    draw_subject(img, scene, state)
    return img
