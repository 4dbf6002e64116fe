"""The bundled model's own stillness, before any encoding: on calm prompts, the keyframe step
ratio (mean frame step onto a model keyframe over the mean step elsewhere) and the background
flicker of Stage 2's frames, with Stage 1 and Stage 2 CPU seconds. In this process, no Ray.

    python -m bench.model_stillness [--seconds 10] [--weights FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.models.base import BackendConfig, create_backend
from engine.schedule import PromptSchedule
from engine.spec import JobSpec
from engine.stages import KeyframeStage, SegmentStage
from engine.timeline import BeatTrack, Timeline
from memory.replay import ReplayMemory
from stitcher.quality import background_flicker, every, step_ratio

PROMPTS = ["a green circle resting on an ocean background", "a red star spinning on a night background",
           "a yellow circle pulsing on a meadow background", "a cyan square orbiting on a meadow background"]


def measure(prompt: str, seconds: float, weights: Path | None) -> dict:
    config = BackendConfig(weights=weights) if weights else None
    spec = JobSpec(schedule=PromptSchedule.single(prompt), duration=seconds, fps=30, width=256,
                   height=256, seed=101, overlap=0, model="tiny", weights=weights)
    timeline = Timeline(spec, BeatTrack.metronome(spec.total_frames, spec.fps))
    frames, stage1, stage2 = [], 0.0, 0.0
    with tempfile.TemporaryDirectory() as tmp, ReplayMemory(Path(tmp)) as memory:
        keyframes = KeyframeStage(timeline, create_backend("tiny", config), memory)
        segments = SegmentStage(create_backend("tiny", config))
        for k in range(timeline.num_segments):
            start = time.process_time()
            keys = keyframes.run_segment(k)
            stage1 += time.process_time() - start
            start = time.process_time()
            frames.append(segments.render(timeline.segment(k), keys).frames)
            stage2 += time.process_time() - start
    video = np.concatenate(frames)[: spec.total_frames]
    return {"keyframe_step_ratio": round(step_ratio(video, every(spec.fps, len(video))), 3),
            "flicker": round(background_flicker(video), 4), "stage1_cpu_s": round(stage1, 2),
            "stage2_cpu_s": round(stage2, 2), "frames": len(video)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--weights", type=Path, help="tiny weights (default: the bundled ones)")
    args = parser.parse_args()
    results = {}
    for prompt in PROMPTS:
        results[prompt] = measure(prompt, args.seconds, args.weights)
        print(prompt, results[prompt], flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
