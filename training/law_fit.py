"""Fit the law of motion's numbers (engine/models/tiny/physics.py: MotionLaw) to the world's
clips: a step of `lvp train` (and of the refit, for weights without a fitted law).

Each motion class gets clips of the procedural world (random scenes, seeds, beats and times),
read as a keyframe reads them (tiny_data.Motion.key: pose, velocity, acceleration) at a time t
and one second later. The numbers are chosen by what predicts the clip one second on or by
plain statistics of the clips' keys:

  omega, moves    per class and coordinate: of holding still, constant velocity and a harmonic
                  law at each angular frequency on a grid, the one with the lowest median error
                  one second on; a coordinate moves when that beats holding it by MOVE_GAIN
  still           per class and coordinate: its median change over a second is below STILL
  gravity, floor  the bouncing class's median vertical acceleration; the floor on a grid, by
                  the ballistic law's median error one second on; the bounce's height: the
                  median apex (energy) above the floor
  wrap            the drifting classes' range of x (the unbiased range of a uniform sample)
  drift_speed     per class, the median horizontal velocity
  orbit           the mean position, the median radius about it, the median angular speed
  spin_rate       the spinning class's median rate of turn
  oscillation     centre and amplitude of the pulse, a drift's bob, a bounce's sway (harmonic
                  with the fitted angular frequency)
  rest_height     the resting class's median height
  centre_box      the range of a spinning or pulsing subject's position
  held_angle      per class whose angle stays still, the direction it holds (mean cos, sin)
  box, swing      per class, the range of x and y; centre and amplitude of every harmonic
                  coordinate (for MotionLaw.tidy)
  rate, sweep     per class, the median velocity of x, y, scale and angle; the orbit's sweep

It reads the world only through its clips (what the trainer reads too), never its constants.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.models.tiny.layers import POSE_DIM
from engine.models.tiny.physics import _DRIFT, OSCILLATIONS, MotionLaw
from engine.prompt import BACKGROUNDS, MOTIONS, parse_prompt
from training.tiny_data import BatchMaker, prompt_for, random_scene_prompt

CLIPS_PER_CLASS = 400
OMEGA_GRID = np.linspace(0.02, 25.0, 1250)  # rad/s
MOVE_GAIN = 2.0  # a coordinate moves when the best law errs less than holding it by this factor
STILL = 0.002  # a coordinate whose median change over a second is below this (frame units, radians) is still
FLOOR_GRID = np.linspace(0.3, 1.2, 901)


def law_samples(seed: int, per_class: int = CLIPS_PER_CLASS) -> dict[str, np.ndarray]:
    """Keys [C, N, KEY_DIM] of world clips at a random time t and at t + 1 s, per class."""
    maker = BatchMaker(seed)
    rng = np.random.default_rng([seed, 0x1A3])
    now, later = [], []
    for motion in MOTIONS:
        k0, k1 = [], []
        for _ in range(per_class):
            _, scene = random_scene_prompt(rng)
            text = prompt_for(rng, scene.color, scene.shape, motion, str(rng.choice(BACKGROUNDS)))
            clip = maker.motion(parse_prompt(text))
            t = float(rng.uniform(1.0, 60.0))
            angle0 = clip.state(0.0).angle
            k0.append(clip.key(t, angle0))
            k1.append(clip.key(t + 1.0, angle0))
        now.append(np.stack(k0))
        later.append(np.stack(k1))
    return {"now": np.stack(now), "later": np.stack(later)}


def _harmonic_error(p, v, a, p1, omegas):
    """Median |error| one second on of a harmonic law at each omega [W] -> [W]."""
    w = omegas[:, None]
    centre = p + a / (w * w)
    pred = centre + (p - centre) * np.cos(w) + v / w * np.sin(w)
    return np.median(np.abs(pred - p1), axis=1)


def _angle(k: np.ndarray) -> np.ndarray:
    return np.arctan2(k[:, 4], k[:, 3])


def _wrapped(d: np.ndarray) -> np.ndarray:
    return (d + np.pi) % (2 * np.pi) - np.pi


def fit_law(samples: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The law's numbers (MotionLaw buffers) fitted to `law_samples`."""
    now, later = samples["now"].astype(np.float64), samples["later"].astype(np.float64)
    c_count = len(MOTIONS)
    v0, a0 = POSE_DIM, POSE_DIM + 4
    omega = np.zeros((c_count, 3))
    moves = np.zeros((c_count, 4))
    still = np.zeros((c_count, 4))
    for c in range(c_count):
        k0, k1 = now[c], later[c]
        for j in range(3):
            p, v, a, p1 = k0[:, j], k0[:, v0 + j], k0[:, a0 + j], k1[:, j]
            hold = np.median(np.abs(p1 - p))
            linear = np.median(np.abs(p + v - p1))
            harmonic = _harmonic_error(p, v, a, p1, OMEGA_GRID)
            best = int(np.argmin(harmonic))
            if harmonic[best] < linear:
                omega[c, j], err = OMEGA_GRID[best], harmonic[best]
            else:
                omega[c, j], err = 0.0, linear
            moves[c, j] = float(err * MOVE_GAIN < hold)
            still[c, j] = float(hold < STILL)
        turn_hold = np.median(np.abs(_wrapped(_angle(k1) - _angle(k0))))
        turn_rate = np.median(np.abs(_wrapped(_angle(k0) + k0[:, v0 + 3] - _angle(k1))))
        moves[c, 3] = float(turn_rate * MOVE_GAIN < turn_hold)
        still[c, 3] = float(turn_hold < STILL)

    bounce = MOTIONS.index("bouncing")
    kb, kb1 = now[bounce], later[bounce]
    gravity = float(np.median(kb[:, a0 + 1]))
    law = MotionLaw()
    law.load_fit({"gravity": [gravity]})
    y, vy = torch.tensor(kb[:, 1], dtype=torch.float32), torch.tensor(kb[:, v0 + 1], dtype=torch.float32)
    errors = []
    for floor in FLOOR_GRID:
        law.floor.fill_(float(floor))
        if float(y.max()) > floor + 1e-6:  # the floor is below every centre seen
            errors.append(np.inf)
            continue
        y1, _ = law._ballistic(y, vy, 1.0)
        errors.append(float(np.median(np.abs(y1.numpy() - kb1[:, 1]))))
    floor = float(FLOOR_GRID[int(np.argmin(errors))])
    bounce_height = float(np.median(floor - kb[:, 1] + kb[:, v0 + 1] ** 2 / (2 * gravity)))

    xs = np.concatenate([now[d][:, 0] for d in _DRIFT])
    n = len(xs)
    span = (xs.max() - xs.min()) * (n + 1) / (n - 1)
    low = xs.min() - (span - (xs.max() - xs.min())) / 2
    drift_speed = np.zeros(c_count)
    for d in _DRIFT:
        drift_speed[d] = np.median(now[d][:, v0])

    orbit_class = MOTIONS.index("orbiting")
    ko = now[orbit_class]
    # The centre a harmonic motion swings about: position + acceleration / omega^2.
    cx, cy = (float(np.median(ko[:, j] + ko[:, a0 + j] / max(omega[orbit_class, j], 1e-3) ** 2))
              for j in (0, 1))
    dx, dy = ko[:, 0] - cx, ko[:, 1] - cy
    radius = np.median(np.hypot(dx, dy))
    angular = np.median(np.abs(dx * ko[:, v0 + 1] - dy * ko[:, v0]) / np.maximum(dx * dx + dy * dy, 1e-9))

    spin_rate = float(np.median(np.abs(now[MOTIONS.index("spinning")][:, v0 + 3])))

    oscillation = np.zeros((len(OSCILLATIONS), 2))
    for row, (classes, j) in enumerate(OSCILLATIONS):
        k = np.concatenate([now[c] for c in classes])
        w = max(omega[classes[0], j], 1e-3)
        centres = k[:, j] + k[:, a0 + j] / (w * w)
        centre = float(np.median(centres))
        amplitude = float(np.median(np.hypot(k[:, j] - centre, k[:, v0 + j] / w)))
        oscillation[row] = [centre, amplitude]

    rest_height = float(np.median(now[MOTIONS.index("resting")][:, 1]))
    # The angle each class holds where it holds one: the clips' mean direction (unturned
    # where the angle moves, so the mean says nothing).
    held_angle = np.tile([1.0, 0.0], (c_count, 1))
    for c in range(c_count):
        direction = now[c][:, 3:5].mean(axis=0)
        if still[c, 3] and np.hypot(*direction) > 0.5:
            held_angle[c] = direction / np.hypot(*direction)
    mid = np.concatenate([now[MOTIONS.index("spinning")], now[MOTIONS.index("pulsing")]])
    centre_box = np.array([[mid[:, c].min(), mid[:, c].max()] for c in (0, 1)])
    box = np.stack([[[now[c][:, j].min(), now[c][:, j].max()] for j in (0, 1)] for c in range(c_count)])
    swing = np.zeros((c_count, 3, 2))
    swing[:, :, 0] = [0.5, 0.5, 1.0]  # no oscillation: the middle, the base size
    for c in range(c_count):
        for j in range(3):
            if omega[c, j] > 0:
                k = now[c]
                centre = float(np.median(k[:, j] + k[:, a0 + j] / omega[c, j] ** 2))
                amplitude = np.hypot(k[:, j] - centre, k[:, v0 + j] / omega[c, j])
                swing[c, j] = [centre, float(np.median(amplitude))]
    rate = np.array([[np.median(now[c][:, v0 + j]) for j in range(4)] for c in range(c_count)])
    sweep = float(np.sign(np.median(dx * ko[:, v0 + 1] - dy * ko[:, v0])))
    values = {"rate": rate, "sweep": [sweep], "box": box, "swing": swing, "omega": omega,
              "moves": moves, "still": still,
              "gravity": [gravity], "floor": [floor],
              "bounce_height": [bounce_height], "wrap": [low, span], "drift_speed": drift_speed,
              "orbit": [cx, cy, radius, angular], "spin_rate": [spin_rate],
              "oscillation": oscillation, "rest_height": [rest_height], "centre_box": centre_box,
              "held_angle": held_angle}
    return {k: torch.as_tensor(np.asarray(v, np.float64), dtype=torch.float32) for k, v in values.items()}


def fitted_law(seed: int) -> dict[str, torch.Tensor]:
    """`fit_law(law_samples(seed))`: what `lvp train` loads into the model's MotionLaw."""
    return fit_law(law_samples(seed))
