"""The pose model running free, beside the world it learned from.

    python -m bench.pose_rollouts [--weights A.safetensors B.safetensors ...] [--keyframes 120]

Stage 1 feeds each sampled pose back as history for the next keyframe, so small errors can
compound over a long render (the orbit that spiralled out of the frame in an earlier model).
This samples poses alone, as `next_keyframe` does (temperature 1.0 for the first, 0.25 after;
no audio), for one prompt per motion and 4 starts, and prints per motion: the share of
keyframes whose subject center is inside the frame, the mean step between keyframes and the
mean distance from the frame's center in the last half, each beside the world's own. Several
weights files are compared side by side (default: the shipped weights).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from engine.models.tiny import WEIGHTS
from engine.models.tiny.modules import HISTORY, POSE_TEMPERATURE, sample_pose
from engine.models.tiny.physics import motion_class
from engine.models.tiny.pipeline import load_model
from engine.models.tiny.tokenizer import tokenize
from engine.models.tiny.trajectory import KEY_DIM
from engine.prompt import parse_prompt
from engine.timeline import AUDIO_WINDOW
from engine.world import subject_state

PROMPTS = (
    "a cyan square orbiting on a meadow background",
    "a red star bouncing on a night background",
    "a blue circle drifting left over a sunset",
    "a green triangle spinning in the ocean",
    "a white circle pulsing over a desert",
)
STARTS = 4
MARGIN = 0.08  # a subject center this close to the edge is half out of the frame


def statistics(xy: np.ndarray) -> tuple[float, float, float]:
    """[starts, keyframes, 2] centers -> in-frame share, mean step, late distance from center."""
    inside = ((xy > MARGIN) & (xy < 1 - MARGIN)).all(-1).mean()
    step = np.linalg.norm(np.diff(xy, axis=1), axis=-1).mean()
    late = np.linalg.norm(xy[:, xy.shape[1] // 2:] - 0.5, axis=-1).mean()
    return float(inside), float(step), float(late)


def world_centers(prompt: str, keyframes: int) -> np.ndarray:
    scene = parse_prompt(prompt)
    return np.array([[[(s := subject_state(scene, float(t), seed)).x, s.y] for t in range(keyframes)]
                     for seed in range(STARTS)])


@torch.inference_mode()
def model_centers(weights: str | None, prompt: str, keyframes: int) -> np.ndarray:
    model = load_model(weights or WEIGHTS)
    cond = model.condition(torch.from_numpy(tokenize(prompt)[None]), None, torch.zeros(1, dtype=torch.bool),
                           torch.zeros((1, AUDIO_WINDOW)))
    runs = []
    for start in range(STARTS):
        gen = torch.Generator().manual_seed(start)
        history, centers = torch.zeros((HISTORY, KEY_DIM + 1)), []
        for k in range(keyframes):
            noise = (POSE_TEMPERATURE if k else 1.0) * torch.randn((1, KEY_DIM), generator=gen)
            pose = sample_pose(model, noise, cond, history.reshape(1, -1), torch.zeros((1, 2)),
                               torch.tensor([motion_class(prompt)]))[0]
            history = torch.cat([history[1:], torch.cat([pose, torch.ones(1)])[None]])
            centers.append(pose[:2].tolist())
        runs.append(centers)
    return np.array(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="*", default=[None], help="safetensors files (default: shipped)")
    parser.add_argument("--keyframes", type=int, default=120, help="keyframes per start (1 per second)")
    args = parser.parse_args()
    names = ["world"] + [w or "shipped" for w in args.weights]
    print(f"{'motion':<15}{'source':<28}{'in frame':>9}{'step':>8}{'late r':>8}")
    for prompt in PROMPTS:
        motion = parse_prompt(prompt).motion
        sources = [world_centers(prompt, args.keyframes)]
        sources += [model_centers(w, prompt, args.keyframes) for w in args.weights]
        for name, xy in zip(names, sources, strict=True):
            inside, step, late = statistics(xy)
            print(f"{motion:<15}{name[-27:]:<28}{inside:>9.2f}{step:>8.3f}{late:>8.2f}")
    print(f"({STARTS} starts x {args.keyframes} keyframes; in frame: center at least {MARGIN} from "
          "every edge; late r: mean distance from the frame's center over the last half)")


if __name__ == "__main__":
    main()
