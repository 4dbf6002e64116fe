"""Stage 2's pose path between keyframes: the straight line the trajectory network corrects,
and the features it reads. Rendering uses these; training builds its targets from them too.
"""

from __future__ import annotations

import math

import numpy as np


def wrap(angle: np.ndarray | float) -> np.ndarray | float:
    """An angle (radians) in [-pi, pi)."""
    return (np.asarray(angle) + math.pi) % (2 * math.pi) - math.pi


def pose_angle(v: np.ndarray) -> float:
    """The rotation of a pose vector [x, y, scale, cos, sin]."""
    return math.atan2(float(v[4]), float(v[3]))


def trajectory_features(pa: np.ndarray, pb: np.ndarray, pp: np.ndarray, pn: np.ndarray,
                        has_prev: bool, has_next: bool, u: float, energy: float,
                        phase_since_a: float, phase_a_to_b: float) -> np.ndarray:
    return np.concatenate([pa, pb, pp, pn, [float(has_prev), float(has_next), u, energy,
                                            phase_since_a, phase_a_to_b]]).astype(np.float32)


def trajectory_baseline(pa: np.ndarray, pb: np.ndarray, u: float) -> np.ndarray:
    """[x, y, scale, angle] on the straight path (shortest turn) between two poses."""
    a, b = pose_angle(pa), pose_angle(pb)
    return np.array([pa[0] + u * (pb[0] - pa[0]), pa[1] + u * (pb[1] - pa[1]),
                     pa[2] + u * (pb[2] - pa[2]), a + u * float(wrap(b - a))], np.float64)
