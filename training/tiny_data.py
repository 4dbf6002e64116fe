"""Training batches drawn from the procedural world: prompts, pictures, beats and motion.

Every draw comes from the numpy Generator passed in, so a seed reproduces the data stream.
Some color-shape pairs never appear in the generator's training data (engine.prompt's
HELD_OUT_PAIRS): the evaluation asks for exactly those, to measure generalisation rather than
recall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from engine.models.tiny.layers import (
    CANVAS,
    HI,
    POSE_DIM,
    Pose,
    composite,
    crop_sprite,
    sprite,
    squeeze_background,
    to_canvas,
)
from engine.models.tiny.modules import HISTORY, POSE_SPREAD
from engine.models.tiny.tokenizer import tokenize
from engine.models.tiny.trajectory import KEY_DIM, physical_path, trajectory_features, wrap
from engine.prompt import (
    BACKGROUNDS,
    COLORS,
    HELD_OUT_PAIRS,
    KNOWN_WORDS,
    MOTIONS,
    SHAPES,
    Scene,
    parse_prompt,
)
from engine.timeline import AUDIO_WINDOW_RATE as BEAT_FPS
from engine.timeline import audio_window, beat_phase
from engine.world import BeatSample, background, draw_subject, subject_state

COLOR_NAMES = tuple(COLORS)
SEEDS = 200  # background variety (stars, grass, waves) seen in training
_ENVELOPE_SECONDS = 70
# Pose rollout (the pushforward trick against compounding error), used by the pose refit
# (`lvp train --refit-pose`): a share of pose samples let the model draw 1..POSE_ROLLOUT
# keyframes before the one it learns, and learn the clip's pose there. From a history of the
# clip this teaches it to steer back from its own small errors; from its own start (no
# history, or another prompt's) the clip's phase is not the one it drew, so the target is a
# draw from where the world keeps the subject at that time, which pulls a drifting pose back
# in. With teacher forcing alone small pose errors compound over a long render (an orbit's
# radius grows until the subject leaves the frame); bench/pose_rollouts.py measures the drift.
# Rollouts of up to 8 keyframes keep an orbit's radius closest to the world's.
POSE_ROLLOUT = 8
ROLLOUT_SHARE = 0.5
# Larger accelerations (frame fractions per second squared) are events, not motion: a bounce's
# impact or a wrap-around inside a finite difference. The world's smooth ones stay under 6.
MAX_ACCELERATION = 20.0
# Perturbed histories (the pose refit): a share of teacher-forced samples see their history's
# motion scaled by one factor (exp of a normal with this spread: a slower orbit, a lower
# bounce) and every number jittered (normalised units, spread up to HISTORY_JITTER), and
# learn the world's clean next key. The law of motion (physics.py) keeps whatever energy a
# keyframe shows, errors included; this teaches the correction to restore the motion's own.
HISTORY_NOISE_SHARE = 0.5
HISTORY_MOTION_SCALE = 0.4
HISTORY_JITTER = 0.3
_OOV = ("shiny", "wooden", "robot", "castle", "happy", "glowing", "ancient", "tiny", "neon", "soft")


def _words(role: str, canonical: str) -> list[str]:
    return [w for w, c in KNOWN_WORDS[role].items() if c == canonical]


def prompt_for(rng: np.random.Generator, color: str | None, shape: str, motion: str | None,
               backdrop: str | None) -> str:
    """A varied English prompt for the given attributes (None: leave it unsaid)."""
    parts = ["a"] if rng.random() < 0.7 else []
    if color:
        parts.append(str(rng.choice(_words("color", color))))
    if rng.random() < 0.15:
        parts.append(str(rng.choice(_OOV)))
    parts.append(str(rng.choice(_words("shape", shape))))
    if motion in ("drifting_left", "drifting_right"):
        parts += [str(rng.choice(list(KNOWN_WORDS["drift"]))), motion.split("_")[1]]
    elif motion:
        parts.append(str(rng.choice(_words("motion", motion))))
    if backdrop:
        parts += [str(rng.choice(["on", "over", "in", "at"])), "a",
                  str(rng.choice(_words("background", backdrop)))]
    return " ".join(parts)


def random_scene_prompt(rng: np.random.Generator, held_out: bool = False) -> tuple[str, Scene]:
    """A prompt and its parsed scene; color-shape pairs are held out unless asked for."""
    while True:
        color = str(rng.choice(COLOR_NAMES))
        shape = str(rng.choice(SHAPES))
        if ((color, shape) in HELD_OUT_PAIRS) == held_out:
            break
    text = prompt_for(rng, color if rng.random() < 0.9 or color != "white" else None, shape,
                      str(rng.choice(MOTIONS)) if rng.random() < 0.9 else None,
                      str(rng.choice(BACKGROUNDS)) if rng.random() < 0.9 else None)
    return text, parse_prompt(text)


def random_envelope(rng: np.random.Generator, seconds: float = _ENVELOPE_SECONDS) -> np.ndarray:
    """A beat envelope on the BEAT_FPS grid: steady tempos, irregular onsets or silence."""
    n = int(seconds * BEAT_FPS)
    impulses = np.zeros(n, np.float32)
    kind = rng.random()
    if kind < 0.45:
        period = 60.0 / rng.uniform(60, 180)
        times = np.arange(rng.uniform(0, period), seconds, period)
        times = times + rng.normal(0, 0.01, times.shape)
    elif kind < 0.9:
        times = np.cumsum(rng.exponential(1.0 / rng.uniform(0.5, 4.0), size=int(seconds * 5)))
    else:
        times = np.zeros(0)
    times = times[(times >= 0) & (times < seconds)]
    impulses[(times * BEAT_FPS).astype(int)] = rng.uniform(0.4, 1.0, times.shape)
    kernel = np.exp(-np.arange(int(0.6 * BEAT_FPS)) / (0.1 * BEAT_FPS)).astype(np.float32)
    return np.clip(np.convolve(impulses, kernel)[:n], 0.0, 1.0)


_backgrounds: dict[tuple[str, int], np.ndarray] = {}


def background64(name: str, seed: int) -> np.ndarray:
    key = (name, seed)
    if key not in _backgrounds:
        _backgrounds[key] = background(name, HI, HI, seed).copy()
    return _backgrounds[key]


@dataclass
class Motion:
    """One clip of the world: a scene, a seed and a beat, sampled at any time."""

    scene: Scene
    seed: int
    energy: np.ndarray
    phase: np.ndarray

    def state(self, t: float):
        i = min(max(round(t * BEAT_FPS), 0), len(self.energy) - 1)
        return subject_state(self.scene, t, self.seed, BeatSample(float(self.energy[i]),
                                                                   float(self.phase[i])))

    def pose(self, t: float, angle0: float) -> np.ndarray:
        s = self.state(t)
        return Pose(s.x, s.y, s.scale, s.angle - angle0).vector()

    def key(self, t: float, angle0: float) -> np.ndarray:
        """The pose and its motion (velocity, acceleration of x, y, scale, angle) at t: what
        a keyframe carries (trajectory.KEY_DIM numbers).

        Finite differences one beat-grid step wide (the envelope's own resolution, which a
        dancing subject follows): central, unless an event (a bounce's impact, a
        wrap-around) falls inside the stencil; then the one-sided stencil that misses it."""
        h = 1.0 / BEAT_FPS
        states = [self.state(t + d * h) for d in range(-2, 3)]
        q = np.array([[s.x, s.y, s.scale, s.angle] for s in states], np.float64)
        q[:, 3] = q[2, 3] + wrap(q[:, 3] - q[2, 3])
        motion = np.zeros(8)
        for c in range(4):
            stencils = [(q[1, c], q[2, c], q[3, c]), (q[2, c], q[3, c], q[4, c]),
                        (q[0, c], q[1, c], q[2, c])]  # central, forward, backward
            fits = [((c2 - c0) / (2 * h), (c2 - 2 * c1 + c0) / (h * h)) for c0, c1, c2 in stencils]
            # One-sided stencils give the derivatives at their middle point: move them to t.
            fits[1] = (fits[1][0] - fits[1][1] * h, fits[1][1])
            fits[2] = (fits[2][0] + fits[2][1] * h, fits[2][1])
            v, a = fits[0]
            if abs(a) > MAX_ACCELERATION:
                v, a = min(fits[1:], key=lambda f: abs(f[1]))
            motion[c], motion[4 + c] = v, float(np.clip(a, -MAX_ACCELERATION, MAX_ACCELERATION))
        s = states[2]
        return np.concatenate([Pose(s.x, s.y, s.scale, s.angle - angle0).vector(),
                               motion]).astype(np.float32)

    def beat(self, t: float) -> tuple[float, float]:
        i = min(max(round(t * BEAT_FPS), 0), len(self.energy) - 1)
        return float(self.energy[i]), float(self.phase[i])


def picture(scene: Scene, seed: int, state) -> np.ndarray:
    img = background64(scene.background, seed).copy()
    draw_subject(img, scene, state)
    return img


class BatchMaker:
    """Builds every training batch; one instance per training run."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 0xDA7A])
        self.envelopes: list[tuple[np.ndarray, np.ndarray]] = []  # (energy, phase) pool

    def _envelope(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        if len(self.envelopes) < 32 or rng.random() < 0.02:
            env = random_envelope(rng)
            entry = (env, beat_phase(env, BEAT_FPS))
            if len(self.envelopes) >= 32:
                self.envelopes[int(rng.integers(len(self.envelopes)))] = entry
            else:
                self.envelopes.append(entry)
        return self.envelopes[int(rng.integers(len(self.envelopes)))]

    def motion(self, scene: Scene) -> Motion:
        env, phase = self._envelope()
        return Motion(scene, int(self.rng.integers(SEEDS)), env, phase)

    # -- Stage 1 canvas: the flow-matching target and its context slots ------------------
    def canvas_batch(self, n: int) -> dict[str, np.ndarray]:
        rng = self.rng
        ids, target, context, flags, image, env, labels = [], [], [], [], [], [], []
        for _ in range(n):
            text, scene = random_scene_prompt(rng)
            clip = self.motion(scene)
            bg64 = background64(scene.background, clip.seed)
            state0 = clip.state(rng.uniform(0, 30))
            # Scenarios: a first keyframe from the reference image (20%) or from the prompt
            # alone (35%: drawing the prompt's shape from words is the hardest part), continuing
            # a shot (30%), right after a prompt change (15%).
            kind = rng.random()
            with_image = kind < 0.2 or (0.55 <= kind < 0.85 and rng.random() < 0.3)
            angle = state0.angle if with_image else 0.0
            canvas = to_canvas(squeeze_background(bg64), sprite(scene, angle))
            prev = np.zeros_like(canvas)
            anchor = np.zeros_like(canvas)
            slot = np.zeros((6, CANVAS, CANVAS), np.float32)
            ref = np.zeros((HI, HI, 3), np.uint8)
            if with_image:
                ref = picture(scene, clip.seed, state0)
                guess = Pose(state0.x + rng.normal(0, 0.01), state0.y + rng.normal(0, 0.01),
                             state0.scale * (1 + rng.normal(0, 0.03)), 0.0)
                # The sprite-sized patch keeps the picture's own orientation (angle 0 relative).
                crop = crop_sprite(ref, guess)
                slot = np.concatenate([squeeze_background(ref), crop], -1).transpose(2, 0, 1) * 2 - 1
            if 0.55 <= kind < 0.85:  # continuing: the previous keyframe and the memory anchor
                prev = canvas + rng.normal(0, rng.uniform(0, 0.25), canvas.shape).astype(np.float32)
                if rng.random() < 0.7:
                    anchor = canvas
            elif kind >= 0.85:  # the prompt changed: context shows another scene
                _, other = random_scene_prompt(rng)
                other_bg = background64(other.background, int(rng.integers(SEEDS)))
                prev = to_canvas(squeeze_background(other_bg), sprite(other, 0.0))
                anchor = prev if rng.random() < 0.7 else anchor
            has = [float(prev.any()), float(anchor.any()), float(with_image)]
            attributes = [COLOR_NAMES.index(scene.color), SHAPES.index(scene.shape)]
            if rng.random() < 0.1:
                text = ""  # unconditional, for classifier-free guidance
                attributes = [-100, -100]  # nothing to name (cross-entropy's ignore index)
            ids.append(tokenize(text))
            labels.append(attributes)
            target.append(canvas)
            context.append(np.concatenate([prev, anchor, slot.astype(np.float32)]))
            flags.append(has)
            image.append(ref)
            env.append(audio_window(clip.energy, rng.uniform(1, 60), BEAT_FPS))
        return {"ids": np.stack(ids), "target": np.stack(target), "context": np.stack(context),
                "flags": np.array(flags, np.float32), "image": _chw(np.stack(image)),
                "envelope": np.stack(env), "attributes": np.array(labels, np.int64)}

    # -- Stage 1 pose: next keyframe pose from history and beat ----------------------------
    def pose_batch(self, n: int, rollout_share: float = 0.0, noise_share: float = 0.0
                   ) -> dict[str, np.ndarray]:
        """World poses for the pose model: the history before time t, then the clip's poses and
        beat features at t, t+1, .., t+k (zeros after). `steps` (k) says how many of those keyframes
        the trainer first lets the model draw itself (fed back as history, no gradient) before
        the one it learns: 0 (teacher forcing) except for a `rollout_share` of the samples."""
        rng = self.rng
        ids, future, history, beats, env, steps, motions = [], [], [], [], [], [], []
        for _ in range(n):
            text, scene = random_scene_prompt(rng)
            motions.append(MOTIONS.index(scene.motion))  # the law the pose model corrects
            clip = self.motion(scene)
            count = int(rng.integers(0, HISTORY + 1))
            t = 0.0 if count == 0 else float(rng.integers(count, 60))
            angle0 = clip.state(0.0).angle
            past = clip
            if count and rng.random() < 0.15:  # prompt changed since the history
                past = self.motion(random_scene_prompt(rng)[1])
                past.seed = clip.seed
            hist = np.zeros((HISTORY, KEY_DIM + 1), np.float32)
            for j in range(count):
                tj = t - (count - j)
                hist[HISTORY - count + j, :KEY_DIM] = past.key(tj, angle0 if past is clip else
                                                               past.state(0.0).angle)
                hist[HISTORY - count + j, KEY_DIM] = 1.0
            # No draw at share 0: the teacher-forced stream is the same with or without rollouts.
            # Only a history of this clip rolls out: the model's own first keyframe (or another
            # prompt's history) sets a phase the clip does not share, and learning the clip's
            # pose from there would teach the model to ignore its history.
            rolls = rollout_share > 0 and rng.random() < rollout_share and count > 0 and past is clip
            k = int(rng.integers(1, POSE_ROLLOUT + 1)) if rolls else 0
            if noise_share > 0 and count and k == 0 and rng.random() < noise_share:
                hist[:, :KEY_DIM] = _perturbed(rng, hist[:, :KEY_DIM]) * hist[:, KEY_DIM:]
            poses = np.zeros((POSE_ROLLOUT + 1, KEY_DIM), np.float32)  # only keyframes 0..k are read
            beat = np.zeros((POSE_ROLLOUT + 1, 2), np.float32)
            for j in range(k + 1):
                e, p = clip.beat(t + j)
                _, p_prev = clip.beat(t + j - 1.0)
                poses[j] = clip.key(t + j, angle0)
                beat[j] = [e, p - p_prev if count or j else 0.0]
            ids.append(tokenize(text))
            future.append(poses)
            history.append(hist.ravel())
            beats.append(beat)
            env.append(audio_window(clip.energy, t + k, BEAT_FPS))
            steps.append(k)
        return {"ids": np.stack(ids), "future": np.stack(future),
                "history": np.stack(history), "beats": np.stack(beats),
                "envelope": np.stack(env), "steps": np.array(steps, np.int64),
                "motion": np.array(motions, np.int64)}

    # -- Stage 2 trajectory: pose at any frame between keyframes ---------------------------
    def trajectory_batch(self, n: int) -> dict[str, np.ndarray]:
        rng = self.rng
        ids, feats, target, env = [], [], [], []
        for _ in range(n):
            text, scene = random_scene_prompt(rng)
            clip = self.motion(scene)
            ta = float(rng.integers(1, 60))
            u = rng.uniform(0.0, 1.0)
            angle0 = clip.state(0.0).angle
            ka, kb = clip.key(ta, angle0), clip.key(ta + 1, angle0)
            e, p = clip.beat(ta + u)
            _, p_a = clip.beat(ta)
            _, p_b = clip.beat(ta + 1)
            feats.append(trajectory_features(ka, kb, u, e, p - p_a, p_b - p_a))
            target.append(trajectory_residual(ka, kb, u, clip.pose(ta + u, angle0)))
            ids.append(tokenize(text))
            env.append(audio_window(clip.energy, ta, BEAT_FPS))
        return {"ids": np.stack(ids), "features": np.stack(feats), "target": np.stack(target),
                "envelope": np.stack(env)}

    # -- Image encoder (pose + contrastive), upsampler, evaluation probe -------------------
    def picture_batch(self, n: int, held_out: bool | None = False) -> dict[str, np.ndarray]:
        rng = self.rng
        ids, images, poses, colors, shapes = [], [], [], [], []
        for _ in range(n):
            ho = bool(rng.random() < 0.12) if held_out is None else held_out
            text, scene = random_scene_prompt(rng, held_out=ho)
            clip = self.motion(scene)
            state = clip.state(rng.uniform(0, 60))
            if held_out is None and rng.random() < 0.5:
                # Probe robustness: the layered, upsampled look of generated frames.
                layer = sprite(scene, state.angle, CANVAS)
                layer = cv2.resize(layer, (HI, HI), interpolation=cv2.INTER_LINEAR)
                img = composite(background64(scene.background, clip.seed), layer,
                                Pose(state.x, state.y, state.scale, 0.0))
            else:
                img = picture(scene, clip.seed, state)
            ids.append(tokenize(text))
            images.append(img)
            poses.append([state.x, state.y, state.scale])
            colors.append(COLOR_NAMES.index(scene.color))
            shapes.append(SHAPES.index(scene.shape))
        return {"ids": np.stack(ids), "image": _chw(np.stack(images)),
                "pose": np.array(poses, np.float32), "color": np.array(colors),
                "shape": np.array(shapes)}

    def upsample_batch(self, n: int) -> dict[str, np.ndarray]:
        rng = self.rng
        low, high = [], []
        for _ in range(n):
            _, scene = random_scene_prompt(rng)  # held-out pairs stay unseen here too
            if rng.random() < 0.5:
                bg = background64(scene.background, int(rng.integers(SEEDS)))
                lo = np.concatenate([squeeze_background(bg), np.ones((CANVAS, CANVAS, 1))], -1)
                hi = np.concatenate([bg / 255.0, np.ones((HI, HI, 1))], -1)
            else:
                angle = rng.uniform(0, 2 * math.pi)
                lo, hi = sprite(scene, angle, CANVAS), sprite(scene, angle, HI)
            low.append(lo.transpose(2, 0, 1))
            high.append(hi.transpose(2, 0, 1))
        return {"low": np.stack(low).astype(np.float32), "high": np.stack(high).astype(np.float32)}


def _perturbed(rng: np.random.Generator, keys: np.ndarray) -> np.ndarray:
    """History keys [HISTORY, KEY_DIM] with their motion scaled by one factor and jittered,
    tidied as a keyframe stores them (unit cos/sin, scale at least 0.2)."""
    keys = keys.copy()
    keys[:, POSE_DIM:] *= float(np.exp(rng.normal(0.0, HISTORY_MOTION_SCALE)))
    jitter = rng.uniform(0.0, HISTORY_JITTER)
    keys += rng.normal(0.0, jitter, keys.shape).astype(np.float32) / np.asarray(POSE_SPREAD, np.float32)
    keys[:, 3:5] /= np.maximum(np.hypot(keys[:, 3], keys[:, 4]), 1e-6)[:, None]
    keys[:, 2] = np.maximum(keys[:, 2], 0.2)
    return keys


def _chw(images: np.ndarray) -> np.ndarray:
    """[B, H, W, 3] uint8 -> [B, 3, H, W] float in [-1, 1]."""
    return images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0


def trajectory_residual(ka: np.ndarray, kb: np.ndarray, u: float, actual: np.ndarray) -> np.ndarray:
    """What the trajectory network must add to the physical path between keyframes 1 s apart
    (ka, kb: their key vectors; actual: the pose vector at u)."""
    base = physical_path(ka[None], kb[None], np.array([u]), np.array([1.0]))[0]
    angle = math.atan2(float(actual[4]), float(actual[3]))
    return np.array([actual[0] - base[0], actual[1] - base[1], actual[2] - base[2],
                     wrap(angle - base[3])], np.float32)

