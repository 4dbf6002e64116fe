"""The `tiny` backend: the bundled learned model behind the two model contracts.

Stage 1 (KeyframeModel): fuse prompt, reference image and audio; sample the next subject
pose (flow matching, conditioned on the last poses); sample the next 32x32 layered canvas
(flow matching with classifier-free guidance, conditioned on the previous canvas, the
replay memory's anchor canvas and the reference image); upsample and composite a keyframe.

Stage 2 (SegmentModel): upsample each keyframe's layers once, predict the subject's pose
at every frame (straight path between keyframes plus a learned, audio-driven correction),
then per frame only cross-fade two backgrounds and warp one sprite: a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file

from engine.dither import bayer_threshold
from engine.models.base import Keyframe, MemoryView
from engine.models.tiny.layers import (
    CANVAS,
    CANVAS_CHANNELS,
    POSE_DIM,
    Pose,
    composite,
    crop_sprite,
    from_canvas,
    squeeze_background,
)
from engine.models.tiny.modules import (
    HISTORY,
    IMAGE_SLOT,
    POSE_TEMPERATURE,
    TRAJ_SPREAD,
    TinyVideoModel,
    sample_pose,
)
from engine.models.tiny.physics import motion_class
from engine.models.tiny.state import TinyState
from engine.models.tiny.tokenizer import tokenize
from engine.models.tiny.trajectory import KEY_DIM, physical_path, trajectory_features
from engine.sprites import premultiply
from engine.timeline import AUDIO_WINDOW, KeyframePlan, SegmentPlan

SAMPLING_STEPS = 8
GUIDANCE = 4.0
# With a reference image the picture already says what to draw: guidance toward the prompt
# would pull the canvas to the prompt's average look, away from the picture.
IMAGE_GUIDANCE = 1.0
CONTEXT_NOISE = 0.1  # within the range of the training augmentation (0 to 0.25)
CONTINUE_FROM = 0.75  # flow time a continuing keyframe starts at (0: pure noise, 1: a copy)
# A continuing keyframe starts from the prompt's own canvas, which already shows the prompt:
# guidance (and its unconditional pass, half of Stage 1's time) adds nothing there.
CONTINUE_GUIDANCE = 1.0
IMAGE_SIDE = 64  # the image encoder reads 64x64 pictures
# Stage 2's trajectory correction only where the fitted law has no form (see render).
CORRECT_ONLY_FREE = True


def load_model(path: str | Path) -> TinyVideoModel:
    """A weights file as a float32 eval model; cached per file."""
    return _load(str(path))


def save_random_weights(path: Path, seed: int = 0) -> Path:
    """Randomly initialised weights in the shipped format: the contract tests' tiny model."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    save_file({k: v.contiguous() for k, v in TinyVideoModel().state_dict().items()}, str(path))
    return path


@lru_cache(maxsize=2)
def _load(file: str) -> TinyVideoModel:
    model = TinyVideoModel()
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(file).items()}
    # Weights trained before a field of the law of motion existed keep its generic value.
    own = model.state_dict()
    state |= {k: own[k] for k in own if k.startswith("law.") and k not in state}
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


def _generator(seed: int, stage: int, index: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, stage, index]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def _chw(image: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 -> [1, 3, 64, 64] float in [-1, 1] (the image encoder's input)."""
    small = cv2.resize(image, (IMAGE_SIDE, IMAGE_SIDE), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0)[None]


def pose_of(keyframe: Keyframe[TinyState]) -> np.ndarray:
    s = keyframe.state
    return Pose(s.x, s.y, s.scale, s.angle).vector()


def key_of(keyframe: Keyframe[TinyState]) -> np.ndarray:
    """The keyframe's pose and motion: [KEY_DIM] (trajectory.py)."""
    return np.concatenate([pose_of(keyframe), keyframe.state.motion]).astype(np.float32)


def upsample_layers(model: TinyVideoModel, canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, 7, 32, 32] canvases -> backgrounds [N, 64, 64, 3] and sprites [N, 64, 64, 4], 0..1."""
    layers = [from_canvas(c) for c in canvases]
    bg = np.stack([np.concatenate([b, np.ones_like(b[..., :1])], -1) for b, _ in layers])
    sp = np.stack([s for _, s in layers])
    x = torch.from_numpy(np.concatenate([bg, sp]).transpose(0, 3, 1, 2).astype(np.float32))
    with torch.inference_mode():
        up = model.upsampler(x).clamp(0, 1).numpy().transpose(0, 2, 3, 1)
    n = len(canvases)
    sprites = up[n:].copy()
    sprites[..., :3] *= sprites[..., 3:] > 0.02  # color under zero alpha is meaningless
    return up[:n, ..., :3], sprites


class TinyKeyframeModel:
    """Stage 1. One instance per job (it caches the prompt and image encodings)."""

    def __init__(self, weights: Path) -> None:
        self.model = load_model(weights)
        self._reference: tuple[np.ndarray, dict] | None = None
        self._text: tuple[str, tuple[torch.Tensor, ...]] | None = None
        self._upsampled: tuple[tuple, tuple[np.ndarray, np.ndarray]] | None = None

    def _condition(self, prompt: str, plan: KeyframePlan, image: dict | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._text is None or self._text[0] != prompt:  # encode each prompt once
            ids = torch.from_numpy(np.stack([tokenize(prompt), tokenize("")]))
            self._text = (prompt, self.model.text(ids))
        window = plan.audio_window if plan.audio_window is not None else np.zeros(AUDIO_WINDOW, np.float32)
        env = torch.from_numpy(np.repeat(window[None], 2, axis=0))
        has = torch.tensor([image is not None] * 2)
        picture = image["tokens"].expand(2, -1, -1) if image else None
        # [2, ...]: the prompt, then the unconditional (empty prompt) for guidance
        return self.model.fuse(self._text[1], picture, has, env)

    def _image(self, reference: np.ndarray | None) -> dict | None:
        """Encode the reference picture once: its tokens, the subject's pose, the canvas slot."""
        if reference is None:
            return None
        if self._reference is not None and self._reference[0] is reference:
            return self._reference[1]
        with torch.inference_mode():
            tokens, _, subject = self.model.image(_chw(reference))
        x, y, scale = subject[0].tolist()
        pose = Pose(x, y, max(scale, 0.2), 0.0)
        slot = np.concatenate([squeeze_background(reference), crop_sprite(reference, pose)], -1)
        info = {"tokens": tokens, "pose": pose,
                "slot": torch.from_numpy(slot.transpose(2, 0, 1).astype(np.float32) * 2 - 1)}
        self._reference = (reference, info)
        return info

    @torch.inference_mode()
    def next_keyframe(
        self, plan: KeyframePlan, history: Sequence[Keyframe], memory: MemoryView
    ) -> Keyframe[TinyState]:
        model = self.model
        image = self._image(plan.reference)
        gen = _generator(plan.seed, 1, plan.index)
        cond = self._condition(plan.prompt, plan, image)

        # The subject's pose: from the reference picture for the first keyframe, else sampled.
        phase_before = history[-1].state.beat_phase if history else 0.0
        motion = np.zeros(KEY_DIM - POSE_DIM, np.float32)
        if image is not None and not history:
            pose = image["pose"]
        else:
            hist = np.zeros((HISTORY, KEY_DIM + 1), np.float32)
            for j, k in enumerate(history[-HISTORY:][::-1]):
                hist[HISTORY - 1 - j] = [*key_of(k), 1.0]
            beat = [plan.beat_energy, plan.beat_phase - phase_before if history else 0.0]
            # The pose model was trained on prompt + audio only (no image tokens).
            pose_cond = self._condition(plan.prompt, plan, None)[0][:1] if image else cond[0][:1]
            # The first pose is drawn at full width: it is where seeds differ.
            temperature = POSE_TEMPERATURE if history else 1.0
            noise = temperature * torch.randn((1, KEY_DIM), generator=gen)
            drawn = sample_pose(model, noise, pose_cond, torch.from_numpy(hist.reshape(1, -1)),
                                torch.tensor([beat], dtype=torch.float32),
                                torch.tensor([motion_class(plan.prompt)]))[0].numpy()
            pose, motion = Pose.from_vector(drawn[:POSE_DIM]), drawn[POSE_DIM:]

        # Within a shot (a run of one prompt) the layers are drawn once, at its first keyframe,
        # and then held: the world's backdrop stands still and its subject is rigid, so only
        # the pose moves. Redrawing them at every keyframe (as an earlier version did, from
        # the anchor) changed the backdrop's fine texture and the sprite's edges once a
        # second, a pulse over the whole frame at every keyframe.
        # A prompt that comes back brings its remembered canvas back as it was.
        remembered = _anchor_for(plan.prompt, memory) if history else None
        if history and history[-1].prompt == plan.prompt:
            canvas = history[-1].state.canvas.astype(np.float32)
        elif remembered is not None and image is None:
            canvas = remembered.numpy()
        else:
            canvas = self._draw_canvas(plan, history, memory, image, cond, gen)

        bg, sprite = self._layers(canvas, plan.size)
        picture = composite(bg, sprite, pose)
        state = TinyState(float(pose.x), float(pose.y), float(pose.scale), float(pose.angle),
                          float(plan.beat_phase), canvas.astype(np.float16),
                          np.asarray(motion, np.float32))
        return Keyframe(plan.t, picture, plan.prompt, state)

    def _layers(self, canvas: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The canvas's backdrop at the keyframe's size and its upsampled sprite; a shot holds
        its canvas, so they are made once per shot (the same arrays as making them again)."""
        key = (canvas.tobytes(), size)
        if self._upsampled is None or self._upsampled[0] != key:
            backgrounds, sprites = upsample_layers(self.model, canvas[None])
            bg = cv2.resize((backgrounds[0] * 255 + 0.5).astype(np.uint8), size,
                            interpolation=cv2.INTER_LINEAR)
            self._upsampled = (key, (bg, sprites[0]))
        return self._upsampled[1]

    def _draw_canvas(self, plan: KeyframePlan, history: Sequence[Keyframe], memory: MemoryView,
                     image: dict | None, cond: tuple[torch.Tensor, ...],
                     gen: torch.Generator) -> np.ndarray:
        """A shot's layered canvas [7, 32, 32]: from new noise, or continued from the memory's
        canvas of a prompt that comes back."""
        model = self.model
        # The layered canvas, conditioned on the previous one and the memory's anchor. The
        # context is shown the way training showed it: while the prompt holds, the previous
        # canvas comes with a little noise (the model learned that an exact copy of the anchor
        # means "the prompt changed, start over"), and the anchor is the first remembered
        # keyframe of the current prompt (identity); right after a change to a prompt the
        # memory has not seen, the previous canvas is both context and anchor.
        empty = torch.zeros((CANVAS_CHANNELS, CANVAS, CANVAS))
        prev = _latent(history[-1]) if history else None
        anchor = _anchor_for(plan.prompt, memory)
        changed = prev is not None and history[-1].prompt != plan.prompt
        if changed and anchor is not None:
            # A prompt that comes back: the memory holds its scene; continue from there.
            prev, changed = anchor, False
        if changed:
            anchor = prev
        elif prev is not None:
            prev = prev + CONTEXT_NOISE * torch.randn(prev.shape, generator=gen)
        slot = image["slot"] if image else torch.zeros((IMAGE_SLOT, CANVAS, CANVAS))
        context = torch.cat([prev if prev is not None else empty,
                             anchor if anchor is not None else empty, slot])[None].expand(2, -1, -1, -1)
        flags = torch.tensor([[prev is not None, anchor is not None, image is not None]] * 2,
                             dtype=torch.float32)
        # Continuing a shot, sampling starts part-way along the flow from the identity
        # (the memory's anchor, else the previous canvas) instead of from pure noise
        # (SDEdit): the model redraws the keyframe but keeps the scene it already showed.
        # The canvas noise is drawn once per shot, not per keyframe: the world's backdrops
        # stand still, and fresh noise each second would redraw the backdrop a little
        # differently every keyframe (a once-a-second shimmer). A new shot gets new noise, so
        # what a returning prompt's scene looked like comes from the memory alone.
        shot_gen = _generator(plan.seed, 3, plan.shot)
        noise = torch.randn((1, CANVAS_CHANNELS, CANVAS, CANVAS), generator=shot_gen)
        start = None if changed else anchor if anchor is not None else prev
        tau0 = CONTINUE_FROM if start is not None else 0.0
        x = noise if start is None else (1 - tau0) * noise + tau0 * start[None]
        guidance = IMAGE_GUIDANCE if image is not None else \
            CONTINUE_GUIDANCE if start is not None else GUIDANCE
        # Guidance 1.0 is the conditional velocity alone: skip the unconditional half.
        rows = 1 if guidance == 1.0 else 2

        def sample(x: torch.Tensor, tau0: float) -> torch.Tensor:
            steps = max(1, round(SAMPLING_STEPS * (1 - tau0)))
            for i in range(steps):
                tau = torch.full((rows,), tau0 + (1 - tau0) * i / steps)
                v = model.canvas(x.expand(rows, -1, -1, -1), tau, *(c[:rows] for c in cond),
                                 context[:rows], flags[:rows])
                x = x + (v[:1] if rows == 1 else v[1:] + guidance * (v[:1] - v[1:])) * (1 - tau0) / steps
            return x

        x = sample(x, tau0)
        if image is not None and not history:
            # The first keyframe of an image job: the model draws the subject's sprite from the
            # picture but its backdrop's light from the noise (a scene's light is a seed's, in
            # its world). Redraw it once from the picture's own backdrop, as a continuing
            # keyframe redraws from its anchor.
            redraw = torch.cat([image["slot"][None, :3], x[:, 3:]], dim=1)
            x = sample((1 - CONTINUE_FROM) * noise + CONTINUE_FROM * redraw, CONTINUE_FROM)
        return x[0].clamp(-1, 1).numpy()


def _anchor_for(prompt: str, memory: MemoryView) -> torch.Tensor | None:
    """The identity anchor: the earliest remembered keyframe made under this prompt."""
    for entry in memory.entries:
        if entry.prompt == prompt:
            return _latent(entry)
    return None


def _latent(keyframe: Keyframe[TinyState]) -> torch.Tensor:
    return torch.from_numpy(keyframe.state.canvas.astype(np.float32))


class TinySegmentModel:
    """Stage 2: whole segments at full frame rate and resolution."""

    def __init__(self, weights: Path) -> None:
        self.model = load_model(weights)

    def _interval_condition(self, plan: SegmentPlan, target: Keyframe) -> torch.Tensor:
        """One condition per interval: the prompt and audio window of the keyframe it leads to."""
        cue = plan.cue_at(target.t)
        with torch.inference_mode():
            return self.model.condition(torch.from_numpy(tokenize(cue.prompt)[None]), None,
                                        torch.zeros(1, dtype=torch.bool),
                                        torch.from_numpy(cue.audio_window[None]))[0]

    def render(
        self, plan: SegmentPlan, keyframes: Sequence[Keyframe[TinyState]], memory: MemoryView
    ) -> np.ndarray:
        model = self.model
        width, height = plan.width, plan.height
        keys = np.stack([key_of(k) for k in keyframes])
        times = np.array([k.t for k in keyframes])
        frame_times = plan.frame_times()
        # Every frame's interval a -> b (b = a at a single-keyframe segment), u in seconds
        # since keyframe a (the models were trained on keyframes 1 s apart; only a video's
        # last keyframe can be closer), and w, its position inside the interval in [0, 1].
        n = len(keyframes)
        a_of = np.clip(np.searchsorted(times, frame_times, side="right") - 1, 0, max(n - 2, 0))
        b_of = np.minimum(a_of + 1, n - 1)
        u_of = frame_times - times[a_of]
        span = np.maximum(times[b_of] - times[a_of], 1e-6)
        w_of = np.where(b_of != a_of, np.clip(u_of / span, 0.0, 1.0), 0.0)

        # Context keyframes beyond the frames' intervals lend only their poses: no upsampled
        # layers for them (the upsampler is most of Stage 2's model time).
        drawn = sorted(set(a_of.tolist()) | set(b_of.tolist()))
        # The keyframes of one shot share their canvas (Stage 1 holds it): each distinct
        # canvas is upsampled once, and between two keyframes that share it nothing fades.
        canvas_of: dict[bytes, int] = {}
        owner = {i: canvas_of.setdefault(keyframes[i].state.canvas.tobytes(), len(canvas_of))
                 for i in drawn}
        distinct = [next(keyframes[i].state.canvas for i in drawn if owner[i] == j)
                    for j in range(len(canvas_of))]
        backgrounds, sprites = upsample_layers(model, np.stack(distinct))
        full_bg = {i: np.clip(cv2.resize(backgrounds[owner[i]], (width, height),
                                         interpolation=cv2.INTER_CUBIC) * 255.0, 0, 255
                              ).astype(np.float32) for i in drawn}
        layers = {i: premultiply(sprites[owner[i]]) for i in drawn}
        # Ordered dithering for the cross-fade: plain rounding flips every pixel whose two
        # backgrounds differ by one level at the same instant, a whole-frame flicker.
        threshold = bayer_threshold(height, width)
        held = {i: np.minimum(full_bg[i] + threshold, 255.0).astype(np.uint8) for i in drawn}

        phases = [plan.cue_at(k.t).beat_phase for k in keyframes]

        def features(a: int, b: int, u: float, energy: float, phase: float) -> np.ndarray:
            return trajectory_features(keys[a], keys[b],
                                       min(max(u, 0.0), 1.0),  # the range the network was trained on
                                       energy, phase - phases[a], phases[b] - phases[a])

        # The correction is for what the law of motion has no form for (a dancing subject's
        # hops on the beat). What the fitted law keeps still (a resting subject's place, a
        # spinning one's size) stays still between keyframes, and what it moves (an orbit, a
        # bounce, a pulse, a resting subject's slow breathing) follows the physical path
        # through the keyframes' own motion: a correction there changed its slope at every
        # keyframe (a kink once a second on calm prompts). Without any, the network is skipped.
        law = model.law
        free = (1.0 - law.still.numpy()) * (1.0 - law.moves.numpy() if CORRECT_ONLY_FREE else 1.0)
        classes = {i: motion_class(plan.cue_at(keyframes[i].t).prompt) for i in set(b_of.tolist())}
        mask = np.stack([free[classes[b]] for b in b_of.tolist()]).astype(np.float32)
        mask[b_of == a_of] = 0.0  # a single keyframe: hold its pose
        residual = np.zeros((plan.num_frames, 4), np.float32)
        if mask.any():
            rows, conds = [], []
            cond_cache: dict[int, torch.Tensor] = {}
            for i, (a, b, u) in enumerate(zip(a_of.tolist(), b_of.tolist(), u_of.tolist(), strict=True)):
                rows.append(features(a, b, u, float(plan.beat_energy[i]), float(plan.beat_phase[i])))
                if a not in cond_cache:
                    cond_cache[a] = self._interval_condition(plan, keyframes[b])
                conds.append(cond_cache[a])
            # The same network at both ends of every interval used: what it adds at the keyframes.
            intervals = sorted(cond_cache)
            for a in intervals:
                b = min(a + 1, n - 1)
                for k in (a, b):
                    cue = plan.cue_at(keyframes[k].t)
                    rows.append(features(a, b, float(times[k] - times[a]), cue.beat_energy,
                                         cue.beat_phase))
                    conds.append(cond_cache[a])
            with torch.inference_mode():
                out = model.trajectory(torch.from_numpy(np.stack(rows)), torch.stack(conds)).numpy()
            out /= np.array(TRAJ_SPREAD, np.float32)
            ends = out[plan.num_frames:].reshape(len(intervals), 2, 4)
            # Keyframe poses are exact: subtract the straight line between what the network adds
            # at the interval's two keyframes. The correction's slope survives (unlike fading it
            # out), so the subject keeps its speed through a keyframe instead of turning along a
            # chord.
            at = np.searchsorted(intervals, a_of)
            residual = out[:plan.num_frames] - (1 - w_of)[:, None] * ends[at, 0] - w_of[:, None] * ends[at, 1]
            residual *= mask

        # The physical path between keyframes (trajectory.py), the network's correction on top.
        single = b_of == a_of
        path = physical_path(keys[a_of], keys[b_of], np.where(single, 0.0, u_of),
                             np.where(single, 1.0, span)) + residual

        frames = np.empty((plan.num_frames, height, width, 3), np.uint8)
        for i, (a, b, w) in enumerate(zip(a_of.tolist(), b_of.tolist(), w_of.tolist(), strict=True)):
            x, y, scale, angle = path[i].tolist()
            pose = Pose(x, y, max(scale, 0.2), angle)
            if w == 0.0 or owner[a] == owner[b]:
                bg, layer = held[a], layers[a]  # paste draws on a copy
            else:
                mix = cv2.addWeighted(full_bg[a], 1 - w, full_bg[b], w, 0.0)
                bg = np.minimum(mix + threshold, 255.0).astype(np.uint8)
                # Cross-fade the two keyframes' sprites in premultiplied space (mixes linearly).
                layer = cv2.addWeighted(layers[a], 1 - w, layers[b], w, 0.0)
            frames[i] = composite(bg, layer, pose, premultiplied=True)
        return frames
