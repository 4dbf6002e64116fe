"""The motion law the pose model corrects: the next keyframe's key, extrapolated from the last.

Stage 1 predicts each keyframe's key (pose, velocity, acceleration; trajectory.py) from the
ones before it. Predicting the whole key, a network rolled out on its own output loses a
little energy every keyframe (measured: a bounce settled near mid-height, orbits widened).
Here the prompt's motion class picks a law of motion that carries the state one keyframe
forward and keeps what defines the motion, and the pose network only adds a correction:

  orbiting        x, y harmonic (angular speed of the class; centre, radius and phase from
                  the state: the radius is kept), angle at constant rate
  bouncing        y ballistic under the class's gravity with an elastic floor (the apex is
                  kept), x harmonic (the slow sway)
  drifting_*      x at constant speed, leaving one side and coming back on the other; y harmonic
  spinning        angle at constant rate, the rest held
  pulsing         scale harmonic (amplitude and phase from the state)
  dancing,resting held (the beat and the network decide)

Rates (angular frequencies, gravity, the floor, the wrap span) are the class's; phases come
from the state. What defines a motion's size (an orbit's radius, a bounce's height, a drift's
speed, a spin's rate, a pulse's amplitude) is carried from the state and relaxes towards the
class's own with time constant RELAX_SECONDS: a first keyframe drawn a little off (the pose
prior draws an orbit's first pose from a disc, not the ring) or a correction's small error
fades within a few keyframes instead of being kept, or compounding, for the whole shot. These
constants are the procedural world's laws (engine/world.py): prior knowledge the model is
built with, as the sprite layers know the subject's base size.
"""

from __future__ import annotations

import math

import torch

from engine.models.tiny.layers import POSE_DIM
from engine.prompt import DEFAULT_MOTION, MOTIONS, InputError, parse_prompt, prompt_motion

TAU = 2.0 * math.pi
# Per class and coordinate (x, y, scale): angular frequency (rad/s) of a harmonic law; 0 holds
# the coordinate at constant velocity (no acceleration) or, with HOLD, still.
_OMEGA = {
    "bouncing": (TAU / 13.0, 0.0, 0.0),
    "drifting_left": (0.0, TAU / 4.0, 0.0),
    "drifting_right": (0.0, TAU / 4.0, 0.0),
    "orbiting": (TAU / 6.0, TAU / 6.0, 0.0),
    "spinning": (0.0, 0.0, 0.0),
    "pulsing": (0.0, 0.0, TAU / 1.6),
    "dancing": (0.0, 0.0, 0.0),
    "resting": (0.0, 0.0, 0.0),
}
# 1 where a coordinate (x, y, scale, angle) moves at all under the class's law.
_MOVES = {
    "bouncing": (1, 1, 0, 0),
    "drifting_left": (1, 1, 0, 0),
    "drifting_right": (1, 1, 0, 0),
    "orbiting": (1, 1, 0, 1),
    "spinning": (0, 0, 0, 1),
    "pulsing": (0, 0, 1, 0),
    "dancing": (0, 0, 0, 0),
    "resting": (0, 0, 0, 0),
}
GRAVITY = 8.0 * 0.44 / 1.2**2  # a bounce's downward acceleration (frame heights / s^2)
FLOOR = 0.74  # where a bouncing subject's centre meets the ground
WRAP_LOW, WRAP_SPAN = -0.24, 1.48  # a drifting subject leaves at one end and enters at the other
NUM_CLASSES = len(MOTIONS)
RELAX_SECONDS = 1.0
ORBIT_CENTRE, ORBIT_RADIUS, ORBIT_OMEGA = 0.5, 0.27, TAU / 6.0
BOUNCE_HEIGHT = 0.44  # apex above the floor
DRIFT_SPEED = 0.07  # frame widths per second
SPIN_RATE = TAU / 3.0
PULSE_AMPLITUDE, PULSE_OMEGA = 0.35, TAU / 1.6
DRIFT_BOB, DRIFT_BOB_OMEGA = 0.05, TAU / 4.0  # a drifting subject's vertical bob
SWAY, SWAY_OMEGA = 0.25, TAU / 13.0  # a bouncing subject's sideways sway
REST_HEIGHT = 0.68  # a resting subject sits low
CENTRE_BOX = (0.45, 0.55)  # a spinning or pulsing subject stays about the middle


def motion_class(prompt: str) -> int:
    """The index (in engine.prompt.MOTIONS) of the law a prompt's subject follows."""
    try:
        motion = parse_prompt(prompt).motion
    except InputError:
        motion = prompt_motion(prompt) or DEFAULT_MOTION
    return MOTIONS.index(motion)


def _table(values: dict, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor([values[m] for m in MOTIONS], dtype=dtype)


_OMEGA_T = _table(_OMEGA)  # [C, 3]
_MOVES_T = _table(_MOVES)  # [C, 4]
_BOUNCE = MOTIONS.index("bouncing")
_DRIFT = (MOTIONS.index("drifting_left"), MOTIONS.index("drifting_right"))


def _harmonic(p, v, a, omega, dt):
    """Harmonic law with angular frequency omega (centre from the acceleration); omega 0:
    constant velocity. Returns position, velocity, acceleration after dt."""
    small = omega < 1e-6
    w = torch.where(small, torch.ones_like(omega), omega)
    centre = p + a / (w * w)
    c, s = torch.cos(w * dt), torch.sin(w * dt)
    ph = centre + (p - centre) * c + v / w * s
    vh = -(p - centre) * w * s + v * c
    ah = -(w * w) * (ph - centre)
    return (torch.where(small, p + v * dt, ph), torch.where(small, v, vh),
            torch.where(small, torch.zeros_like(a), ah))


def _ballistic(y, v, dt):
    """Free fall under GRAVITY with an elastic floor at FLOOR (at most two impacts per step)."""
    left = torch.full_like(y, dt)
    for _ in range(2):
        # Time to the floor: y + v t + g t^2 / 2 = FLOOR (the later root, when moving down or up).
        disc = (v * v + 2.0 * GRAVITY * (FLOOR - y)).clamp(min=0.0)
        t_hit = (-v + torch.sqrt(disc)) / GRAVITY
        hits = (t_hit < left) & (t_hit >= 0.0) & (y <= FLOOR + 1e-6)
        step = torch.where(hits, t_hit, left)
        y_new = y + v * step + 0.5 * GRAVITY * step * step
        v_new = v + GRAVITY * step
        y = torch.where(hits, torch.full_like(y, FLOOR), y_new)
        v = torch.where(hits, -v_new.abs(), v_new)
        left = left - step
    # A state below the floor (a model's slip) is lifted back onto it.
    y = torch.minimum(y, torch.full_like(y, FLOOR))
    return y, v


def _size_laws(key: torch.Tensor, out: torch.Tensor, motion: torch.Tensor, dt: float,
               keep: float | None = None) -> torch.Tensor:
    """`out` (the law's next key) with each class's defining size relaxed towards its own
    (`keep`: the share of the difference kept, exp(-dt / RELAX_SECONDS) unless given)."""
    keep = math.exp(-dt / RELAX_SECONDS) if keep is None else keep

    def _relax(value: torch.Tensor, target: torch.Tensor | float, _dt: float) -> torch.Tensor:
        return target + (value - target) * keep

    out = out.clone()
    m = lambda name: motion == MOTIONS.index(name)  # noqa: E731
    v = POSE_DIM  # velocity offset; acceleration at POSE_DIM + 4
    # Orbit: polar about the centre; the radius relaxes, the angle turns at the class's rate
    # (direction from the state's own sweep).
    dx, dy = key[:, 0] - ORBIT_CENTRE, key[:, 1] - ORBIT_CENTRE
    sweep = torch.sign(dx * key[:, v + 1] - dy * key[:, v])
    sweep = torch.where(sweep == 0, torch.ones_like(sweep), sweep)
    radius = _relax(torch.hypot(dx, dy), ORBIT_RADIUS, dt)
    theta = torch.atan2(dy, dx) + sweep * ORBIT_OMEGA * dt
    w = sweep * ORBIT_OMEGA
    orbit = torch.stack([ORBIT_CENTRE + radius * torch.cos(theta), ORBIT_CENTRE + radius * torch.sin(theta),
                         -radius * w * torch.sin(theta), radius * w * torch.cos(theta),
                         -radius * w * w * torch.cos(theta), -radius * w * w * torch.sin(theta)], -1)
    o = m("orbiting")
    out[o, 0], out[o, 1] = orbit[o, 0], orbit[o, 1]
    out[o, v], out[o, v + 1] = orbit[o, 2], orbit[o, 3]
    out[o, v + 4], out[o, v + 5] = orbit[o, 4], orbit[o, 5]
    # Bounce: the apex height (energy) relaxes; the height now is kept, the speed follows.
    b = m("bouncing")
    above = (FLOOR - out[:, 1]).clamp(min=0.0)
    energy = above + out[:, v + 1] ** 2 / (2.0 * GRAVITY)
    goal = _relax(energy, BOUNCE_HEIGHT, dt)
    speed = torch.sqrt((2.0 * GRAVITY * (goal - above)).clamp(min=0.0))
    direction = torch.where(out[:, v + 1] >= 0, 1.0, -1.0)
    out[b, v + 1] = (direction * speed)[b]
    out[b, 1] = torch.where(goal < above, FLOOR - goal, out[:, 1])[b]  # above the new apex
    # Drift: the speed relaxes to the class's, in the class's direction.
    for name, sign in (("drifting_left", -1.0), ("drifting_right", 1.0)):
        d = m(name)
        out[d, v] = _relax(out[d, v], sign * DRIFT_SPEED, dt)
    # Spin: the rate relaxes to the class's (direction from the state).
    sp = m("spinning")
    rate = out[:, v + 3]
    spin_dir = torch.where(rate < 0, -1.0, 1.0)
    out[sp, v + 3] = _relax(rate, spin_dir * SPIN_RATE, dt)[sp]
    # Oscillations about a centre relax to the class's amplitude (phase kept): the pulse's
    # size, a drift's vertical bob, a bounce's sideways sway.
    for rows, c, centre, omega, size in ((m("pulsing"), 2, 1.0, PULSE_OMEGA, PULSE_AMPLITUDE),
                                         (m("drifting_left") | m("drifting_right"), 1, 0.5,
                                          DRIFT_BOB_OMEGA, DRIFT_BOB),
                                         (m("bouncing"), 0, 0.5, SWAY_OMEGA, SWAY)):
        dc, vc = out[:, c] - centre, out[:, v + c]
        amplitude = torch.sqrt(dc * dc + (vc / omega) ** 2)
        phase = torch.atan2(-vc / omega, dc)
        goal = _relax(amplitude, size, dt)
        out[rows, c] = (centre + goal * torch.cos(phase))[rows]
        out[rows, v + c] = (-goal * omega * torch.sin(phase))[rows]
        out[rows, v + 4 + c] = (-(omega ** 2) * goal * torch.cos(phase))[rows]
    # Where a subject that stays in place stays: resting low, spinning and pulsing mid-frame.
    r = m("resting")
    out[r, 1] = _relax(out[r, 1], REST_HEIGHT, dt)
    mid = m("spinning") | m("pulsing")
    for c in (0, 1):
        out[mid, c] = _relax(out[mid, c], out[mid, c].clamp(*CENTRE_BOX), dt)
    return out


def extrapolate(key: torch.Tensor, motion: torch.Tensor, dt: float = 1.0) -> torch.Tensor:
    """key [B, KEY_DIM] (pose x, y, scale, cos, sin; velocity and acceleration of x, y, scale,
    angle), motion [B] class indices -> the key `dt` seconds later under the class's law."""
    p = key[:, :3]
    v = key[:, POSE_DIM:POSE_DIM + 3]
    a = key[:, POSE_DIM + 4:POSE_DIM + 7]
    omega = _OMEGA_T.to(key.device)[motion]
    moves = _MOVES_T.to(key.device)[motion]
    pn, vn, an = _harmonic(p, v, a, omega, dt)
    # Bounce: y ballistic with the floor.
    yb, vb = _ballistic(p[:, 1], v[:, 1], dt)
    bounce = motion == _BOUNCE
    pn[:, 1] = torch.where(bounce, yb, pn[:, 1])
    vn[:, 1] = torch.where(bounce, vb, vn[:, 1])
    an[:, 1] = torch.where(bounce, torch.full_like(yb, GRAVITY), an[:, 1])
    # Drift: x wraps around.
    drift = (motion == _DRIFT[0]) | (motion == _DRIFT[1])
    wrapped = torch.remainder(pn[:, 0] - WRAP_LOW, WRAP_SPAN) + WRAP_LOW
    pn[:, 0] = torch.where(drift, wrapped, pn[:, 0])
    # Coordinates the class does not move are held still.
    m3 = moves[:, :3]
    pn = m3 * pn + (1 - m3) * p
    vn, an = m3 * vn, m3 * an
    # Angle: constant rate where the class turns the subject.
    spin = moves[:, 3]
    w = key[:, POSE_DIM + 3] * spin
    turn = w * dt
    c, s = key[:, 3], key[:, 4]
    cn = c * torch.cos(turn) - s * torch.sin(turn)
    sn = s * torch.cos(turn) + c * torch.sin(turn)
    zero = torch.zeros_like(w)
    out = torch.cat([pn, cn[:, None], sn[:, None], vn, w[:, None], an, zero[:, None]], dim=-1)
    return _size_laws(key, out, motion, dt)


def settle(key: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """A shot's first key [B, KEY_DIM], drawn without a history, put on its motion's own size
    (phase kept): an orbit's first pose on the ring, not inside the disc the pose prior
    draws from; a bounce's energy, a drift's speed, a spin's rate, a pulse's amplitude, and
    where a subject that stays in place stays."""
    return _size_laws(key, key, motion, 0.0, keep=0.0)
