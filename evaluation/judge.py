"""The evaluation judge: which color and which shape a picture's subject has.

`lvp eval` reads generated frames with this classifier. It is trained on the procedural
world's pictures only (never on a model's output), with the variety generated frames show:
the subject at 0.45 to 1.5 times its usual size, any angle and place, soft edges (blur,
noise, the tiny model's layered-and-upsampled look), every backdrop, every color-shape
pair. It has its own weights file, apart from the generator's, so the yardstick does not
move when the generator is retrained; `python -m bench.judge_accuracy` checks it on
ground truth.

    python -m evaluation.judge --steps 1500 --seed 0   # remakes evaluation/weights/judge.safetensors
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from engine.prompt import BACKGROUNDS, COLORS, SHAPES, Scene
from engine.sprites import draw_sprite, paste
from engine.world import BeatSample, SubjectState, background, draw_subject, subject_state

JUDGE_WEIGHTS = Path(__file__).parent / "weights" / "judge.safetensors"
# The judge's own input size, fixed with its weights: every picture is resized to 64x64 first.
SIDE = 64
COLOR_NAMES = tuple(COLORS)
# The tiny model's look, which the judge also trains on: its subject is a 32x32 sprite layer
# (radius 10 pixels at scale 1), upsampled to 64x64 and warped into the frame. The geometry is
# the judge's own (the world's sprite primitives take it as arguments), so the judge never
# depends on the generator and retraining or reshaping it cannot move the yardstick.
_SPRITE_SIDE = 32
_SPRITE_RADIUS = 10.0
_LAYER_SIDE = 64


def to_input(pictures: list[np.ndarray]) -> np.ndarray:
    """RGB uint8 pictures of any size -> [N, 3, 64, 64] float32 in [-1, 1]."""
    small = np.stack([cv2.resize(p, (SIDE, SIDE), interpolation=cv2.INTER_AREA) for p in pictures])
    return small.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0


def world_picture(rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """One randomised world picture at 64x64 with its color and shape indices."""
    color, shape = int(rng.integers(len(COLORS))), int(rng.integers(len(SHAPES)))
    scene = Scene(COLOR_NAMES[color], SHAPES[shape], "resting", str(rng.choice(BACKGROUNDS)))
    side = int(rng.choice([64, 96, 128]))
    img = background(scene.background, side, side, int(rng.integers(1000))).copy()
    x, y = rng.uniform(0.15, 0.85, 2)
    scale, angle = float(rng.uniform(0.45, 1.5)), float(rng.uniform(0, 2 * math.pi))
    if rng.random() < 0.5:
        draw_subject(img, scene, SubjectState(float(x), float(y), scale, angle))
    else:  # the tiny model's look: a small sprite layer, upsampled, warped in
        layer = cv2.resize(draw_sprite(scene, 0.0, _SPRITE_SIDE, _SPRITE_RADIUS),
                           (_LAYER_SIDE, _LAYER_SIDE), interpolation=cv2.INTER_LINEAR)
        radius = _SPRITE_RADIUS * _LAYER_SIDE / _SPRITE_SIDE  # the subject's radius in the layer
        img = paste(img, layer, SubjectState(float(x), float(y), scale, angle), radius)
    img = cv2.resize(img, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.6:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.5:
        noise = rng.normal(0.0, rng.uniform(0.0, 4.0), img.shape)
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img, color, shape


def validation_pictures(count: int, seed: int) -> tuple[list[np.ndarray], list[tuple[str, str]]]:
    """Ground truth for checking the judge: world pictures at 128x128, drawn as the world draws
    them, subject size 0.6-1.2 and any angle; (color, shape) names for each."""
    rng = np.random.default_rng(seed)
    pictures, truth = [], []
    for i in range(count):
        scene = Scene(list(COLORS)[rng.integers(len(COLORS))], SHAPES[i % len(SHAPES)], "orbiting",
                      BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
        img = background(scene.background, 128, 128, int(rng.integers(1000))).copy()
        where = subject_state(scene, float(rng.uniform(0, 60)), i, BeatSample())
        draw_subject(img, scene, SubjectState(where.x, where.y, float(rng.uniform(0.6, 1.2)),
                                              float(rng.uniform(0, 2 * np.pi))))
        pictures.append(img)
        truth.append((scene.color, scene.shape))
    return pictures, truth


def make_judge():
    """A small CNN: 64x64 picture -> color logits, shape logits."""
    import torch
    from torch import nn

    def block(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2), nn.GroupNorm(8, cout),
                             nn.SiLU())

    class JudgeNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(block(3, 32, 5, 2), block(32, 48, 3, 1), block(48, 64, 3, 2),
                                          block(64, 96, 3, 2), block(96, 128, 3, 1))
            self.color = nn.Linear(256, len(COLORS))
            self.shape = nn.Linear(256, len(SHAPES))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            f = self.features(x)
            # Max pooling finds the subject wherever it is; the mean adds context.
            pooled = torch.cat([f.amax((2, 3)), f.mean((2, 3))], 1)
            return self.color(pooled), self.shape(pooled)

    return JudgeNet()


class Judge:
    """Color and shape names for pictures, from the shipped judge weights."""

    def __init__(self, path: Path | None = None) -> None:
        import torch
        from safetensors.torch import load_file

        path = path or JUDGE_WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(f"judge weights not found: {path} (make them with "
                                    "`python -m evaluation.judge`)")
        self.torch = torch
        self.model = make_judge()
        self.model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
        self.model.eval().requires_grad_(False)

    def classify(self, pictures: list[np.ndarray]) -> tuple[list[str], list[str]]:
        x = self.torch.from_numpy(to_input(pictures))
        with self.torch.inference_mode():
            color, shape = self.model(x)
        return ([COLOR_NAMES[i] for i in color.argmax(1).tolist()],
                [SHAPES[i] for i in shape.argmax(1).tolist()])


def train(steps: int, seed: int, out: Path, batch: int = 96, log=print) -> dict:
    import torch
    import torch.nn.functional as F

    from training.weights import save_weights

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 0x7D6E])
    model = make_judge()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    # Step-based cosine schedule: the same command gives the same weights on any machine.
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5
                                              * (1.0 + math.cos(math.pi * min(i / steps, 1.0))))
    start = time.perf_counter()
    for step in range(steps):
        drawn = [world_picture(rng) for _ in range(batch)]
        x = torch.from_numpy(to_input([d[0] for d in drawn]))
        color = torch.tensor([d[1] for d in drawn])
        shape = torch.tensor([d[2] for d in drawn])
        c, s = model(x)
        loss = F.cross_entropy(c, color) + F.cross_entropy(s, shape)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"step {step}/{steps} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
    manifest = {"command": f"python -m evaluation.judge --steps {steps} --seed {seed}", "steps": steps,
                "seed": seed, "batch": batch, "seconds": round(time.perf_counter() - start)}
    return save_weights(model, out, manifest, name="lvp-judge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.judge",
                                     description="Train the evaluation judge on world pictures.")
    parser.add_argument("--steps", type=int, default=1500,
                        help="training steps (default: 1500, about 10 minutes on 2 cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=JUDGE_WEIGHTS,
                        help=f"weights file to write (default: {JUDGE_WEIGHTS})")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.exit(2, "error: --steps must be 1 or more\n")
    import torch

    torch.set_num_threads(args.threads)
    train(args.steps, args.seed, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
