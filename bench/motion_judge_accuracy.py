"""How well `lvp eval`'s motion judge reads the world, and the motion table for a model beside
the procedural oracle.

    python -m bench.motion_judge_accuracy                  # about 15 minutes on 2 cores
    python -m bench.motion_judge_accuracy --clips 4 --quick --minutes 1  # a few minutes

Part 1: the judge on ground truth. World clips it was never tuned on (every motion, a random
color, shape and backdrop each, seeds from 20000; 10 s at 128x128 and 15 fps, the clips
`lvp eval` renders), as drawn and blurred (sigma 1 px, about the tiny model's softness): how
often the classifier names the motion, how far the tracker's positions are from the world's
(frames where both see the subject whole), and each defining measure's median and worst
relative error against the world's own measure of the same clip.

Part 2: `lvp eval`'s motion step (evaluation/evaluate.py `motion_fidelity`: every motion on
the held-out color-shape pairs, three takes, or one with --quick) for each model, per motion:
the share of clips named right and each defining measure's median, beside the world's.

Part 3: what 10-second clips cannot show. Orbiting and drifting left and right, 2 minutes
each (5 fps) for two held-out pairs: the orbit's radius over 20-second windows, and how
often a drifting subject wraps around or jumps back, beside the world's own track.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np

from engine.prompt import BACKGROUNDS, COLORS, MOTIONS, SHAPES, Scene
from evaluation import motion

SEED = 20000


def world_accuracy(per_motion: int, blur: float) -> dict:
    rng = np.random.default_rng([SEED, int(blur * 10)])
    results, errors = [], []
    for k in range(per_motion * len(MOTIONS)):
        scene = Scene(str(rng.choice(list(COLORS))), str(rng.choice(SHAPES)), MOTIONS[k % len(MOTIONS)],
                      str(rng.choice(BACKGROUNDS)))
        seed = SEED + k
        frames, energy, phase = motion.world_clip(scene, seed)
        if blur:
            frames = np.stack([cv2.GaussianBlur(f, (0, 0), blur) for f in frames])
        track = motion.track(frames, scene.color, 15)
        world = motion.world_track(scene, seed, 15, len(frames), 128, 128, energy, phase)
        whole = track.visible & world.visible & ~track.clipped & ~world.clipped
        errors += np.hypot(track.x[whole] - world.x[whole], track.y[whole] - world.y[whole]).tolist()
        judged = motion.measure(track, energy)
        results.append(motion.ClipResult(scene.describe(), scene.motion, motion.classify(judged), judged,
                                         motion.measure(world, energy)))
    return {"results": results, "errors": np.array(errors)}


def print_world(per_motion: int) -> None:
    start = time.perf_counter()
    runs = {blur: world_accuracy(per_motion, blur) for blur in (0.0, 1.0)}
    print(f"Part 1: the motion judge on {per_motion * len(MOTIONS)} world clips per column "
          f"({per_motion} per motion), {time.perf_counter() - start:.0f} s\n")
    print(f"{'motion':<16}{'named right, as drawn':>24}{'blurred (sigma 1 px)':>24}")
    for m in (*MOTIONS, "all"):
        row = f"{m:<16}"
        for run in runs.values():
            hits = [r.named == r.motion for r in run["results"] if m in ("all", r.motion)]
            row += f"{np.mean(hits):>24.3f}"
        print(row)
    print(f"\n{'tracker position error (frames)':<40}{'as drawn':>12}{'blurred':>12}")
    for label, q in (("median", 50), ("95th percentile", 95), ("worst", 100)):
        print(f"{label + ', px at 128x128':<40}"
              + "".join(f"{np.percentile(r['errors'], q) * 128:>12.2f}" for r in runs.values()))
    print(f"\n{'defining measure, error vs the world':<40}{'median / worst, drawn':>24}{'blurred':>24}")
    for name, (motions, key) in motion.ERRORS.items():
        cells = []
        for run in runs.values():
            clips = [r for r in run["results"] if r.motion in motions]
            if key == "drift_wraps":
                cells.append(f"{sum(r.judged.drift_wraps for r in clips)} of "
                             f"{sum(r.world.drift_wraps for r in clips)} wraps")
                continue
            errs = [motion.relative_error(getattr(r.judged, key), getattr(r.world, key)) for r in clips]
            errs = [e for e in errs if np.isfinite(e)]
            cells.append(f"{np.median(errs):.3f} / {np.max(errs):.3f}" if errs else "-")
        print(f"{name:<40}" + "".join(f"{c:>24}" for c in cells))
    rest = [r.judged.speed for r in runs[0.0]["results"] if r.motion == "resting"]
    print(f"{'resting: median speed (world 0), frame/s':<40}{np.median(rest):>24.4f}")


TINY_WEIGHTS: Path | None = None  # --weights: the tiny model's weights (default: the bundled ones)


def _backend(name: str):
    from engine.models.base import BackendConfig, create_backend

    if name == "tiny" and TINY_WEIGHTS is not None:
        return create_backend(name, BackendConfig(weights=TINY_WEIGHTS))
    return create_backend(name)


def model_table(models: list[str], quick: bool) -> None:
    from evaluation.evaluate import TARGETS, EvalConfig, motion_fidelity

    kept, summaries = {}, {}
    for name in models:
        start = time.perf_counter()
        kept[name] = []
        summaries[name] = motion_fidelity(_backend(name), EvalConfig(quick=quick), kept[name])
        print(f"\n{name}: {len(kept[name])} clips in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\nPart 2: `lvp eval`'s motion step{' (--quick)' if quick else ''}, per motion "
          "(medians over the motion's 10-second clips; wraps: totals, which `lvp eval` does not "
          "judge: its wrap rows come from longer clips)\n")
    width = 14
    print(f"{'motion':<16}{'measure':<22}" + "".join(f"{m:>{width}}" for m in models) + f"{'world':>{width}}")
    for m in MOTIONS:
        rows = _motion_rows(m, [kept[name] for name in models])
        for i, (label, values, world) in enumerate(rows):
            cells = "".join(f"{v:>{width}.3f}" for v in values)
            print(f"{m if i == 0 else '':<16}{label:<22}{cells}"
                  + (f"{world:>{width}.3f}" if world is not None else ""))
    name_width = max(len(metric) for metric in TARGETS) + 1
    print(f"\n{'metric (lvp eval)':<{name_width}}" + "".join(f"{m:>{width}}" for m in models)
          + f"{'target':>{width}}")
    for metric, (op, bound) in TARGETS.items():
        if metric.startswith("motion_"):
            cells = "".join(f"{summaries[n][metric]:>{width}.3f}" if summaries[n][metric] is not None
                            else f"{'-':>{width}}" for n in models)
            target = f"{op} {bound}" if bound is not None else "reported"
            print(f"{metric:<{name_width}}{cells}{target:>{width}}")


def _motion_rows(m: str, runs: list[list[motion.ClipResult]]) -> list[tuple[str, list[float], float | None]]:
    """(label, one value per model, the world's value) rows for motion m."""
    plain = [[r for r in run if _plain(r)] for run in runs]
    rows: list[tuple[str, list[float], float | None]] = [
        ("named right", [float(np.mean([r.named == m for r in clips if r.motion == m])) for clips in plain],
         None)]
    per_model = [motion.medians(clips, m) for clips in plain]
    for key in motion.DEFINING[m]:
        rows.append((key, [med[key][0] for med in per_model], per_model[0][key][1]))
    if m == "bouncing":  # the same prompts rendered to drum hits: the world's bounce ignores them
        drums = [[r for r in run if not _plain(r)] for run in runs]
        rows.append(("beat_sync, drums", [float(np.mean([r.judged.beat_sync for r in d])) for d in drums],
                     float(np.mean([r.world.beat_sync for r in drums[0]]))))
        rows.append(("floor contact", [float(np.nanmedian([r.judged.bounce_floor_contact for r in clips
                                                           if r.motion == m])) for clips in plain],
                     float(np.nanmedian([r.world.bounce_floor_contact for r in plain[0] if r.motion == m]))))
    if m.startswith("drifting"):
        rows.append(("jumps back (total)", [float(sum(r.judged.drift_jumps_back for r in clips
                                                      if r.motion == m)) for clips in plain],
                     float(sum(r.world.drift_jumps_back for r in plain[0] if r.motion == m))))
    if m == "orbiting":
        rows.append(("radius growth /min", [float(np.median([r.judged.orbit_growth for r in clips
                                                             if r.motion == m])) for clips in plain],
                     float(np.median([r.world.orbit_growth for r in plain[0] if r.motion == m]))))
    return rows


def long_clips(models: list[str], minutes: float, fps: int = 5) -> None:
    """Orbits and drifts over minutes: what a 10-second clip cannot show (an orbit that
    widens, a drifting subject that never leaves the frame)."""
    from engine.prompt import HELD_OUT_PAIRS, parse_prompt
    from evaluation.evaluate import Run, eval_spec

    seconds, window = minutes * 60.0, 20.0
    clips = [(f"a {color} {shape} {m.replace('_', ' ')} on a {bg} background", 1734 + n)
             for n, ((color, shape), m, bg) in enumerate(
                 (pair, m, bg) for pair, bg in zip(HELD_OUT_PAIRS[:2], ("night", "day"), strict=True)
                 for m in ("orbiting", "drifting_left", "drifting_right"))]
    rows: dict[str, list[list[float]]] = {}
    start = time.perf_counter()
    for name in [*models, "world"]:
        backend = _backend(name) if name != "world" else None
        per: dict[str, list[float]] = {}
        for prompt, seed in clips:
            scene = parse_prompt(prompt)
            if backend is None:  # the world's own track of the same clip
                track = motion.world_track(scene, seed, fps, round(seconds * fps))
            else:
                run = Run(eval_spec(prompt, seconds, backend.name, seed, fps=fps), backend)
                try:
                    frames = run.stitched()
                finally:
                    run.close()
                track = motion.track(frames, scene.color, fps)
            if scene.motion == "orbiting":
                step = round(window * fps)
                radii = [motion.measure(_window(track, a, a + step)).orbit_radius
                         for a in range(0, len(track.t) - step + 1, step)]
                per.setdefault("orbit radius, first 20 s", []).append(radii[0])
                per.setdefault("orbit radius, last 20 s", []).append(radii[-1])
                per.setdefault("orbit radius, largest 20 s", []).append(max(radii))
            else:
                m = motion.measure(track)
                sign = 1.0 if scene.motion == "drifting_right" else -1.0
                per.setdefault("drift speed (+: prompt's way)", []).append(sign * m.drift_speed)
                per.setdefault("wraps per minute", []).append(m.drift_wraps / minutes)
                per.setdefault("jumps back per minute", []).append(m.drift_jumps_back / minutes)
                per.setdefault("share of time in view", []).append(m.visible)
        for key, values in per.items():
            rows.setdefault(key, []).append(values)
    print(f"\nPart 3: {minutes:g}-minute clips at {fps} fps, 2 held-out pairs, "
          f"{time.perf_counter() - start:.0f} s (means over the clips)\n")
    width = 14
    print(f"{'measure':<34}" + "".join(f"{m:>{width}}" for m in [*models, "world"]))
    for key, values in rows.items():
        print(f"{key:<34}" + "".join(f"{np.mean(v):>{width}.3f}" for v in values))


def drift_wraps(models: list[str], clips_per_direction: int) -> None:
    """Where a model starts its drifting subjects, read from many 10-second clips: whether
    they leave and come back as often as the world's (a shot that starts near the edge it
    drifts to wraps within seconds). A model draws its own starting places, so clip by clip
    its wraps and the world's are independent draws; hundreds of clips tell a model that
    starts its subjects in the wrong places from chance. Each clip is judged from its frames
    as `lvp eval` judges them, beside the world's own clip of the same seed (every clip its
    own seed)."""
    from engine.prompt import HELD_OUT_PAIRS, parse_prompt
    from evaluation.evaluate import Run, eval_spec
    from evaluation.motion import judge_against_world

    backdrops = ("night", "meadow", "day", "ocean", "sunset")
    clips = []
    for n in range(clips_per_direction):
        color, shape = HELD_OUT_PAIRS[n % len(HELD_OUT_PAIRS)]
        for side, way in enumerate(("left", "right")):
            clips.append((f"a {color} {shape} drifting {way} on a {backdrops[n % len(backdrops)]} background",
                          40000 + 2 * n + side))
    print(f"\nPart 4: wrap-arounds in {len(clips)} drifting clips of 10 s (seeds from 40000)\n")
    width = 14
    print(f"{'model':<12}{'wraps':>{width}}{'world':>{width}}{'error':>{width}}"
          f"{'clips w/ wrap':>{width}}{'world':>{width}}{'seconds':>{width}}")
    for name in models:
        backend = _backend(name)
        start = time.perf_counter()
        judged, world = [], []
        for prompt, seed in clips:
            run = Run(eval_spec(prompt, 10.0, backend.name, seed), backend)
            try:
                frames = run.stitched()
            finally:
                run.close()
            result = judge_against_world(frames, prompt, parse_prompt(prompt), seed, run.timeline.spec.fps)
            judged.append(result.judged.drift_wraps)
            world.append(result.world.drift_wraps)
        error = abs(sum(judged) / sum(world) - 1.0) if sum(world) else float("nan")
        print(f"{name:<12}{sum(judged):>{width}}{sum(world):>{width}}{error:>{width}.3f}"
              f"{np.mean(np.array(judged) > 0):>{width}.3f}{np.mean(np.array(world) > 0):>{width}.3f}"
              f"{time.perf_counter() - start:>{width}.0f}", flush=True)


def _window(track: motion.Track, a: int, b: int) -> motion.Track:
    return motion.Track(*(getattr(track, f.name)[a:b] for f in fields(motion.Track)))


def _plain(result: motion.ClipResult) -> bool:
    """A clip of the motion set, not one of the bouncing clips rendered to drums (without a
    beat, beat_sync is exactly 0)."""
    return not (result.motion == "bouncing" and result.world.beat_sync != 0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.motion_judge_accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20,
                        help="world clips per motion in part 1 (default 20)")
    parser.add_argument("--models", default="tiny,procedural",
                        help="part 2's backends (default tiny,procedural; empty: part 1 only)")
    parser.add_argument("--quick", action="store_true", help="part 2 with `lvp eval --quick`'s clips")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads for the models (default: all cores, as lvp eval)")
    parser.add_argument("--minutes", type=float, default=2.0,
                        help="length of part 3's orbiting and drifting clips (default 2)")
    parser.add_argument("--parts", default="1,2,3",
                        help="which parts to run (default 1,2,3; 4: wrap-arounds over many drifting clips)")
    parser.add_argument("--drift-clips", type=int, default=60,
                        help="part 4's clips per drift direction (default 60)")
    parser.add_argument("--weights", type=Path, help="tiny weights file (default: the bundled one)")
    args = parser.parse_args(argv)
    global TINY_WEIGHTS
    TINY_WEIGHTS = args.weights
    parts = {p.strip() for p in args.parts.split(",")}
    if "1" in parts:
        print_world(args.clips)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if models and parts & {"2", "3", "4"}:
        import torch

        torch.set_num_threads(args.threads)
        if "2" in parts:
            model_table(models, args.quick)
        if "3" in parts:
            long_clips([m for m in models if m != "procedural"] or models, args.minutes)
        if "4" in parts:
            drift_wraps(models, args.drift_clips)


if __name__ == "__main__":
    main()
