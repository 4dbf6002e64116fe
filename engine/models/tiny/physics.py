"""The motion law the pose model corrects: the next keyframe's key, extrapolated from the last.

Stage 1 predicts each keyframe's key (pose, velocity, acceleration; trajectory.py) from the
ones before it. Predicting the whole key, a network rolled out on its own output loses a
little energy every keyframe (measured: a bounce settled near mid-height, orbits widened).
Here the prompt's motion word picks the *form* of a law of motion that carries the state one
keyframe forward, and the pose network only adds a correction:

  orbiting        polar about a centre (radius kept, angle at the class's angular speed),
                  angle at constant rate
  bouncing        y ballistic under a gravity with an elastic floor (the apex is kept), x
                  harmonic (a sway)
  drifting_*      x at constant speed, leaving one side and coming back on the other; y harmonic
  other classes   each coordinate held, at constant velocity or harmonic, as fitted

The law's *numbers* are learned (`MotionLaw`'s buffers, stored in the weights): `lvp train`
fits them to the procedural world's clips (training/law_fit.py: the angular frequency per
class and coordinate that best predicts a clip one second on, whether a coordinate moves at
all, gravity and floor, the wrap-around span, an orbit's centre, radius and angular speed, a
bounce's height, a drift's speed, a spin's rate, the amplitudes and centres of the
oscillations, where a subject that stays in place stays). A new model starts with an
unfitted law that holds every key still. Nothing here reads the world's own constants.

What defines a motion's size is carried from the state and relaxes towards the fitted one
with time constant RELAX_SECONDS (a design choice of the model, not a fitted value): a first
keyframe drawn a little off, or a correction's small error, fades within a few keyframes
instead of being kept, or compounding, for the whole shot.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.models.tiny.layers import POSE_DIM
from engine.prompt import DEFAULT_MOTION, MOTIONS, InputError, parse_prompt, prompt_motion

NUM_CLASSES = len(MOTIONS)
RELAX_SECONDS = 1.0
_BOUNCE = MOTIONS.index("bouncing")
_DRIFT = (MOTIONS.index("drifting_left"), MOTIONS.index("drifting_right"))
_ORBIT = MOTIONS.index("orbiting")
_SPIN = MOTIONS.index("spinning")
_PULSE = MOTIONS.index("pulsing")
_REST = MOTIONS.index("resting")
# The oscillations whose amplitude relaxes (class rows, coordinate): a pulse's size, a drift's
# vertical bob, a bounce's sideways sway. Row i of MotionLaw.oscillation holds (centre, amplitude).
OSCILLATIONS = (((_PULSE,), 2), (_DRIFT, 1), ((_BOUNCE,), 0))
# Coordinates whose size a law form keeps already (the orbit's radius, the bounce's height,
# the OSCILLATIONS): MotionLaw.tidy leaves them alone.
_OWN_SIZE = torch.zeros((NUM_CLASSES, 3), dtype=torch.bool)
_OWN_SIZE[_ORBIT, :2] = True
_OWN_SIZE[_BOUNCE, 1] = True
for _classes, _c in OSCILLATIONS:
    _OWN_SIZE[list(_classes), _c] = True


def motion_class(prompt: str) -> int:
    """The index (in engine.prompt.MOTIONS) of the law a prompt's subject follows."""
    try:
        motion = parse_prompt(prompt).motion
    except InputError:
        motion = prompt_motion(prompt) or DEFAULT_MOTION
    return MOTIONS.index(motion)


# Every learned number of the law, its shape and its generic starting value (frame units:
# positions in [0, 1], the middle 0.5, the subject's base size 1).
LAW_FIELDS: dict[str, tuple[tuple[int, ...], float | tuple[float, ...]]] = {
    "fitted": ((1,), 0.0),  # 1 once training fitted the law; an unfitted law holds keys still
    "omega": ((NUM_CLASSES, 3), 0.0),  # rad/s per class and (x, y, scale); 0: constant velocity
    "moves": ((NUM_CLASSES, 4), 0.0),  # 1 where a coordinate (x, y, scale, angle) moves at all
    "still": ((NUM_CLASSES, 4), 0.0),  # 1 where the world keeps a coordinate still (the law alone sets it)
    "gravity": ((1,), 0.0),  # a bouncing subject's downward acceleration (frame heights / s^2)
    "floor": ((1,), 1.0),  # where its centre meets the ground
    "bounce_height": ((1,), 0.0),  # its apex above the floor
    "wrap": ((2,), (0.0, 1.0)),  # a drifting subject leaves at low + span, enters at low
    "drift_speed": ((NUM_CLASSES,), 0.0),  # frame widths per second (signed), per class
    "orbit": ((4,), (0.5, 0.5, 0.0, 0.0)),  # centre x, y, radius, angular speed
    "spin_rate": ((1,), 0.0),  # rad/s
    "oscillation": ((len(OSCILLATIONS), 2), ((1.0, 0.0), (0.5, 0.0), (0.5, 0.0))),  # centre, amplitude
    "rest_height": ((1,), 0.5),  # where a resting subject sits
    "held_angle": ((NUM_CLASSES, 2), (1.0, 0.0)),  # cos, sin of the angle a class holds still
    "centre_box": ((2, 2), ((0.0, 1.0), (0.0, 1.0))),  # x and y range of a spinning or pulsing subject
    # Per class: the range of x and y its subject keeps (a shot's first key is put inside), and
    # the centre and amplitude of each harmonic coordinate (x, y, scale).
    "box": ((NUM_CLASSES, 2, 2), (0.0, 1.0)),
    "swing": ((NUM_CLASSES, 3, 2), (0.5, 0.0)),
    # Which way the world's clips move: the median velocity per class of x, y, scale, angle,
    # and the orbit's sweep (+1 counterclockwise in frame coordinates, -1 clockwise, 0 either).
    "rate": ((NUM_CLASSES, 4), 0.0),
    "sweep": ((1,), 0.0),
}


class MotionLaw(nn.Module):
    """The law of motion's learned numbers (buffers: saved with the weights, fitted by
    training, not by gradient descent)."""

    def __init__(self) -> None:
        super().__init__()
        for name, (shape, value) in LAW_FIELDS.items():
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32).expand(shape).clone())

    @torch.no_grad()
    def load_fit(self, values: dict[str, torch.Tensor]) -> None:
        """Set the fitted numbers (training/law_fit.py) and mark the law fitted."""
        for name, value in values.items():
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32))
        self.fitted.fill_(1.0)

    def extrapolate(self, key: torch.Tensor, motion: torch.Tensor, dt: float = 1.0) -> torch.Tensor:
        """key [B, KEY_DIM] (pose x, y, scale, cos, sin; velocity and acceleration of x, y,
        scale, angle), motion [B] class indices -> the key `dt` seconds later under the law."""
        if not bool(self.fitted.item()):
            return _held(key)
        p = key[:, :3]
        v = key[:, POSE_DIM:POSE_DIM + 3]
        a = key[:, POSE_DIM + 4:POSE_DIM + 7]
        omega = self.omega[motion]
        moves = self.moves[motion]
        pn, vn, an = _harmonic(p, v, a, omega, dt)
        # Bounce: y ballistic with the floor.
        yb, vb = self._ballistic(p[:, 1], v[:, 1], dt)
        bounce = motion == _BOUNCE
        pn[:, 1] = torch.where(bounce, yb, pn[:, 1])
        vn[:, 1] = torch.where(bounce, vb, vn[:, 1])
        an[:, 1] = torch.where(bounce, self.gravity.expand_as(yb), an[:, 1])
        # Drift: x wraps around.
        drift = (motion == _DRIFT[0]) | (motion == _DRIFT[1])
        low, span = self.wrap[0], self.wrap[1].clamp(min=1e-3)
        pn[:, 0] = torch.where(drift, torch.remainder(pn[:, 0] - low, span) + low, pn[:, 0])
        # Coordinates the class does not move are held still.
        m3 = moves[:, :3]
        pn = m3 * pn + (1 - m3) * p
        vn, an = m3 * vn, m3 * an
        # Angle: constant rate where the class turns the subject.
        w = key[:, POSE_DIM + 3] * moves[:, 3]
        turn = w * dt
        c, s = key[:, 3], key[:, 4]
        cn = c * torch.cos(turn) - s * torch.sin(turn)
        sn = s * torch.cos(turn) + c * torch.sin(turn)
        zero = torch.zeros_like(w)
        out = torch.cat([pn, cn[:, None], sn[:, None], vn, w[:, None], an, zero[:, None]], dim=-1)
        return self._size_laws(key, out, motion, dt)

    def keep_still(self, key: torch.Tensor, law: torch.Tensor | None, motion: torch.Tensor) -> torch.Tensor:
        """`key` [B, KEY_DIM] with every coordinate its class keeps still, or moves at constant
        velocity, set by the law alone: the law's prediction `law` for its value (None: the
        key's own, at a shot's first key); no velocity or acceleration where still, the law's
        where constant. A resting subject then stands still between and at keyframes instead of
        wandering by the pose sampler's noise, and a drifting one keeps drifting (measured:
        with the correction on a drift's position, it hovered near one edge over minutes, 0.008
        frame widths per second against the world's 0.07)."""
        still = self.still[motion]  # [B, 4]
        constant = torch.zeros_like(still)
        constant[:, :3] = (self.moves[motion, :3] > 0) & (self.omega[motion] == 0) & (still[:, :3] == 0)
        if not bool(still.any()) and not bool(constant.any()):
            return key
        out = key.clone()
        own = (still + constant) > 0
        if law is not None:
            for c in range(3):
                out[:, c] = torch.where(own[:, c], law[:, c], out[:, c])
            out[:, 3:5] = torch.where(own[:, 3:4], law[:, 3:5], out[:, 3:5])
        source = law if law is not None else key
        for cols in (slice(POSE_DIM, POSE_DIM + 4), slice(POSE_DIM + 4, None)):
            part = out[:, cols]
            part = torch.where(constant > 0, source[:, cols], part)
            out[:, cols] = torch.where(still > 0, torch.zeros_like(part), part)
        return out

    def tidy(self, key: torch.Tensor, motion: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """A sampled key [B, KEY_DIM] kept on the fitted law where the law's own step does not
        keep it: a shot's first key (`first` [B]) inside its class's box, and every harmonic
        coordinate whose size no law form keeps (a resting subject's slow breathing) relaxed to
        the fitted amplitude, at once for a first key, with RELAX_SECONDS after."""
        if not bool(self.fitted.item()):
            return key
        # Sizes: a later key's sampled correction relaxes towards the fitted sizes once more
        # (a correction's small bias otherwise settles the size off the fitted one).
        out = torch.where(first[:, None], key,
                          self._size_laws(key, key, motion, 0.0, keep=math.exp(-1.0 / RELAX_SECONDS)))
        # A shot's first key turns and sweeps the way the world's clips of its class do.
        v = POSE_DIM
        rate = self.rate[motion, 3]
        turns = first & (self.moves[motion, 3] > 0) & (rate.abs() > 0.1) & (out[:, v + 3] * rate < 0)
        out[:, v + 3] = torch.where(turns, -out[:, v + 3], out[:, v + 3])
        dx, dy = out[:, 0] - self.orbit[0], out[:, 1] - self.orbit[1]
        sweep = torch.sign(dx * out[:, v + 1] - dy * out[:, v])
        back = first & (motion == _ORBIT) & (sweep * self.sweep < 0)
        for c in (v, v + 1):
            out[:, c] = torch.where(back, -out[:, c], out[:, c])
        box = self.box[motion]  # [B, 2, 2]
        for c in (0, 1):
            inside = torch.minimum(torch.maximum(out[:, c], box[:, c, 0]), box[:, c, 1])
            out[:, c] = torch.where(first, inside, out[:, c])
        keep = torch.where(first, 0.0, math.exp(-1.0 / RELAX_SECONDS))
        for c in range(3):
            omega = self.omega[motion, c]
            free = (self.moves[motion, c] > 0) & (omega > 0) & ~_OWN_SIZE[motion, c]
            if not bool(free.any()):
                continue
            moved = _relaxed_oscillation(out[:, c], out[:, v + c], omega.clamp(min=1e-3),
                                         self.swing[motion, c, 0], self.swing[motion, c, 1], keep)
            for col, value in zip((c, v + c, v + 4 + c), moved, strict=True):
                out[:, col] = torch.where(free, value, out[:, col])
        return out

    def settle(self, key: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """A shot's first key [B, KEY_DIM], drawn without a history, put on its motion's own
        size (phase kept): an orbit's first pose on the ring, not inside the disc the pose
        prior draws from; a bounce's energy, a drift's speed, a spin's rate, a pulse's
        amplitude, the size and angle of a subject whose size and angle the world holds, and
        where a subject that stays in place stays."""
        if not bool(self.fitted.item()):
            return key
        return self._size_laws(key, key, motion, 0.0, keep=0.0)

    def place_on_wrap(self, key: torch.Tensor, motion: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """A drifting shot's first key [B, KEY_DIM] at `uniform` [B] (in [0, 1]) of the way
        along the wrap-around span; other classes' keys unchanged. A wrap-around has no
        preferred point, so a shot seen from a random moment is as likely to start anywhere
        on it, the edges included (the pose prior's own draw is a little thinner there)."""
        if not bool(self.fitted.item()):
            return key
        drift = (motion == _DRIFT[0]) | (motion == _DRIFT[1])
        out = key.clone()
        out[:, 0] = torch.where(drift, self.wrap[0] + self.wrap[1] * uniform.clamp(0.0, 1.0), key[:, 0])
        return out

    def _ballistic(self, y: torch.Tensor, v: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Free fall under the gravity with an elastic floor (at most two impacts per step)."""
        g, floor = self.gravity.clamp(min=1e-3), self.floor
        left = torch.full_like(y, dt)
        for _ in range(2):
            # Time to the floor: y + v t + g t^2 / 2 = floor (the later root).
            disc = (v * v + 2.0 * g * (floor - y)).clamp(min=0.0)
            t_hit = (-v + torch.sqrt(disc)) / g
            hits = (t_hit < left) & (t_hit >= 0.0) & (y <= floor + 1e-6)
            step = torch.where(hits, t_hit, left)
            y_new = y + v * step + 0.5 * g * step * step
            v_new = v + g * step
            y = torch.where(hits, floor.expand_as(y), y_new)
            v = torch.where(hits, -v_new.abs(), v_new)
            left = left - step
        # A state below the floor (a model's slip) is lifted back onto it.
        return torch.minimum(y, floor.expand_as(y)), v

    def _size_laws(self, key: torch.Tensor, out: torch.Tensor, motion: torch.Tensor, dt: float,
                   keep: float | None = None) -> torch.Tensor:
        """`out` (the law's next key) with each class's defining size relaxed towards the fitted
        one (`keep`: the share of the difference kept, exp(-dt / RELAX_SECONDS) unless given)."""
        keep = math.exp(-dt / RELAX_SECONDS) if keep is None else keep

        def relax(value: torch.Tensor, target: torch.Tensor | float) -> torch.Tensor:
            return target + (value - target) * keep

        out = out.clone()
        v = POSE_DIM  # velocity offset; acceleration at POSE_DIM + 4
        present = set(motion.tolist())  # only the classes in the batch are worked out
        if _ORBIT in present:
            # Orbit: polar about the centre; the radius relaxes, the angle turns at the fitted
            # rate (direction from the state's own sweep).
            cx, cy, radius0, speed = self.orbit
            dx, dy = key[:, 0] - cx, key[:, 1] - cy
            sweep = torch.sign(dx * key[:, v + 1] - dy * key[:, v])
            sweep = torch.where(sweep == 0, torch.ones_like(sweep), sweep)
            radius = relax(torch.hypot(dx, dy), radius0)
            theta = torch.atan2(dy, dx) + sweep * speed * dt
            w = sweep * speed
            o = motion == _ORBIT
            out[o, 0], out[o, 1] = (cx + radius * torch.cos(theta))[o], (cy + radius * torch.sin(theta))[o]
            out[o, v], out[o, v + 1] = (-radius * w * torch.sin(theta))[o], (radius * w * torch.cos(theta))[o]
            out[o, v + 4] = (-radius * w * w * torch.cos(theta))[o]
            out[o, v + 5] = (-radius * w * w * torch.sin(theta))[o]
        if _BOUNCE in present:
            # Bounce: the apex height (energy) relaxes; the height now is kept, the speed follows.
            g, floor = self.gravity.clamp(min=1e-3), self.floor
            b = motion == _BOUNCE
            above = (floor - out[:, 1]).clamp(min=0.0)
            energy = above + out[:, v + 1] ** 2 / (2.0 * g)
            goal = relax(energy, self.bounce_height)
            speed_y = torch.sqrt((2.0 * g * (goal - above)).clamp(min=0.0))
            direction = torch.where(out[:, v + 1] >= 0, 1.0, -1.0)
            out[b, v + 1] = (direction * speed_y)[b]
            out[b, 1] = torch.where(goal < above, floor - goal, out[:, 1])[b]  # above the new apex
        if present & set(_DRIFT):
            # Drift: the speed relaxes to the class's fitted (signed) speed.
            d = (motion == _DRIFT[0]) | (motion == _DRIFT[1])
            out[d, v] = relax(out[:, v], self.drift_speed[motion])[d]
        if _SPIN in present:
            # Spin: the rate relaxes to the fitted one (direction from the state).
            sp = motion == _SPIN
            rate = out[:, v + 3]
            spin_dir = torch.where(rate < 0, -1.0, 1.0)
            out[sp, v + 3] = relax(rate, spin_dir * self.spin_rate)[sp]
        # Oscillations about a centre relax to the fitted amplitude (phase kept).
        for row, (classes, c) in enumerate(OSCILLATIONS):
            if not present & set(classes):
                continue
            rows = torch.zeros_like(motion, dtype=torch.bool)
            for k in classes:
                rows |= motion == k
            centre, size = self.oscillation[row]
            moved = _relaxed_oscillation(out[:, c], out[:, v + c],
                                         self.omega[classes[0], c].clamp(min=1e-3), centre, size, keep)
            for col, value in zip((c, v + c, v + 4 + c), moved, strict=True):
                out[rows, col] = value[rows]
        # A size the world holds still is one size (its fitted centre), not the pose prior's
        # draw (which left some subjects at under half of it, too small to read) nor what the
        # shot before a prompt change left (a pulse's size at that instant).
        held = self.still[motion, 2] > 0
        out[:, 2] = torch.where(held, relax(out[:, 2], self.swing[motion, 2, 0]), out[:, 2])
        # Likewise an angle the world holds still (a resting square stands as the world's does,
        # not as a diamond), turned there on the unit circle.
        upright = (self.still[motion, 3] > 0)[:, None]
        turned = relax(out[:, 3:5], self.held_angle[motion])
        turned = turned / turned.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        out[:, 3:5] = torch.where(upright, turned, out[:, 3:5])
        # Where a subject that stays in place stays: resting at its height, spinning and
        # pulsing inside the fitted box.
        if _REST in present:
            r = motion == _REST
            out[r, 1] = relax(out[:, 1], self.rest_height)[r]
        if present & {_SPIN, _PULSE}:
            mid = (motion == _SPIN) | (motion == _PULSE)
            for c in (0, 1):
                lo, hi = self.centre_box[c]
                out[mid, c] = relax(out[:, c], torch.minimum(torch.maximum(out[:, c], lo), hi))[mid]
        return out


def _relaxed_oscillation(position: torch.Tensor, velocity: torch.Tensor, omega: torch.Tensor,
                         centre: torch.Tensor, size: torch.Tensor, keep: torch.Tensor | float
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A harmonic coordinate about `centre` at `omega` with its amplitude relaxed towards
    `size` (`keep`: the share of the difference kept), phase kept: position, velocity and
    acceleration."""
    offset = position - centre
    amplitude = torch.sqrt(offset * offset + (velocity / omega) ** 2)
    phase = torch.atan2(-velocity / omega, offset)
    goal = size + (amplitude - size) * keep
    return (centre + goal * torch.cos(phase), -goal * omega * torch.sin(phase),
            -(omega ** 2) * goal * torch.cos(phase))


def _held(key: torch.Tensor) -> torch.Tensor:
    """The unfitted law: the pose held, no motion."""
    return torch.cat([key[:, :POSE_DIM], torch.zeros_like(key[:, POSE_DIM:])], dim=-1)


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
