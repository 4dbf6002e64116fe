"""Encoding in the segment workers vs in the stitcher alone, side by side in one run.

    python -m bench.encode_split [--sizes 256x256,1280x720,1920x1080] [--seconds 20]
                                 [--repeat 3] [--json FILE] [--smoke]

Before: every frame travels raw from its segment worker to the stitcher, which encodes all of
them (LVP_ENCODE_IN_STITCHER=1). After (the default): each worker encodes the frames no
neighbour shares and sends packets plus the raw overlaps; the stitcher encodes only the blends.
Both write the same bytes (tests/test_chunks.py), so only the cost moves.

Every render is a real `lvp render --address` subprocess on a Ray head started here (token
auth, explicit resources), two segment workers, runs interleaved (before, after, before, ...),
medians of `--repeat`. Printed per case: loop seconds, the stitcher's CPU seconds (blend +
encode) per video second, the bytes shipped to the stitcher per video second, and the
after/before ratios. Cases:
- gpu-like (bench/gpu_like.py: Stage 2 sleeps like a process waiting on a GPU) at each size;
- procedural at 1280x720, 30 fps (whole renders on this machine's CPUs);
- the live preset with the bundled tiny model: real-time factor and worst seam ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.scaling import ray_head

BEFORE_ENV = {"LVP_ENCODE_IN_STITCHER": "1"}


def render(folder: Path, name: str, address: str, env: dict[str, str], args: list[str]) -> dict:
    out = folder / f"{name}.mp4"
    cmd = [sys.executable, "-m", "cli", "render", *args, "--workers", "2", "--address", address,
           "--out", str(out), "--quiet", "--overwrite"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {done.stderr.strip()[-600:]}")
    report = json.loads(out.with_suffix(".json").read_text())
    out.unlink()
    return report


def figures(report: dict) -> dict:
    video = report["frames"] / report["fps"]
    stages = report["stage_seconds"]
    return {
        "loop_s": report["loop_seconds"],
        "stitcher_s_per_video_s": (stages["blend"] + stages["encode"]) / video,
        "worker_encode_s_per_video_s": stages.get("segment_encode", 0.0) / video,
        "shipped_MB_per_video_s": report["shipped_bytes"] / video / 1e6,
        "realtime_factor": report["realtime_factor"],
        "worst_seam_ratio": report["temporal"]["worst_seam_ratio"],
    }


def median_of(rows: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in rows if r[key] is not None)
            if any(r[key] is not None for r in rows) else None for key in rows[0]}


def cases(sizes: list[str], seconds: float, costs: Path) -> list[tuple[str, list[str]]]:
    gpu = ["--model", "gpu-like", "--weights", str(costs), "--prompt", "benchmark texture",
           "--duration", str(seconds)]
    out = [(f"gpu-like {size}", [*gpu, "--size", size]) for size in sizes]
    out.append(("procedural 1280x720", ["--model", "procedural", "--prompt",
                                        "a red circle orbiting on an ocean background",
                                        "--duration", str(seconds), "--size", "1280x720"]))
    out.append(("tiny, live preset", ["--model", "tiny", "--preset", "live", "--prompt",
                                      "a green circle resting on an ocean background",
                                      "--duration", str(seconds)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256x256,1280x720,1920x1080")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--segment-cost", type=float, default=1.0,
                        help="gpu-like: seconds of (GPU) time per 5-s segment")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--smoke", action="store_true", help="tiny inputs: checks that it runs")
    args = parser.parse_args()
    sizes = args.sizes.split(",")
    if args.smoke:
        sizes, args.seconds, args.repeat, args.segment_cost = ["64x64"], 10.0, 1, 0.1
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env.pop("RAY_ADDRESS", None)
    env.pop("LVP_ENCODE_IN_STITCHER", None)
    results: dict = {"machine": {"cpus": os.cpu_count()}, "seconds": args.seconds,
                     "repeat": args.repeat, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="lvp-split-") as tmp, \
            ray_head(4, env, object_store=6 << 30) as address:
        folder = Path(tmp)
        costs = folder / "costs.json"
        costs.write_text(json.dumps({"segment_seconds": args.segment_cost,
                                     "keyframe_seconds": 0.01}))
        chosen = [(n, a) for n, a in cases(sizes, args.seconds, costs)
                  if not args.only or args.only in n]
        if args.smoke:
            chosen = chosen[:1]
        print("case | loop s before -> after | stitcher s/video s before -> after (ratio) | "
              "shipped MB/video s before -> after (ratio) | RTF | worst seam", flush=True)
        for name, cli_args in chosen:
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for i in range(args.repeat):
                for when, extra in (("before", BEFORE_ENV), ("after", {})):
                    report = render(folder, f"{when}{i}", address, {**env, **extra}, cli_args)
                    runs[when].append(figures(report))
            b, a = median_of(runs["before"]), median_of(runs["after"])
            row = {"before": b, "after": a, "runs": runs,
                   "stitcher_ratio": b["stitcher_s_per_video_s"] / a["stitcher_s_per_video_s"],
                   "shipped_ratio": b["shipped_MB_per_video_s"] / a["shipped_MB_per_video_s"],
                   "speedup": b["loop_s"] / a["loop_s"]}
            results["cases"][name] = row
            print(f"{name} | {b['loop_s']:.1f} -> {a['loop_s']:.1f} ({row['speedup']:.2f}x) | "
                  f"{b['stitcher_s_per_video_s']:.4f} -> {a['stitcher_s_per_video_s']:.4f} "
                  f"({row['stitcher_ratio']:.1f}x less) | {b['shipped_MB_per_video_s']:.2f} -> "
                  f"{a['shipped_MB_per_video_s']:.2f} ({row['shipped_ratio']:.1f}x less) | "
                  f"{b['realtime_factor']:.2f} -> {a['realtime_factor']:.2f} | "
                  f"{b['worst_seam_ratio']} -> {a['worst_seam_ratio']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
