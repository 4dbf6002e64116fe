"""Encoding in the segment workers vs in the stitcher alone, side by side in one run.

    python -m bench.encode_split [--sizes 256x256,1280x720,1920x1080] [--seconds 20]
                                 [--repeat 3] [--before-code DIR] [--json FILE] [--smoke]

Before: every frame travels raw from its segment worker to the stitcher, which encodes all of
them: with `--before-code DIR`, the lvp checked out in DIR (an earlier version, e.g.
`git worktree add /tmp/before 953e2ca`); without it this lvp with LVP_ENCODE_IN_STITCHER=1
(the same bytes as after, tests/test_chunks.py: only where the encoding runs differs). After:
this lvp, where each worker encodes the frames no neighbour shares and sends packets plus its
overlaps, and blends and encodes the overlap before each segment it rendered; the stitcher
muxes (it blends only the first overlap after a resume).

Every render is a real `lvp render --address` subprocess on its own Ray head (token auth,
explicit resources; the head runs the code under test), two segment workers, runs
interleaved (before, after, before, ...), medians of `--repeat`. Printed per case: loop
seconds, the stitcher's seconds (blend + encode) per video second, the workers' (encode;
blend), the bytes shipped to the stitcher per video second, the after/before ratios, and the
worst seam ratio of the report (measured before encoding) and of the decoded video (up to
512x512). Cases:
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

import av
import numpy as np

from bench.scaling import ray_head
from stitcher.quality import STEP_FLOOR, frame_differences, seam_ratio_at

BEFORE_ENV = {"LVP_ENCODE_IN_STITCHER": "1"}


def render(folder: Path, name: str, env: dict[str, str], args: list[str]) -> dict:
    with ray_head(4, env, object_store=6 << 30) as address:
        return _render(folder, name, address, env, args)


def _render(folder: Path, name: str, address: str, env: dict[str, str], args: list[str]) -> dict:
    out = folder / f"{name}.mp4"
    cmd = [sys.executable, "-m", "cli", "render", *args, "--workers", "2", "--address", address,
           "--out", str(out), "--quiet", "--overwrite"]
    # cwd: the temp folder, so `-m cli` imports the code PYTHONPATH names, not the one here.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=folder)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {done.stderr.strip()[-600:]}")
    report = json.loads(out.with_suffix(".json").read_text())
    if report["size"][0] * report["size"][1] <= 512 * 512:  # cheap enough to decode
        report["decoded_worst_seam_ratio"] = decoded_worst_seam(out, report)
    out.unlink()
    return report


def decoded_worst_seam(path: Path, report: dict) -> float:
    """The worst seam ratio measured on the decoded video (the report's figures are measured
    before encoding, so they cannot show what the encoder does at the boundaries)."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    diffs = frame_differences(frames)
    overlap = report["overlap_frames"]
    boundaries = [s["frame_start"] + overlap // 2 for s in report["segments"][1:]]
    return max(seam_ratio_at(diffs, b, overlap, report["fps"], floor=STEP_FLOOR)
               for b in boundaries)


def figures(report: dict) -> dict:
    video = report["frames"] / report["fps"]
    stages = report["stage_seconds"]
    return {
        "loop_s": report["loop_seconds"],
        "stitcher_s_per_video_s": (stages["blend"] + stages["encode"]) / video,
        "worker_encode_s_per_video_s": stages.get("segment_encode", 0.0) / video,
        "worker_blend_s_per_video_s": stages.get("segment_blend", 0.0) / video,
        "shipped_MB_per_video_s": shipped_bytes(report) / video / 1e6,
        "realtime_factor": report["realtime_factor"],
        "worst_seam_ratio": report["temporal"]["worst_seam_ratio"],
        "decoded_worst_seam_ratio": report.get("decoded_worst_seam_ratio"),
    }


def shipped_bytes(report: dict) -> int:
    """The report's figure; an lvp from before it shipped every rendered frame raw."""
    if "shipped_bytes" in report:
        return report["shipped_bytes"]
    width, height = report["size"]
    return sum(s["frame_stop"] - s["frame_start"] for s in report["segments"]) * width * height * 3


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
    parser.add_argument("--before-code", type=Path,
                        help="a checkout of the lvp to compare with (default: this one, "
                             "encoding in the stitcher)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--smoke", action="store_true", help="tiny inputs: checks that it runs")
    args = parser.parse_args()
    sizes = args.sizes.split(",")
    if args.smoke:
        sizes, args.seconds, args.repeat, args.segment_cost = ["64x64"], 10.0, 1, 0.1
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("RAY_ADDRESS", None)
    env.pop("LVP_ENCODE_IN_STITCHER", None)
    results: dict = {"machine": {"cpus": os.cpu_count()}, "seconds": args.seconds,
                     "repeat": args.repeat, "cases": {}}
    before_env = {**env, **BEFORE_ENV}
    if args.before_code:
        before_env = {**env, "PYTHONPATH": str(args.before_code.resolve())}
        results["before_code"] = str(args.before_code)
    with tempfile.TemporaryDirectory(prefix="lvp-split-") as tmp:
        folder = Path(tmp)
        costs = folder / "costs.json"
        costs.write_text(json.dumps({"segment_seconds": args.segment_cost,
                                     "keyframe_seconds": 0.01}))
        chosen = [(n, a) for n, a in cases(sizes, args.seconds, costs)
                  if not args.only or args.only in n]
        if args.smoke:
            chosen = chosen[:1]
        print("case | loop s before -> after | stitcher s/video s before -> after (ratio) | "
              "shipped MB/video s before -> after (ratio) | RTF | worst seam (report; decoded "
              "video)", flush=True)
        for name, cli_args in chosen:
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for i in range(args.repeat):
                for when, run_env in (("before", before_env), ("after", env)):
                    report = render(folder, f"{when}{i}", run_env, cli_args)
                    runs[when].append(figures(report))
            b, a = median_of(runs["before"]), median_of(runs["after"])
            row = {"before": b, "after": a, "runs": runs,
                   "stitcher_ratio": b["stitcher_s_per_video_s"] / a["stitcher_s_per_video_s"],
                   "shipped_ratio": b["shipped_MB_per_video_s"] / a["shipped_MB_per_video_s"],
                   "speedup": b["loop_s"] / a["loop_s"]}
            results["cases"][name] = row
            print(f"{name} | {b['loop_s']:.1f} -> {a['loop_s']:.1f} ({row['speedup']:.2f}x) | "
                  f"{b['stitcher_s_per_video_s']:.4f} -> {a['stitcher_s_per_video_s']:.4f} "
                  f"({row['stitcher_ratio']:.1f}x less; workers after: encode "
                  f"{a['worker_encode_s_per_video_s']:.4f}, blend "
                  f"{a['worker_blend_s_per_video_s']:.4f}) | {b['shipped_MB_per_video_s']:.2f} -> "
                  f"{a['shipped_MB_per_video_s']:.2f} ({row['shipped_ratio']:.1f}x less) | "
                  f"{b['realtime_factor']:.2f} -> {a['realtime_factor']:.2f} | "
                  f"{b['worst_seam_ratio']:.3f} -> {a['worst_seam_ratio']:.3f} (decoded: "
                  f"{b['decoded_worst_seam_ratio']} -> {a['decoded_worst_seam_ratio']})",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
