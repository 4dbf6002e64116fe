"""The motion judge: where a clip's subject is in every frame, and whether it moves the way
its prompt's motion moves in the world.

Frames in, numbers out. Like the color/shape judge (evaluation/judge.py) it reads decoded
pixels only, never a model's internal poses, and it is checked on the procedural oracle
first: a measure the world itself fails is a broken measure (`python -m
bench.motion_judge_accuracy`, tests/test_motion_judge.py).

**Tracker** (`track`): classical computer vision, numpy and OpenCV only (no torch, no
weights to train). The world's subject is one flat-colored shape with a darker outline over a
backdrop that does not move, so:

1. Background. The clip's per-pixel temporal median is the backdrop wherever the subject
   moves on; where it stays (resting, spinning, pulsing, lingering), the median shows the
   subject, so that blob (a region of the median close to the subject's color that stands
   out of its row) is painted over with its rows' median (right for the world's backdrops:
   vertical gradients with little texture). Then each pixel the subject covers only part of
   the time gets its median over the frames where it does not.
2. Subject color. The prompt says which color to look for (a cue, as the judge's classes
   are); the color actually drawn is re-estimated from the clip (the median of the pixels
   near that color that differ from the backdrop), so a model whose red is a little off is
   still tracked.
3. Per frame, each pixel's alpha on the line from the backdrop's color to the subject's (its
   coverage); pixels over one half that lie near that line form blobs, and the blob with the
   most pixels close to the subject's color is the subject. A backdrop feature of a similar
   color (the sun, the moon, grass) is part of the background, and scores low on color.
4. Pose: position = the centroid of the blob and its anti-aliased edge, each pixel weighted
   by how much of it is subject (the outline counted half, so the boundary is the shape's
   own edge at any outline thickness); size = the square root of that area, relative to the
   clip's median (only changes of size matter); angle = the phase of the strongest 3-, 4- or
   5-fold angular moment (triangle, square, star; a circle's rotation cannot be seen and is
   not measured), unwrapped over the clip. A blob cut by the frame's edge takes its centre
   from the edge still in view (at the distance that edge keeps when the subject is whole);
   a frame showing less than a fifth of the subject's usual area has no subject in view.

On world clips the centroid is within about 0.1 px of the world's position (0.3 px at worst
at 128x128, `python -m bench.motion_judge_accuracy`).

**Measures** (`measure` -> `MotionMeasures`): the same function reads the tracker's track and
the world's own track (`world_track`: engine/world.py `subject_state` at the clip's frame
times, seed and beat), so every measure has its reference from the world for the very same
clip (`reference`). What defines each motion:

- bouncing: vertical oscillation (dominant period of the height, 0.3-5 s; amplitude = the
  median over whole periods of the height's range; floor contact = the share of periods
  whose lowest point reaches the clip's floor);
- drifting: horizontal speed (signed, frame widths per second, fitted over the stretches
  where the subject is in view; a jump ends a stretch), wrap-arounds (leaving one side and
  coming back from the other, in the drift's direction) and jumps back (a jump of more than
  a tenth of the frame against the drift, in view);
- orbiting: a circle fitted to the positions (radius, and how well it fits), angular speed
  around its centre (signed; y points down) and the radius' growth over the clip;
- spinning: rotation rate (rad/s, counter-clockwise on screen positive, as the world's angle);
- pulsing: size oscillation (relative amplitude of a sinusoid fitted at the dominant period,
  and the period);
- dancing: correlation of the subject's speed with the beat envelope (0 without a beat);
- resting: stillness (median speed) and height.

**Classifier** (`classify`): rules on the measures, each at about half of the world's value
(the world's numbers are in `engine/world.py`), checked in this order: dancing (speed follows
the beat), orbiting (a circle fits and is swept), bouncing (a fast vertical oscillation),
drifting (steady horizontal motion or a wrap-around; the sign gives left or right), pulsing
(size oscillates), spinning (rotates in place), resting. A subject that keeps still is
resting when it sits low and spinning when it sits in the middle with a rotation that
cannot be seen (a circle: the world's spinning circle is a still circle in the middle).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from engine.prompt import COLORS, MOTIONS, Scene
from engine.world import BASE_RADIUS, BeatSample, SubjectState, draw_subject, subject_state

# Working resolution of the tracker: frames larger than this on the short side are shrunk.
_WORK_SIDE = 128
# Angular symmetries tried for the rotation: triangle, square, star (a circle has none).
_SYMMETRIES = (3, 4, 5)
# Below this normalised n-fold moment the shape has no visible orientation (a circle).
_MIN_SYMMETRY = 0.06
# How far out each shape reaches, in subject radii (engine/world.py `_polygon`).
_EXTENT = {"circle": 1.0, "square": 0.95, "triangle": 1.1, "star": 1.15}
# A subject is in view when at least this share of its area is (tracker and world alike).
_MIN_SHARE = 0.2
# Periods searched for oscillations (bounce, pulse), seconds.
_PERIODS = (0.3, 5.0)


@dataclass(frozen=True)
class Track:
    """The subject's pose at each frame. Positions are fractions of the frame (y down)."""

    t: np.ndarray  # [T] seconds
    x: np.ndarray  # [T] NaN where not visible
    y: np.ndarray
    size: np.ndarray  # [T] linear size relative to the clip's median, NaN where not visible
    angle: np.ndarray  # [T] radians, unwrapped, counter-clockwise; NaN where not measurable
    visible: np.ndarray  # [T] bool
    clipped: np.ndarray  # [T] bool: cut by the frame's edge (centre from the edge in view)


@dataclass(frozen=True)
class MotionMeasures:
    """What a clip's subject does, from its track. NaN: cannot be measured on this clip."""

    visible: float  # share of frames with the subject in view
    height: float  # median y (0 top, 1 bottom)
    speed: float  # median speed, frame fractions per second (stillness)
    bounce_amplitude: float  # height range per period, fraction of the frame
    bounce_period: float  # seconds, dominant period of the height
    bounce_fit: float  # share of the height's variance the dominant period explains
    bounce_floor_contact: float  # share of periods whose lowest point reaches the floor
    drift_speed: float  # signed horizontal speed, frame widths per second (+ right)
    drift_wraps: int  # exits on one side and re-entries on the other, in the drift's direction
    drift_jumps_back: int  # jumps against the drift of more than a tenth of the frame, in view
    orbit_radius: float  # fitted circle, fraction of the frame
    orbit_residual: float  # RMS distance from the fitted circle over its radius
    orbit_speed: float  # rad/s around the fitted centre (+ clockwise on screen: y points down)
    orbit_turn: float  # radians swept around the centre over the clip
    orbit_growth: float  # radius change per minute, relative to the radius
    spin_rate: float  # rad/s, counter-clockwise positive; NaN when rotation is not visible
    pulse_amplitude: float  # size oscillation over the median size (0.35: +-35%)
    pulse_period: float  # seconds
    beat_sync: float  # correlation of speed with the beat envelope; 0 without a beat

    def as_dict(self) -> dict:
        return asdict(self)


# Each motion's defining measures: those compared with the world's (relative error).
DEFINING: dict[str, tuple[str, ...]] = {
    "bouncing": ("bounce_amplitude", "bounce_period"),
    "drifting_left": ("drift_speed", "drift_wraps"),
    "drifting_right": ("drift_speed", "drift_wraps"),
    "orbiting": ("orbit_radius", "orbit_speed"),
    "spinning": ("spin_rate",),
    "pulsing": ("pulse_amplitude", "pulse_period"),
    "dancing": ("beat_sync",),
    "resting": ("speed",),
}


# ----------------------------------------------------------------------------- tracking


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...c,...c->...", a, b)


def _norm(a: np.ndarray) -> np.ndarray:
    return np.sqrt(_dot(a, a))


def _row_median(img: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """[H, W, 3] -> the median of each row over its columns (ignoring `exclude`), broadcast."""
    h, w = img.shape[:2]
    if exclude is None or not exclude.any():
        rows = np.median(img, axis=1)
    else:
        masked = np.where(exclude[..., None], np.nan, img)
        full = exclude.all(axis=1)
        rows = np.zeros((h, 3), np.float32)
        if (~full).any():
            rows[~full] = np.nanmedian(masked[~full], axis=1)
            have = np.flatnonzero(~full)
            for c in range(3):  # a row entirely excluded: from its neighbours
                rows[full, c] = np.interp(np.flatnonzero(full), have, rows[have, c])
    return np.repeat(rows[:, None, :], w, axis=1).astype(np.float32)


def _coverage(pix: np.ndarray, bg: np.ndarray, color: np.ndarray) -> np.ndarray:
    """How much of each pixel the subject's fill covers: alpha on the line from the
    background's color to the fill's, 0 off that line (the outline, texture, other things)."""
    d = pix - bg
    cb = color - bg
    cb2 = _dot(cb, cb)
    norm2 = np.maximum(cb2, 100.0)
    dd, dcb = _dot(d, d), _dot(d, cb)
    alpha = dcb / norm2
    resid2 = np.maximum(dd - 2.0 * alpha * dcb + alpha * alpha * cb2, 0.0)  # |d - alpha cb|^2
    on_line = (resid2 < (0.4 * np.sqrt(norm2) + 12.0) ** 2) & (dd > 16.0**2)
    return np.where(on_line, alpha, 0.0).astype(np.float32)


def _clean_background(median: np.ndarray, color: np.ndarray) -> np.ndarray:
    """The median frame with a subject that stayed in place painted over by its rows."""
    rows = _row_median(median)
    blob = (_coverage(median, rows, color) > 0.5) & (_norm(median - color) < 40.0)
    if blob.sum() < 4:
        return median
    # Grow over the subject's edge, outline and anti-aliasing.
    region = cv2.dilate(blob.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=3).astype(bool)
    clean = median.copy()
    clean[region] = _row_median(median, region)[region]
    return clean


def _subject_color(pix: np.ndarray, bg: np.ndarray, color: np.ndarray) -> np.ndarray:
    """The subject's fill as drawn: the median of the pixels near the prompt's color that
    stand out of the background."""
    diff = _norm(pix - bg)
    near = _norm(pix - color)
    for radius in (45.0, 70.0):
        sel = (diff > 30.0) & (near < radius)
        if sel.sum() >= 50:
            return np.median(pix[sel], axis=0).astype(np.float32)
    return color


@dataclass
class _Blob:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of the blob
    mask: np.ndarray  # bool, the blob inside box


def _find(pix: np.ndarray, cover: np.ndarray, color: np.ndarray) -> _Blob | None:
    """The blob of fill-covered pixels with the most subject-colored pixels in one frame."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((cover > 0.5).astype(np.uint8), connectivity=8)
    if n < 2:
        return None
    where = labels > 0
    closeness = np.exp(-(_dot(pix[where] - color, pix[where] - color) / 25.0**2))
    score = np.bincount(labels[where], weights=closeness, minlength=n)
    best = int(np.argmax(score[1:])) + 1
    if score[best] < 3.0:
        return None
    x0, y0, bw, bh = (int(v) for v in stats[best, :4])
    return _Blob((x0, y0, x0 + bw, y0 + bh), labels[y0:y0 + bh, x0:x0 + bw] == best)


def _refine_background(pix: np.ndarray, bg: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Each pixel's median over the frames where the subject does not cover it (where it
    nearly always does, the painted-over median stays)."""
    cover = _coverage(pix, bg, color)
    covered = np.zeros(pix.shape[:3], bool)
    kernel = np.ones((3, 3), np.uint8)
    for i in range(len(pix)):
        blob = _find(pix[i], cover[i], color)
        if blob is not None:
            x0, y0, x1, y1 = blob.box
            covered[i, y0:y1, x0:x1] = blob.mask
            covered[i] = cv2.dilate(covered[i].astype(np.uint8), kernel, iterations=4).astype(bool)
    ever = covered.any(axis=0)
    if not ever.any():
        return bg
    values = np.where(covered[:, ever, None], np.nan, pix[:, ever])  # [T, K, 3]
    free = (~covered[:, ever]).sum(axis=0)
    refined = bg.copy()
    usable = free >= max(3, 0.15 * len(pix))
    with np.errstate(all="ignore"):
        med = np.nanmedian(values[:, usable], axis=0) if usable.any() else None
    if med is not None:
        where = np.flatnonzero(ever)[usable]
        refined.reshape(-1, 3)[where] = med
    return refined


def track(frames: np.ndarray, color: tuple[int, int, int] | str, fps: float) -> Track:
    """Find the subject of `color` (RGB, or a color name of the world) in every frame.

    `frames`: [T, H, W, 3] uint8 RGB, a clip at `fps` frames per second.
    """
    rgb = np.array(COLORS[color] if isinstance(color, str) else color, np.float32)
    count, height, width = frames.shape[:3]
    if min(height, width) > _WORK_SIDE:
        k = _WORK_SIDE / min(height, width)
        size = (round(width * k), round(height * k))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        height, width = frames.shape[1:3]
    pix = frames.astype(np.float32)
    sample = pix[:: max(1, count // 60)]
    median = np.median(sample, axis=0)
    bg = _clean_background(median, rgb)
    drawn = _subject_color(sample, bg, rgb)
    if np.linalg.norm(drawn - rgb) > 1.0:
        bg = _clean_background(median, drawn)
    bg = _refine_background(sample, bg, drawn)

    cover = _coverage(pix, bg, drawn)
    kernel = np.ones((3, 3), np.uint8)
    pose = np.full((count, 3), np.nan)  # x, y (pixels), linear size
    edges = np.full((count, 4), np.nan)  # left, top, right, bottom (pixels)
    touch = np.zeros((count, 4), bool)
    harmonics = np.full((count, len(_SYMMETRIES)), np.nan + 0j)
    for i in range(count):
        blob = _find(pix[i], cover[i], drawn)
        if blob is None:
            continue
        x0, y0, x1, y1 = blob.box
        # The blob and its anti-aliased edge, weighted by how much the fill covers.
        bx0, by0, bx1, by1 = max(x0 - 3, 0), max(y0 - 3, 0), min(x1 + 3, width), min(y1 + 3, height)
        region = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
        region[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0] = blob.mask
        region = cv2.dilate(region, kernel, iterations=3)
        weights = region * _subject_share(pix[i, by0:by1, bx0:bx1], bg[by0:by1, bx0:bx1], drawn)
        ys, xs = np.mgrid[by0:by1, bx0:bx1].astype(np.float32)  # pixel centres at integers, as cv2 draws
        mass, cx, cy, harmonics[i] = _moments(weights, xs, ys)
        pose[i] = cx, cy, math.sqrt(mass)
        edges[i] = x0, y0, x1, y1
        touch[i] = x0 <= 0, y0 <= 0, x1 >= width, y1 >= height
    clipped = touch.any(axis=1)
    found = np.isfinite(pose[:, 0])
    whole = pose[found & ~clipped, 2] ** 2
    full = float(np.percentile(whole, 90)) if len(whole) else float(np.nanmax(pose[:, 2], initial=1.0) ** 2)
    visible = found & (pose[:, 2] ** 2 >= _MIN_SHARE * full)
    steady = visible & ~clipped
    pose[~visible] = np.nan
    _unclip(pose, edges, touch, visible, steady)
    size = pose[:, 2] / np.nanmedian(pose[steady, 2] if steady.any() else pose[:, 2])
    size[~steady] = np.nan
    return Track(np.arange(count) / fps, pose[:, 0] / width, pose[:, 1] / height, size,
                 _rotation(harmonics, steady), visible, clipped & visible)


def _subject_share(pix: np.ndarray, bg: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """How much of each pixel is subject, with the outline counted half (so the measured
    boundary is the shape's own edge, in the middle of its outline, at any outline
    thickness): each pixel is placed on the nearest of the segments backdrop-fill,
    backdrop-outline and outline-fill (the world's outline is the fill at 55%)."""
    edge = 0.55 * fill
    best = np.full(pix.shape[:2], np.inf, np.float32)
    share = np.zeros(pix.shape[:2], np.float32)
    for a, b, w0, w1 in ((bg, fill, 0.0, 1.0), (bg, edge, 0.0, 0.5), (edge, fill, 0.5, 1.0)):
        ab = b - a
        u = np.clip(_dot(pix - a, ab) / np.maximum(_dot(ab, ab), 1e-3), 0.0, 1.0)
        dist = _norm(pix - a - u[..., None] * ab)
        closer = dist < best
        best = np.where(closer, dist, best)
        share = np.where(closer, w0 + (w1 - w0) * u, share)
    return np.where(best < 25.0, share, 0.0)


def _unclip(pose: np.ndarray, edges: np.ndarray, touch: np.ndarray, visible: np.ndarray,
            steady: np.ndarray) -> None:
    """A subject cut by the frame's edge: its centre from the edge still in view, at the
    distance that edge keeps from the centre when the subject is whole."""
    if not steady.any():
        return
    offset = np.nanmedian(np.abs(edges[steady] - pose[steady][:, [0, 1, 0, 1]]), axis=0)
    for i in np.flatnonzero(visible & touch.any(axis=1)):
        left, top, right, bottom = touch[i]
        if left != right:
            pose[i, 0] = edges[i, 2] - offset[2] if left else edges[i, 0] + offset[0]
        if top != bottom:
            pose[i, 1] = edges[i, 3] - offset[3] if top else edges[i, 1] + offset[1]


def _moments(weights: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """Mass, centroid and the normalised n-fold angular moments of a weight map."""
    mass = max(float(weights.sum()), 1e-9)
    cx, cy = float((weights * xs).sum() / mass), float((weights * ys).sum() / mass)
    z = (xs - cx) + 1j * (ys - cy)
    r2 = np.abs(z) ** 2
    unit = z / np.sqrt(np.maximum(r2, 1e-9))
    wr = weights * r2
    total = max(float(wr.sum()), 1e-9)
    return mass, cx, cy, np.array([(wr * unit**n).sum() / total for n in _SYMMETRIES])


def _rotation(harmonics: np.ndarray, steady: np.ndarray) -> np.ndarray:
    """The unwrapped angle from the strongest n-fold moment (NaN when the shape shows none)."""
    angle = np.full(len(harmonics), np.nan)
    if steady.sum() < 3:
        return angle
    strength = np.median(np.abs(harmonics[steady]), axis=0)
    k = int(np.argmax(strength))
    if strength[k] < _MIN_SYMMETRY:
        return angle
    n = _SYMMETRIES[k]
    ok = steady & (np.abs(harmonics[:, k]) > 0.3 * strength[k])
    # The world's polygons turn clockwise in image angle as their angle grows (y is down).
    angle[ok] = -np.unwrap(np.angle(harmonics[ok, k])) / n
    return angle


# ----------------------------------------------------------------------------- the world's track


def _share_inside(scene: Scene, x: float, y: float, scale: float, angle: float, width: int,
                  height: int) -> float:
    """Which share of the subject's area the frame shows (drawn on a canvas with a margin)."""
    pad = int(math.ceil(2 * BASE_RADIUS * max(scale, 0.1) * min(width, height))) + 2
    canvas = np.zeros((height + 2 * pad, width + 2 * pad, 3), np.uint8)
    zoom = min(width, height) / min(width + 2 * pad, height + 2 * pad)
    where = SubjectState((x * width + pad) / (width + 2 * pad), (y * height + pad) / (height + 2 * pad),
                         scale * zoom, angle)
    draw_subject(canvas, Scene("white", scene.shape, scene.motion, scene.background), where)
    area = canvas[..., 0].astype(np.float64)
    total = area.sum()
    return float(area[pad:pad + height, pad:pad + width].sum() / total) if total > 0 else 0.0


def world_track(scene: Scene, seed: int, fps: float, count: int, width: int = 128, height: int = 128,
                energy: np.ndarray | None = None, phase: np.ndarray | None = None) -> Track:
    """The world's own track of the clip: `subject_state` at each frame time, with the
    visibility and clipping the frame gives it, in the tracker's units."""
    t = np.arange(count) / fps
    energy = np.zeros(count) if energy is None else energy
    phase = np.zeros(count) if phase is None else phase
    states = [subject_state(scene, float(t[i]), seed, BeatSample(float(energy[i]), float(phase[i])))
              for i in range(count)]
    x, y, scale, angle = (np.array([getattr(s, f) for s in states]) for f in ("x", "y", "scale", "angle"))
    reach = BASE_RADIUS * scale * _EXTENT[scene.shape] * min(width, height)
    rx, ry = reach / width, reach / height
    near_edge = (x - rx < 0.01) | (x + rx > 0.99) | (y - ry < 0.01) | (y + ry > 0.99)
    # The share of the subject's area inside the frame, drawn as the world draws it.
    inside = np.ones(count)
    for i in np.flatnonzero(near_edge):
        inside[i] = _share_inside(scene, float(x[i]), float(y[i]), float(scale[i]), float(angle[i]),
                                  width, height)
    visible = inside >= _MIN_SHARE
    clipped = visible & near_edge
    size = scale / np.median(scale[visible & ~clipped]) if (visible & ~clipped).any() else scale
    rot = angle if scene.shape != "circle" else np.full(count, np.nan)
    nan = np.where(visible, 1.0, np.nan)
    steady = visible & ~clipped
    return Track(t, x * nan, y * nan, np.where(steady, size, np.nan), np.where(steady, rot, np.nan),
                 visible, clipped)


# ----------------------------------------------------------------------------- measures


def _fit_period(t: np.ndarray, v: np.ndarray, lo: float, hi: float) -> tuple[float, float, float]:
    """Dominant period of v(t) in [lo, hi] seconds (a sinusoid on a straight line, least
    squares over a fine log grid): (period, amplitude, share of variance explained)."""
    ok = np.isfinite(v)
    t, v = t[ok], v[ok]
    if len(t) < 8 or t[-1] - t[0] < lo * 1.5:
        return math.nan, 0.0, 0.0
    hi = min(hi, (t[-1] - t[0]) / 1.5)
    trend = np.polyval(np.polyfit(t, v, 1), t)
    rest = v - trend
    total = float((rest**2).sum())
    if total <= 1e-12:
        return math.nan, 0.0, 0.0
    periods = np.geomspace(lo, hi, 500)
    best = (math.nan, 0.0, 0.0)
    base = np.stack([np.ones_like(t), t - t.mean()], 1)
    for p in periods:
        w = 2 * math.pi / p
        a = np.concatenate([base, np.cos(w * t)[:, None], np.sin(w * t)[:, None]], 1)
        coef, *_ = np.linalg.lstsq(a, rest, rcond=None)
        explained = 1.0 - float(((rest - a @ coef) ** 2).sum()) / total
        if explained > best[2]:
            best = (float(p), float(math.hypot(coef[2], coef[3])), explained)
    return best


def _slope(t: np.ndarray, v: np.ndarray) -> float:
    ok = np.isfinite(v)
    if ok.sum() < 3 or np.ptp(t[ok]) <= 0:
        return math.nan
    return float(np.polyfit(t[ok], v[ok], 1)[0])


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2], strict=True))


def _drift(tr: Track) -> tuple[float, int, int]:
    """Signed horizontal speed over stretches where the subject moves on steadily (a jump
    ends a stretch), wrap-arounds and jumps back."""
    dt = float(np.median(np.diff(tr.t))) if len(tr.t) > 1 else 1.0
    step = np.abs(np.diff(tr.x, prepend=np.nan))
    smooth = tr.visible & ~(step > 0.1)  # a jump starts a new stretch
    slopes, weights = [], []
    for a, b in _runs(smooth):
        if b - a >= max(4, round(0.5 / dt)):
            slopes.append(_slope(tr.t[a:b], tr.x[a:b]))
            weights.append(b - a)
    speed = float(np.average(slopes, weights=weights)) if slopes else math.nan
    direction = np.sign(speed) if np.isfinite(speed) and speed != 0 else 0.0
    wraps = jumps = 0
    seen = np.flatnonzero(tr.visible)
    for i, j in zip(seen[:-1], seen[1:], strict=True):
        jump = tr.x[j] - tr.x[i]
        if abs(jump) > 0.5 and direction and np.sign(jump) == -direction:
            wraps += 1  # left one side, came back from the other
        elif abs(jump) > 0.1 and j - i <= 2 and direction and np.sign(jump) == -direction:
            jumps += 1
    return speed, wraps, jumps


def _circle(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares circle (Kasa): centre, radius, RMS distance from it over the radius."""
    a = np.stack([x, y, np.ones_like(x)], 1)
    b = x * x + y * y
    (p, q, r), *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = p / 2, q / 2
    radius = math.sqrt(max(r + cx * cx + cy * cy, 0.0))
    dist = np.hypot(x - cx, y - cy)
    return cx, cy, radius, float(np.sqrt(np.mean((dist - radius) ** 2)) / max(radius, 1e-6))


def measure(tr: Track, energy: np.ndarray | None = None) -> MotionMeasures:
    """Every motion's measures from a track (the tracker's or the world's)."""
    t = tr.t
    steady = tr.visible & ~tr.clipped
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    nan = math.nan
    xs, ys = tr.x, tr.y  # NaN where not in view (a subject cut by the edge: from its edge)
    velocity = np.hypot(np.diff(xs, prepend=np.nan), np.diff(ys, prepend=np.nan)) / dt
    speed = float(np.nanmedian(velocity)) if np.isfinite(velocity).any() else nan

    # Bounce: the height's dominant oscillation.
    period, _, fit = _fit_period(t, ys, *_PERIODS)
    amplitude = contact = nan
    if np.isfinite(period):
        ranges, lows = [], []
        start = t[0]
        while start + period <= t[-1] + 1e-9:
            inside = (t >= start) & (t < start + period) & np.isfinite(ys)
            if inside.sum() >= max(3, 0.7 * period / dt):
                ranges.append(np.ptp(ys[inside]))
                lows.append(np.max(ys[inside]))
            start += period
        if ranges:
            amplitude = float(np.median(ranges))
            floor = float(np.median(lows))
            contact = float(np.mean(np.array(lows) >= floor - 0.2 * max(amplitude, 1e-6)))

    drift_speed, wraps, jumps = _drift(tr)

    # Orbit: a circle through the positions and the angle swept around its centre.
    radius = residual = orbit_speed = turn = growth = nan
    ok = np.isfinite(xs) & np.isfinite(ys)
    if ok.sum() >= 8:
        cx, cy, radius, residual = _circle(xs[ok], ys[ok])
        around = np.unwrap(np.arctan2(ys[ok] - cy, xs[ok] - cx))
        orbit_speed = _slope(t[ok], around)
        turn = float(abs(around[-1] - around[0]))
        dist = np.hypot(xs[ok] - cx, ys[ok] - cy)
        growth = _slope(t[ok], dist) * 60.0 / max(radius, 1e-6)

    spin = _slope(t, tr.angle) if np.isfinite(tr.angle).sum() >= 0.3 * len(t) else nan

    sizes = np.where(steady, tr.size, np.nan)
    pulse_period, pulse_amp, _ = _fit_period(t, sizes, *_PERIODS)
    pulse_amp /= float(np.nanmedian(sizes)) if np.isfinite(sizes).any() else 1.0

    sync = 0.0
    if energy is not None and len(energy) == len(t) and np.ptp(energy) > 1e-6:
        use = np.isfinite(velocity)
        if use.sum() > 8 and np.ptp(velocity[use]) > 0:
            sync = float(np.corrcoef(velocity[use], energy[use])[0, 1])
    return MotionMeasures(
        visible=float(tr.visible.mean()), height=float(np.nanmedian(ys)) if ok.any() else nan,
        speed=speed, bounce_amplitude=amplitude, bounce_period=period, bounce_fit=fit,
        bounce_floor_contact=contact, drift_speed=drift_speed, drift_wraps=wraps,
        drift_jumps_back=jumps, orbit_radius=radius, orbit_residual=residual,
        orbit_speed=orbit_speed, orbit_turn=turn, orbit_growth=growth, spin_rate=spin,
        pulse_amplitude=float(pulse_amp), pulse_period=pulse_period, beat_sync=sync)


def reference(scene: Scene, seed: int, fps: float, count: int, width: int = 128, height: int = 128,
              energy: np.ndarray | None = None, phase: np.ndarray | None = None) -> MotionMeasures:
    """The world's measures for the very same clip (scene, seed, frame times, beat)."""
    return measure(world_track(scene, seed, fps, count, width, height, energy, phase), energy)


# ----------------------------------------------------------------------------- classifier


def classify(m: MotionMeasures) -> str:
    """The motion a clip shows, from its measures ("none" when the subject is hardly seen)."""
    if not m.visible >= 0.15:
        return "none"
    if m.beat_sync >= 0.35:
        return "dancing"
    if m.orbit_radius >= 0.1 and m.orbit_residual <= 0.2 and m.orbit_turn >= math.pi \
            and abs(m.orbit_speed) >= 0.4:
        return "orbiting"
    if m.bounce_amplitude >= 0.15 and m.bounce_fit >= 0.5 and m.bounce_period <= 3.0:
        return "bouncing"
    if m.drift_wraps > 0 or (abs(m.drift_speed) >= 0.03 and m.speed >= 0.02):
        return "drifting_left" if m.drift_speed < 0 else "drifting_right"
    if m.pulse_amplitude >= 0.12 and m.pulse_period <= 3.0:
        return "pulsing"
    if abs(m.spin_rate) >= 0.5:
        return "spinning"
    if math.isnan(m.spin_rate) and m.height < 0.6:
        return "spinning"  # a still circle in the middle: a spin nobody can see
    return "resting"


def judge_clip(frames: np.ndarray, scene: Scene, fps: float,
               energy: np.ndarray | None = None) -> tuple[str, MotionMeasures]:
    """The motion named and the measures for one clip of `scene` (its color is the cue)."""
    m = measure(track(frames, scene.color, fps), energy)
    return classify(m), m


def world_clip(scene: Scene, seed: int, seconds: float = 10.0, fps: int = 15, size: int = 128,
               energy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A clip drawn straight from the world, as the procedural backend draws it: frames
    [T, size, size, 3], and the beat (energy, phase) it moved to. Without `energy`, the beat
    lvp plays without audio (a 120 bpm click under dancing, silence otherwise)."""
    from engine.timeline import BeatTrack
    from engine.world import background

    count = round(seconds * fps)
    if energy is None:
        beats = BeatTrack.metronome(count, fps, active=np.full(count, scene.motion == "dancing"))
    else:
        beats = BeatTrack.from_envelope(energy[:count], fps)
    frames = np.empty((count, size, size, 3), np.uint8)
    backdrop = background(scene.background, size, size, seed)
    for i in range(count):
        frames[i] = backdrop
        beat = BeatSample(float(beats.energy[i]), float(beats.phase[i]))
        draw_subject(frames[i], scene, subject_state(scene, i / fps, seed, beat))
    return frames, beats.energy, beats.phase


def relative_error(judged: float, world: float) -> float:
    """|judged / world - 1| (a wrong sign gives more than 1); NaN when either is missing."""
    if not (np.isfinite(judged) and np.isfinite(world)) or world == 0:
        return math.nan
    return abs(judged / world - 1.0)


@dataclass(frozen=True)
class ClipResult:
    """One judged clip: the prompt's motion, the motion named, the measures and the world's."""

    prompt: str
    motion: str
    named: str
    judged: MotionMeasures
    world: MotionMeasures


def judge_against_world(frames: np.ndarray, prompt: str, scene: Scene, seed: int, fps: float,
                        energy: np.ndarray | None = None, phase: np.ndarray | None = None) -> ClipResult:
    """Judge a clip and measure the world's own clip of the same scene, seed, times and beat."""
    named, judged = judge_clip(frames, scene, fps, energy)
    world = reference(scene, seed, fps, len(frames), frames.shape[2], frames.shape[1], energy, phase)
    return ClipResult(prompt, scene.motion, named, judged, world)


# The targets: each defining measure within 20% of the world's (per motion, the
# median over its clips of judged / world for the same clip); `lvp eval` reports these.
ERRORS: dict[str, tuple[tuple[str, ...], str]] = {
    "bounce_amplitude": (("bouncing",), "bounce_amplitude"),
    "bounce_period": (("bouncing",), "bounce_period"),
    "drift_speed": (("drifting_left", "drifting_right"), "drift_speed"),
    "drift_wraps": (("drifting_left", "drifting_right"), "drift_wraps"),
    "orbit_radius": (("orbiting",), "orbit_radius"),
    "orbit_speed": (("orbiting",), "orbit_speed"),
    "spin_rate": (("spinning",), "spin_rate"),
    "pulse_amplitude": (("pulsing",), "pulse_amplitude"),
    "pulse_period": (("pulsing",), "pulse_period"),
    "dance_beat_sync": (("dancing",), "beat_sync"),
}


def measure_error(results: list[ClipResult], motions: tuple[str, ...], key: str) -> float | None:
    """|median over the clips of judged / world - 1|; wrap-arounds: |sum judged / sum world - 1|.
    None when no clip of these motions can measure it (a circle's spin, a set without wraps)."""
    clips = [r for r in results if r.motion in motions]
    if key == "drift_wraps":
        world = sum(r.world.drift_wraps for r in clips)
        return abs(sum(r.judged.drift_wraps for r in clips) / world - 1.0) if world else None
    ratios = [getattr(r.judged, key) / getattr(r.world, key) for r in clips
              if np.isfinite(getattr(r.judged, key)) and np.isfinite(getattr(r.world, key))
              and getattr(r.world, key) != 0]
    return float(abs(np.median(ratios) - 1.0)) if ratios else None


def summarize(results: list[ClipResult]) -> dict:
    """`lvp eval`'s motion numbers: accuracy of the motion named, overall and per motion, and
    each defining measure's error against the world."""
    out: dict = {"motion_accuracy": float(np.mean([r.named == r.motion for r in results])),
                 "motion_clips": len(results)}
    for motion in MOTIONS:
        hits = [r.named == r.motion for r in results if r.motion == motion]
        out[f"motion_accuracy_{motion}"] = float(np.mean(hits)) if hits else None
    for name, (motions, key) in ERRORS.items():
        out[f"motion_{name}_error"] = measure_error(results, motions, key)
    rest = [r.judged.speed for r in results if r.motion == "resting" and np.isfinite(r.judged.speed)]
    out["motion_rest_speed"] = float(np.median(rest)) if rest else None
    return out


def medians(results: list[ClipResult], motion: str) -> dict[str, tuple[float, float]]:
    """Per defining measure of `motion`: (median judged, median world) over its clips
    (wrap-arounds: totals)."""
    clips = [r for r in results if r.motion == motion]
    out = {}
    for key in DEFINING[motion]:
        pair = []
        for side in ("judged", "world"):
            values = np.array([getattr(getattr(r, side), key) for r in clips], float)
            if key == "drift_wraps":
                pair.append(float(values.sum()))
            elif key in ("drift_speed", "orbit_speed", "spin_rate"):
                finite = values[np.isfinite(values)]  # signed: the sign is part of the measure
                pair.append(float(np.median(finite)) if len(finite) else math.nan)
            else:
                pair.append(float(np.nanmedian(values)) if np.isfinite(values).any() else math.nan)
        out[key] = (pair[0], pair[1])
    return out
