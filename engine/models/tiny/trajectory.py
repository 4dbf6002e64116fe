"""Stage 2's pose path between keyframes: the physical path the trajectory network corrects,
and the features it reads. Rendering uses these; training builds its targets from them too.

A keyframe carries the subject's pose *and its motion*: the velocity and acceleration of
[x, y, scale, angle] (a `key` vector, KEY_DIM numbers). Keyframes are 1 s apart, and the
world's bounce (1.2 s) and pulse (1.6 s) are faster than poses alone sampled once a second
can show (aliasing); pose, velocity and acceleration together pin a motion down to about
twice that rate. Between two keyframes the path is:

- a quintic Hermite curve through both keyframes' pose, velocity and acceleration (smooth,
  and the velocity is continuous across keyframes: no kink once a second);
- for a position coordinate whose two keyframes' ballistic arcs (pose + velocity +
  acceleration, forward from the first and backward from the second) do not meet smoothly,
  an event happened in between: where the arcs cross, an impact (a bounce off the floor:
  the first arc, then the second); where they do not and both are out of view, the subject
  left the frame and came back on the other side (it jumps out of sight, not across the
  frame).
"""

from __future__ import annotations

import math

import numpy as np

from engine.models.tiny.layers import POSE_DIM

MOTION_DIM = 8  # velocity then acceleration of [x, y, scale, angle], per second
KEY_DIM = POSE_DIM + MOTION_DIM
# A position coordinate whose arcs miss the other keyframe by more than this (fractions of
# the frame) went through an event between keyframes. The world's smooth motions miss by at
# most about 0.05 (an orbit's third-order term); a bounce or a wrap-around by far more.
EVENT_MISS = 0.12
_CROSSING_SAMPLES = 65


def wrap(angle: np.ndarray | float) -> np.ndarray | float:
    """An angle (radians) in [-pi, pi)."""
    return (np.asarray(angle) + math.pi) % (2 * math.pi) - math.pi


def pose_angle(v: np.ndarray) -> float:
    """The rotation of a pose vector [x, y, scale, cos, sin, ...]."""
    return math.atan2(float(v[4]), float(v[3]))


def trajectory_features(ka: np.ndarray, kb: np.ndarray, u: float, energy: float,
                        phase_since_a: float, phase_a_to_b: float) -> np.ndarray:
    """The trajectory network's input: both keyframes' key vectors, the time since the first
    (seconds) and the beat (energy now, its phase advance since a and from a to b)."""
    return np.concatenate([ka, kb, [u, energy, phase_since_a, phase_a_to_b]]).astype(np.float32)


def _quintic(p0, v0, a0, p1, v1, a1, s, span):
    """Quintic Hermite on s in [0, 1] over an interval of `span` seconds (arrays broadcast)."""
    s2, s3 = s * s, s * s * s
    s4, s5 = s3 * s, s3 * s2
    h0 = 1 - 10 * s3 + 15 * s4 - 6 * s5
    h1 = s - 6 * s3 + 8 * s4 - 3 * s5
    h2 = 0.5 * s2 - 1.5 * s3 + 1.5 * s4 - 0.5 * s5
    h3 = 0.5 * s3 - s4 + 0.5 * s5
    h4 = -4 * s3 + 7 * s4 - 3 * s5
    h5 = 10 * s3 - 15 * s4 + 6 * s5
    return h0 * p0 + h1 * v0 * span + h2 * a0 * span**2 + h3 * a1 * span**2 + h4 * v1 * span + h5 * p1


def _arc(p, v, a, dt):
    return p + v * dt + 0.5 * a * dt * dt


def _unpack(k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N, KEY_DIM] -> pose [N, 4] (x, y, scale, angle), velocity [N, 4], acceleration [N, 4]."""
    angle = np.arctan2(k[:, 4], k[:, 3])
    return (np.stack([k[:, 0], k[:, 1], k[:, 2], angle], -1), k[:, POSE_DIM:POSE_DIM + 4],
            k[:, POSE_DIM + 4:POSE_DIM + 8])


def physical_path(ka: np.ndarray, kb: np.ndarray, u: np.ndarray, span: np.ndarray) -> np.ndarray:
    """[x, y, scale, angle] at `u` seconds after keyframe a, keyframe b `span` seconds later.

    ka, kb [N, KEY_DIM]; u, span [N]. Outside [0, span] the nearer keyframe's arc continues.
    """
    ka, kb = np.atleast_2d(ka).astype(np.float64), np.atleast_2d(kb).astype(np.float64)
    u = np.atleast_1d(np.asarray(u, np.float64))
    span = np.maximum(np.atleast_1d(np.asarray(span, np.float64)), 1e-6)
    pa, va, aa = _unpack(ka)
    pb, vb, ab = _unpack(kb)
    # b's angle, unwrapped to the turn the velocities say happened (a spin turns more than
    # half a circle between keyframes).
    turn = 0.5 * (va[:, 3] + vb[:, 3]) * span
    pb[:, 3] = pa[:, 3] + turn + wrap(pb[:, 3] - pa[:, 3] - turn)
    s = np.clip(u / span, 0.0, 1.0)[:, None]
    out = _quintic(pa, va, aa, pb, vb, ab, s, span[:, None])
    before, after = u < 0, u > span
    out[before] = _arc(pa[before], va[before], 0 * aa[before], u[before, None])
    out[after] = _arc(pb[after], vb[after], 0 * ab[after], (u - span)[after, None])

    # Events in x and y: the forward arc from a and the backward arc from b.
    grid = np.linspace(0.0, 1.0, _CROSSING_SAMPLES)[None] * span[:, None]  # [N, S]
    for c in (0, 1):
        forward = _arc(pa[:, c:c + 1], va[:, c:c + 1], aa[:, c:c + 1], grid)
        backward = _arc(pb[:, c:c + 1], vb[:, c:c + 1], ab[:, c:c + 1], grid - span[:, None])
        event = (np.abs(forward[:, -1] - pb[:, c]) > EVENT_MISS) | \
                (np.abs(backward[:, 0] - pa[:, c]) > EVENT_MISS)
        if not event.any():
            continue
        gap = forward - backward
        flips = np.signbit(gap[:, 1:]) != np.signbit(gap[:, :-1])
        crosses = flips.any(1)
        first = flips.argmax(1)
        # Linear refinement of the crossing between two samples.
        g0 = gap[np.arange(len(gap)), first]
        g1 = gap[np.arange(len(gap)), np.minimum(first + 1, _CROSSING_SAMPLES - 1)]
        frac = np.where(np.abs(g0 - g1) > 1e-12, g0 / (g0 - g1 + 1e-300), 0.5)
        t_cross = (first + frac) / (_CROSSING_SAMPLES - 1) * span
        half = 0.5 * span
        mid_f = _arc(pa[:, c], va[:, c], aa[:, c], half)
        mid_b = _arc(pb[:, c], vb[:, c], ab[:, c], -half)
        out_of_view = ((mid_f < -0.05) | (mid_f > 1.05)) & ((mid_b < -0.05) | (mid_b > 1.05))
        switch = np.where(crosses, t_cross, np.where(out_of_view, half, np.nan))
        use = event & np.isfinite(switch) & (u >= 0) & (u <= span)
        if not use.any():
            continue
        f_now = _arc(pa[:, c], va[:, c], aa[:, c], u)
        b_now = _arc(pb[:, c], vb[:, c], ab[:, c], u - span)
        out[use, c] = np.where(u[use] < switch[use], f_now[use], b_now[use])
    return out


def trajectory_baseline(ka: np.ndarray, kb: np.ndarray, u: float, span: float = 1.0) -> np.ndarray:
    """One instant of `physical_path`: [x, y, scale, angle]."""
    return physical_path(ka[None], kb[None], np.array([u]), np.array([span]))[0]
