"""lvp benchmarks: every comparison measured side by side in one run, on this machine.

    python -m bench.bench                 # everything (about 15 minutes on 2 cores)
    python -m bench.bench --only seams    # one section
    python -m bench.bench --smoke         # tiny inputs: checks the benchmarks run (CI)

Prints one table per section and writes all numbers to bench/results.json (--json PATH).
Every render runs as a real `lvp render` subprocess with its own local Ray, the way a user
runs it; times come from the run report. Comparisons between configurations use the render
loop's own time (`loop_seconds`: after Ray, the actors and the models are up); the presets
also show the real-time factor from launch and in steady state.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

PROMPT = "a red circle bouncing on a night background"
MODEL = ["tiny"]  # set from --model: the backend every render uses


class RssSampler:
    """Peak memory of a process and all its descendants (driver + Ray), summed.

    Sums PSS (proportional set size), not RSS: Ray's shared-memory object store is mapped
    into every worker, and summing RSS would count each shared page once per process.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += proc.memory_full_info().pss
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def render(workdir: Path, name: str, duration: float, *extra: str,
           measure_rss: bool = False) -> dict:
    """Run `lvp render` and return its report (plus peak PSS when asked)."""
    out = workdir / f"{name}.mp4"
    cmd = [sys.executable, "-m", "cli", "render", "--prompt", PROMPT, "--duration",
           str(duration), "--out", str(out), "--quiet", "--model", MODEL[0],
           "--overwrite",  # a fresh render every time, never a finished job's old report
           *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = RssSampler(proc.pid) if measure_rss else None
    _, err = proc.communicate()
    peak = sampler.stop() if sampler else None
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: lvp render failed: {err.strip()[-500:]}")
    report = json.loads(out.with_suffix(".json").read_text())
    report["peak_rss_bytes"] = peak
    report["lmdb_bytes"] = sum(f.stat().st_size for f in (workdir / f"{name}.lvp" / "memory.lmdb").iterdir())
    return report


def busy(report: dict) -> dict[str, float]:
    """Seconds each actor kind was busy: the segment pool's work is spread over its workers."""
    s = report["stage_seconds"]
    return {"keyframe": s["keyframe"], "segments": s["render"] / report["workers"],
            "stitcher": s["blend"] + s["encode"]}


def amdahl(serial_share: float, n: int) -> float:
    return 1.0 / (serial_share + (1.0 - serial_share) / n)


def median_renders(tmp: Path, configs: dict[str, tuple[str, ...]], seconds: float,
                   repeat: int) -> dict[str, dict]:
    """Each configuration `repeat` times, interleaved (a slow spell on the machine then hits
    all of them alike); per configuration, the report of the run with the median wall time,
    with every run's wall time under "walls"."""
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for i in range(repeat):
        for name, extra in configs.items():
            runs[name].append(render(tmp, f"{name}_{i}", seconds, *extra))
    out = {}
    for name, reports in runs.items():
        ordered = sorted(reports, key=lambda r: r["loop_seconds"])
        out[name] = {**ordered[len(ordered) // 2], "walls": [r["loop_seconds"] for r in reports]}
    return out


def _spread(report: dict) -> str:
    walls = report["walls"]
    return f"{min(walls):.2f}-{max(walls):.2f}" if len(walls) > 1 else "-"


def section_schedule(tmp: Path, seconds: float, repeat: int) -> dict:
    runs = median_renders(tmp, {"schedule_parallel": ("--workers", "2"),
                                "schedule_chain": ("--workers", "2", "--schedule", "chain")},
                          seconds, repeat)
    par, chain = runs["schedule_parallel"], runs["schedule_chain"]
    rows = [("keyframes-first parallel", par), ("autoregressive chain", chain)]
    print(f"\n## Schedule: {seconds:g} s of video, 2 workers, median of {repeat}")
    print(f"{'schedule':<26}{'loop s':>9}{'range':>13}{'first segment s':>17}")
    for label, r in rows:
        first = r["first_segment_seconds"] - r["startup_seconds"]  # after start-up, like the loop
        print(f"{label:<26}{r['loop_seconds']:>9.2f}{_spread(r):>13}{first:>17.2f}")
    speedup = chain["loop_seconds"] / par["loop_seconds"]
    print(f"parallel / chain speed-up: {speedup:.2f}x")
    return {"parallel": _keep(par), "chain": _keep(chain), "speedup": speedup}


def section_scaling(tmp: Path, seconds: float, repeat: int) -> dict:
    runs = median_renders(tmp, {"scaling_1": ("--workers", "1"), "scaling_2": ("--workers", "2")},
                          seconds, repeat)
    one, two = runs["scaling_1"], runs["scaling_2"]
    s = one["stage_seconds"]
    work = s["keyframe"] + s["render"] + s["blend"] + s["encode"]
    serial = (s["keyframe"] + s["blend"] + s["encode"]) / work
    speedup = one["loop_seconds"] / two["loop_seconds"]
    predicted = {n: amdahl(serial, n) for n in (8, 32, 128)}
    print(f"\n## Scaling: {seconds:g} s of video, median of {repeat}")
    print(f"1 worker {one['loop_seconds']:.2f} s ({_spread(one)}), 2 workers "
          f"{two['loop_seconds']:.2f} s ({_spread(two)}): {speedup:.2f}x")
    print(f"serial share (Stage 1 + blend + encode of all work, 1 worker): {serial:.1%}")
    print("Amdahl speed-up predicted: " + ", ".join(f"{n} workers {v:.1f}x"
                                                   for n, v in predicted.items()))
    return {"one": _keep(one), "two": _keep(two), "speedup": speedup, "serial_share": serial,
            "predicted": predicted}


def section_overhead_and_stitch(reports: dict[str, dict]) -> dict:
    print("\n## Overhead and stitch/encode share")
    print(f"{'run':<22}{'loop s':>8}{'bottleneck':>12}{'overhead':>10}{'stitch+enc':>12}")
    result = {}
    for label, r in reports.items():
        b = busy(r)
        name, secs = max(b.items(), key=lambda kv: kv[1])
        overhead = max(0.0, 1.0 - secs / r["loop_seconds"])
        s = r["stage_seconds"]
        stitch_share = (s["blend"] + s["encode"]) / r["loop_seconds"]
        print(f"{label:<22}{r['loop_seconds']:>8.2f}{name:>12}{overhead:>10.1%}{stitch_share:>12.1%}")
        result[label] = {"overhead": overhead, "bottleneck": name, "stitch_share": stitch_share}
    return result


def section_blend_cost(smoke: bool) -> dict:
    from stitcher.blend import BLENDS

    rng = np.random.default_rng(0)
    out = {}
    print("\n## Blend cost per boundary (16 overlap frames)")
    for size in (256,) if smoke else (256, 512):
        a = rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8)
        b = np.roll(a, 2, axis=2)
        for name, fn in BLENDS.items():
            fn(a, b)
            start = time.perf_counter()
            reps = 2 if smoke else 5
            for _ in range(reps):
                fn(a, b)
            ms = (time.perf_counter() - start) / reps * 1000
            out[f"{name}_{size}"] = ms
            print(f"{name:<10}{size}x{size}: {ms:8.1f} ms per boundary")
    return out


def section_presets(tmp: Path, seconds: float) -> dict:
    print(f"\n## Presets: {seconds:g} s of video, default workers, MP4 only")
    print(f"{'preset':<8}{'size':>10}{'fps':>5}{'wall s':>9}{'start-up s':>12}{'RTF launch':>12}"
          f"{'RTF loop':>10}{'RTF steady':>12}")
    out = {}
    for preset in ("draft", "live", "hq"):
        r = render(tmp, f"preset_{preset}", seconds, "--preset", preset)
        out[preset] = _keep(r)
        size = "x".join(map(str, r["size"]))
        loop_rtf = r["frames"] / r["fps"] / r["loop_seconds"]
        steady = r["steady_realtime_factor"] or float("nan")
        print(f"{preset:<8}{size:>10}{r['fps']:>5}{r['wall_seconds']:>9.2f}{r['startup_seconds']:>12.2f}"
              f"{r['realtime_factor']:>12.2f}{loop_rtf:>10.2f}{steady:>12.2f}")
    return out


def section_memory(tmp: Path, short: float, long: float) -> dict:
    a = render(tmp, "memory_short", short, "--preset", "live", measure_rss=True)
    b = render(tmp, "memory_long", long, "--preset", "live", measure_rss=True)
    ratio = b["peak_rss_bytes"] / a["peak_rss_bytes"]
    per_hour = b["lmdb_bytes"] / long * 3600
    print("\n## Memory (live preset; PSS of the driver and every Ray process, summed)")
    print(f"{short:g} s of video: peak PSS {a['peak_rss_bytes'] / 2**20:.0f} MiB")
    print(f"{long:g} s of video: peak PSS {b['peak_rss_bytes'] / 2**20:.0f} MiB  "
          f"(ratio {ratio:.2f})")
    print(f"LMDB replay memory: {per_hour / 2**20:.1f} MiB per hour of video (file size, "
          f"includes LMDB's page overhead)")
    return {"short_peak_rss": a["peak_rss_bytes"], "long_peak_rss": b["peak_rss_bytes"],
            "ratio": ratio, "lmdb_bytes_per_hour": per_hour, "long": _keep(b)}


def section_seams(smoke: bool) -> dict:
    from dataclasses import replace

    from engine.models.base import create_backend
    from evaluation.evaluate import FrameCollector, Run, eval_spec
    from stitcher.quality import seam_ratio, sharpness_kept
    from stitcher.stitch import Stitcher

    model = MODEL[0]
    print(f"\n## Seams ({model}): seam ratio = max frame difference in the blend window / "
          "local median; sharpness kept = least edge energy in the window / local median "
          "(a cross-fade of disagreeing frames is a double image)")
    spec = eval_spec("a red circle orbiting on a day background", 10 if smoke else 30, model, 0,
                     size=256, fps=30)
    spec = replace(spec, overlap=16)
    run = Run(spec, create_backend(model))
    segments = []
    try:
        timeline = run.timeline
        for k in range(timeline.num_segments):
            frames = run.segment(k, run.keys(k))
            segments.append((k, timeline.segment(k).frame_start, frames, timeline.shared_tail(k)))
    finally:
        run.close()
    boundaries = [round(timeline.segment(k).t0 * spec.fps) for k in range(1, timeline.num_segments)]

    def disagree(pixels: int, levels: int) -> list:
        # Neighbours that render their overlap from the same keyframes agree exactly, and then
        # every blend is the same; shifting every other segment makes the blends do their job
        # (what two differently-conditioned segments would need).
        def shift(k: int, frames: np.ndarray) -> np.ndarray:
            if k % 2 == 0:
                return frames
            moved = np.roll(frames, pixels, axis=2).astype(np.int16) + levels
            return np.clip(moved, 0, 255).astype(np.uint8)
        return [(k, start, shift(k, frames), tail) for k, start, frames, tail in segments]

    out: dict = {}
    print(f"{'segments':<28}{'blend':<11}{'seam ratio':>11}{'sharpness kept':>16}")
    for key, label, variant in (("as_rendered", "as rendered", segments),
                                ("disagreeing_1_px", "disagreeing 1 px, 1 level", disagree(1, 1)),
                                ("disagreeing_3_px", "disagreeing 3 px, 6 levels", disagree(3, 6))):
        rows = {}
        for blend in ("flow", "crossfade", "cut"):
            sink = FrameCollector()
            stitcher = Stitcher([sink], blend=blend)
            for seg in variant:
                stitcher.add(*seg)
            stitcher.close()
            frames = np.concatenate(sink.chunks)
            rows[blend] = {"seam_ratio": seam_ratio(frames, boundaries, spec.overlap, spec.fps),
                           "sharpness_kept": sharpness_kept(frames, boundaries, spec.overlap, spec.fps)}
            print(f"{label:<28}{blend:<11}{rows[blend]['seam_ratio']:>11.2f}"
                  f"{rows[blend]['sharpness_kept']:>16.3f}")
        out[key] = rows
    return out


def _keep(report: dict) -> dict:
    keys = ("wall_seconds", "startup_seconds", "loop_seconds", "first_segment_seconds",
            "realtime_factor", "steady_realtime_factor", "stage_seconds",
            "frames", "fps", "size", "workers", "peak_rss_bytes", "lmdb_bytes", "walls")
    return {k: report.get(k) for k in keys}


SECTIONS = ("schedule", "scaling", "overhead", "blend", "presets", "memory", "seams")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=SECTIONS, action="append")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs; checks that it runs")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--model", default="tiny", help="backend to measure (default: tiny)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per configuration in the schedule and scaling comparisons; "
                             "the median is reported (default: 3; 1 with --smoke)")
    args = parser.parse_args()
    MODEL[0] = args.model
    only = set(args.only or SECTIONS)
    scale = 0.1 if args.smoke else 1.0
    repeat = 1 if args.smoke else args.repeat
    if repeat < 1:
        parser.error("--repeat must be 1 or more")
    results: dict = {"model": args.model, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "processor": platform.processor(),
                                 "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}}
    print(f"machine: {results['machine']}")
    with tempfile.TemporaryDirectory(prefix="lvp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if "schedule" in only:
            results["schedule"] = section_schedule(tmp, 120 * scale, repeat)
        if "scaling" in only or "overhead" in only:
            results["scaling"] = section_scaling(tmp, 120 * scale, repeat)
        if "presets" in only or "overhead" in only:
            results["presets"] = section_presets(tmp, 60 * scale)
        if "memory" in only or "overhead" in only:
            results["memory"] = section_memory(tmp, 60 * scale, 600 * scale)
        if "overhead" in only:
            reports = {"1 worker": results["scaling"]["one"], "2 workers": results["scaling"]["two"]}
            reports.update({f"preset {k}": v for k, v in results["presets"].items()})
            # The same preset over ten times the video: what start-up costs once, amortised.
            reports[f"live, {600 * scale:g} s"] = results["memory"]["long"]
            results["overhead"] = section_overhead_and_stitch(reports)
        if "blend" in only:
            results["blend_ms"] = section_blend_cost(args.smoke)
        if "seams" in only:
            results["seams"] = section_seams(args.smoke)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
