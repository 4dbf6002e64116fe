"""Fault injection: killed actors and a killed driver must not change a single frame.

    python -m bench.faults                    # both parts (about 25 min on 2 cores)
    python -m bench.faults --part actors      # killed actors only
    python -m bench.faults --part actors --skip keyframe   # ... all but the keyframe actor
    python -m bench.faults --part driver      # SIGKILLed driver, resumed, 10 times
    python -m bench.faults --smoke            # short renders, few faults: checks that it runs

Part `actors`: a 2-minute render at the live preset (256x256@30, 2 workers, bundled tiny
model) runs fault-free and, interleaved with it, with faults injected while it runs: a segment
actor killed every 6 segments, the stitcher once and the keyframe actor once (timed by the
MP4's growth, one fragment per second of video). Prints whether the decoded frames equal the
fault-free run's, the wall-time ratio (target: 1.5x or less) and the restarts in the report.

Part `driver`: a 5-minute render whose `lvp render` process is SIGKILLed at random points 10
times, the same command run again after each kill. Prints whether the final frames equal a
fault-free render's, the segments rendered again per kill (target: at most 2 x workers), and
whether every process of each killed run (all its descendants, recorded while it ran) is gone
once Ray has cleaned up (60 s).

Renders are real `lvp render` subprocesses with their own local Ray, actors found as the lvp
process's descendants whose command line starts with `ray::SegmentActor` etc.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import av
import psutil

PROMPT = "a red circle bouncing on a night background"
REPO = Path(__file__).resolve().parent.parent
WALL_RATIO_TARGET = 1.5
CLEANUP_SECONDS = 60.0  # Ray's own cleanup after its driver died
WATCH_SECONDS = 300.0  # how long to wait for processes that outlive it
ACTORS = re.compile(r"ray::(Segment|Keyframe|Stitcher)Actor")


# Running lvp -------------------------------------------------------------------------------

def lvp_env() -> dict[str, str]:
    """Run this checkout's lvp (Ray's workers import it too), whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def lvp_command(out: Path, duration: float, model: str, workers: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cli", "render", "--prompt", PROMPT, "--preset", "live",
            "--duration", f"{duration:g}", "--workers", str(workers), "--model", model,
            "--out", str(out), "--quiet", *extra]


def launch(cmd: list[str]) -> subprocess.Popen:
    """lvp with stderr and stdout in one pipe, `proc.stdout` (its errors go to stderr, its
    restart warnings to stdout)."""
    return subprocess.Popen(cmd, cwd=REPO, env=lvp_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def report_of(out: Path) -> dict:
    return json.loads(out.with_suffix(".json").read_text())


def fragments(path: Path) -> int:
    """Complete moof+mdat pairs in a fragmented MP4 (one per GOP: a second of video here),
    read from the box headers only, so it is cheap to poll a growing file."""
    count, pending = 0, False
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            pos = 0
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(16)
                length, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if length == 1 and len(head) == 16:
                    length = int.from_bytes(head[8:16], "big")
                if length < 8 or pos + length > size:
                    break
                if kind == b"moof":
                    pending = True
                elif kind == b"mdat" and pending:
                    count, pending = count + 1, False
                pos += length
    except FileNotFoundError:
        return 0
    return count


def frame_digests(path: Path) -> list[str]:
    """One digest per decoded frame (an hour of frames never sits in memory)."""
    with av.open(str(path)) as container:
        return [hashlib.blake2b(f.to_ndarray(format="rgb24").tobytes(), digest_size=16).hexdigest()
                for f in container.decode(video=0)]


def same_frames(a: Path, b: Path) -> tuple[bool, str]:
    da, db = frame_digests(a), frame_digests(b)
    if da == db:
        return True, f"{len(da)} frames equal"
    first = next((i for i, (x, y) in enumerate(zip(da, db, strict=False)) if x != y),
                 min(len(da), len(db)))
    return False, f"{len(da)} vs {len(db)} frames, first difference at frame {first}"


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_actor(pid: int, name: str, nth: int = 0) -> int | None:
    """SIGKILL the `nth` (wrapping) descendant of `pid` running actor `name`; its pid."""
    found = []
    for child in descendants(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            cmd = child.cmdline()
            if cmd and cmd[0].startswith(f"ray::{name}"):
                found.append(child)
    if not found:
        return None
    victim = sorted(found, key=lambda p: p.pid)[nth % len(found)]
    with contextlib.suppress(psutil.NoSuchProcess):
        victim.kill()
        return victim.pid
    return None


# Part 1: actors ----------------------------------------------------------------------------

@dataclass
class Fault:
    at_segment: int  # injected once the MP4 holds this many segments
    actor: str  # SegmentActor, StitcherActor, KeyframeActor
    done_at: float | None = None  # seconds after launch
    pid: int | None = None


def fault_plan(segments: int, every: int, skip: frozenset[str] = frozenset()) -> list[Fault]:
    """A segment actor every `every` segments; the keyframe actor and the stitcher once,
    between them (the keyframe actor early, while Stage 1 still has keyframes to make).
    `skip`: actors ("segment", "keyframe", "stitcher") left alone."""
    plan = [Fault(k, "SegmentActor") for k in range(every, segments, every)]
    plan.append(Fault(max(1, every // 2), "KeyframeActor"))
    # Half way between two segment kills near the middle: the job still has half its
    # segments to write, so the kill lands while the stitcher has work, not after its close.
    plan.append(Fault(max(2, segments // 2 // every * every + every // 2), "StitcherActor"))
    plan = [f for f in plan if f.actor.removesuffix("Actor").lower() not in skip]
    return sorted(plan, key=lambda f: f.at_segment)


def render_clean(out: Path, cmd: list[str]) -> dict:
    start = time.monotonic()
    proc = launch(cmd)
    err, _ = proc.communicate()
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"faults: fault-free render failed (exit {proc.returncode}): {err[-800:]}")
    return {"wall": wall, "report": report_of(out), "stderr": err}


def render_faulty(out: Path, cmd: list[str], plan: list[Fault], frames_per_segment: int,
                  fps: int) -> dict:
    start = time.monotonic()
    proc = launch(cmd)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stdout.read()), daemon=True)
    reader.start()
    pending = list(plan)
    segment_kills = 0
    while proc.poll() is None:
        written = fragments(out) * fps // frames_per_segment  # whole segments in the MP4
        while pending and written >= pending[0].at_segment:
            fault = pending[0]
            nth = segment_kills if fault.actor == "SegmentActor" else 0
            fault.pid = kill_actor(proc.pid, fault.actor, nth)
            if fault.pid is None:
                break  # not running right now (restarting?): try again next poll
            fault.done_at = time.monotonic() - start
            segment_kills += fault.actor == "SegmentActor"
            pending.pop(0)
        time.sleep(0.1)
    wall = time.monotonic() - start
    reader.join()
    stderr = "".join(err)
    return {"wall": wall, "report": report_of(out) if out.with_suffix(".json").exists() else None,
            "returncode": proc.returncode, "stderr": stderr, "missed": [f.actor for f in pending],
            "faults": [vars(f) for f in plan]}


def failure_log(out: Path) -> list[str]:
    """The failed run's traceback (lvp writes it to WORKDIR/lvp.log), before tmp goes."""
    log = out.with_suffix(".lvp") / "lvp.log"
    return log.read_text(errors="replace").splitlines()[-80:] if log.exists() else []


def part_actors(tmp: Path, duration: float, model: str, workers: int, repeat: int,
                every: int, skip: frozenset[str] = frozenset()) -> dict:
    fps, frames_per_segment = 30, 150  # live preset, default 5 s segments
    segments = int(duration * fps) // frames_per_segment
    runs: list[dict] = []
    for i in range(repeat):  # interleaved: a busy spell on the machine hits both alike
        ref, out = tmp / f"clean{i}.mp4", tmp / f"faulty{i}.mp4"
        clean = render_clean(ref, lvp_command(ref, duration, model, workers))
        print(f"  run {i}: fault-free {clean['wall']:.1f} s", flush=True)
        plan = fault_plan(segments, every, skip)
        faulty = render_faulty(out, lvp_command(out, duration, model, workers), plan,
                               frames_per_segment, fps)
        ok = faulty["returncode"] == 0
        equal, how = same_frames(ref, out) if ok else (False, "render failed")
        rep = faulty["report"] or {}
        runs.append({
            "clean_wall": clean["wall"], "faulty_wall": faulty["wall"],
            "ratio": faulty["wall"] / clean["wall"],
            "clean_loop": clean["report"]["loop_seconds"], "faulty_loop": rep.get("loop_seconds"),
            "returncode": faulty["returncode"], "frames_equal": equal, "frames": how,
            "bytes_equal": ok and ref.read_bytes() == out.read_bytes(),
            "restarts": rep.get("restarts", []), "faults": faulty["faults"],
            "missed": faulty["missed"],
            "warnings": [ln for ln in faulty["stderr"].splitlines() if "warning" in ln],
            "stderr_tail": faulty["stderr"].strip().splitlines()[-5:] if not ok else [],
            "lvp_log": [] if ok else failure_log(out),
        })
        print(f"  run {i}: with faults {faulty['wall']:.1f} s (exit {faulty['returncode']}), "
              f"{how}", flush=True)
        for path in (ref, out):  # keep /tmp small between repeats
            path.unlink(missing_ok=True)
    return {"duration": duration, "workers": workers, "model": model, "segments": segments,
            "skipped": sorted(skip), "runs": runs}


def print_actors(r: dict) -> None:
    print(f"\nActor faults: {r['duration']:g} s of video at the live preset, {r['workers']} "
          f"workers, model {r['model']}, {r['segments']} segments; fault-free and faulty "
          "runs interleaved"
          + (f"; not killed: {', '.join(r['skipped'])}" if r.get("skipped") else ""))
    print("| run | fault-free s | with faults s | ratio | exit | frames identical | bytes "
          "identical | faults injected | restarts in the report |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, run in enumerate(r["runs"]):
        injected = ", ".join(f"{f['actor'].removesuffix('Actor').lower()}@{f['at_segment']}"
                             for f in run["faults"] if f["pid"] is not None)
        missed = f" (not injected: {', '.join(run['missed'])})" if run["missed"] else ""
        parts: dict[str, int] = {}
        for rs in run["restarts"]:
            parts[rs["part"]] = parts.get(rs["part"], 0) + 1
        restarts = ", ".join(f"{k} x{v}" for k, v in sorted(parts.items())) or "none"
        restarts += f" ({len(run['warnings'])} warning lines)"
        print(f"| {i} | {run['clean_wall']:.1f} | {run['faulty_wall']:.1f} | {run['ratio']:.2f}x | "
              f"{run['returncode']} | {'yes' if run['frames_equal'] else 'NO'} | "
              f"{'yes' if run['bytes_equal'] else 'no'} | {injected}{missed} | {restarts} |")
    ratios = [run["ratio"] for run in r["runs"]]
    median = statistics.median(ratios)
    print(f"  decoded frames identical to the fault-free run: "
          f"{'yes' if all(x['frames_equal'] for x in r['runs']) else 'NO'}")
    print(f"  wall-time ratio, median of {len(ratios)}: {median:.2f}x (target <= "
          f"{WALL_RATIO_TARGET}x): {'met' if median <= WALL_RATIO_TARGET else 'NOT met'}")
    for i, run in enumerate(r["runs"]):
        for rs in run["restarts"]:
            print(f"  run {i} restart: {rs['part']}: {rs['what']}")
        for line in run["stderr_tail"]:
            print(f"  run {i} output: {line}")
        if run["lvp_log"]:
            print(f"  run {i} lvp.log (last lines; all of it in --json):")
            for line in run["lvp_log"][-25:]:
                print(f"    {line}")


# Part 2: driver ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics_args(port: int) -> tuple[str, ...]:
    # A new port every run: lvp checks it with a plain bind, which the server side's
    # TIME_WAIT connections (left by our scrapes) refuse for a minute after a run ends.
    return ("--metrics-port", str(port or free_port()), "--metrics-linger", "0")


def scrape(port: int) -> dict[str, float]:
    """lvp's Prometheus metrics (frames and segments written, segments in flight)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    found = {}
    for name in ("lvp_frames_total", "lvp_segments_total", "lvp_segments_in_flight"):
        m = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
        if m:
            found[name] = float(m.group(1))
    return found


@dataclass
class Cleanup:
    """Waits in a thread for every recorded process of a killed run to end."""

    procs: list[psutil.Process]
    left: list[str] = field(default_factory=list)  # alive CLEANUP_SECONDS after the kill
    seconds: float | None = None  # when the last one ended (None: not within WATCH_SECONDS)
    actors_seconds: float | None = None  # when the last of lvp's actors ended
    gone: dict[int, float] = field(default_factory=dict)  # pid -> seconds after the kill

    def __post_init__(self) -> None:
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        alive = self.procs
        checked = False
        names = {p.pid: _name(p) for p in self.procs}
        while alive and time.monotonic() - self._start < WATCH_SECONDS:
            time.sleep(0.5)
            alive = [p for p in alive if _alive(p)]
            now = time.monotonic() - self._start
            for pid in names.keys() - {p.pid for p in alive} - self.gone.keys():
                self.gone[pid] = now
                if ACTORS.match(names[pid]):
                    self.actors_seconds = max(self.actors_seconds or 0.0, now)
            if not checked and time.monotonic() - self._start >= CLEANUP_SECONDS:
                self.left, checked = [f"{p.pid} {_name(p)}" for p in alive], True
        if not alive:
            self.seconds = time.monotonic() - self._start

    def join(self) -> None:
        self._thread.join()


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _name(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        cmd = proc.cmdline()
        return cmd[0] if cmd and cmd[0].startswith("ray::") else proc.name()
    return "?"


@dataclass
class DriverRun:
    proc: subprocess.Popen
    stderr: str
    seen: dict[int, psutil.Process]  # every descendant it had
    last: dict[str, float]  # its metrics, last read before it ended
    killed: bool
    seconds: float


def run_until(cmd: list[str], target: float | None, resumed_from: int) -> DriverRun:
    """Run `cmd` (plus a fresh metrics port) and SIGKILL it once the video holds `target`
    frames (None: let it finish). A target behind the resume point: killed after its first
    write. Records every descendant, to check later that Ray took them all down."""
    port = free_port()
    proc = launch([*cmd, *metrics_args(port)])
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stdout.read()), daemon=True)
    reader.start()
    seen: dict[int, psutil.Process] = {}
    last: dict[str, float] = {}
    began = time.monotonic()
    killed = False
    while proc.poll() is None:
        for child in descendants(proc.pid):
            seen.setdefault(child.pid, child)
        metrics = scrape(port)
        last = metrics or last
        written = metrics.get("lvp_frames_total", 0)
        if target is not None and written > 0 and resumed_from + written >= target:
            for child in descendants(proc.pid):
                seen.setdefault(child.pid, child)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = True
            break
        time.sleep(0.2)
    seconds = time.monotonic() - began
    reader.join()
    return DriverRun(proc, "".join(err), seen, last, killed, seconds)


# Where the driver kills fall, as fractions of the video. A smoke's render is short: a kill
# late in it could come after the last frame.
KILL_SPAN, SMOKE_KILL_SPAN = (0.03, 0.97), (0.1, 0.5)


def part_driver(tmp: Path, duration: float, model: str, workers: int, kills: int,
                seed: int, span: tuple[float, float] = KILL_SPAN) -> dict:
    """SIGKILL lvp `kills` times at frames drawn evenly over `span` of the video (fractions),
    each time running the same command again; then once more to the end."""
    ref, out = tmp / "driver_ref.mp4", tmp / "driver.mp4"
    clean = render_clean(ref, lvp_command(ref, duration, model, workers, *metrics_args(0)))
    total = clean["report"]["frames"]
    print(f"  fault-free: {clean['wall']:.1f} s, {total} frames", flush=True)
    rng = random.Random(seed)
    targets = sorted(rng.uniform(*span) * total for _ in range(kills))
    rows: list[dict] = []
    cleanups: list[Cleanup] = []
    resumed_from = 0
    start = time.monotonic()
    for i, target in enumerate([*targets, None]):
        run = run_until(lvp_command(out, duration, model, workers), target, resumed_from)
        m = re.search(r"resuming this job at frame (\d+).*rendering from segment (\d+)", run.stderr)
        started_at, again = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        if "nothing to do" in run.stderr:  # the killed run had written every frame
            started_at = total
        if i > 0:  # this run resumed the previous kill: how much of it was done again
            prev = rows[-1]
            prev["next_resumed_from"] = started_at
            prev["rerendered_segments"] = 0 if started_at >= total else \
                max(0, prev["segments_started_end"] - again)
            prev["rewritten_frames"] = max(0, prev["frames_at_kill"] - started_at)
        if not run.killed:
            if run.proc.returncode != 0:
                raise SystemExit(f"faults: final resume failed (exit {run.proc.returncode}): "
                                 f"{run.stderr.strip()[-800:]}")
            break
        cleanups.append(Cleanup(list(run.seen.values())))
        first = again
        written_segments = int(run.last.get("lvp_segments_total", 0))
        in_flight = int(run.last.get("lvp_segments_in_flight", 0))
        rows.append({
            "kill": i + 1, "target_frame": round(target), "resumed_from": started_at,
            "after_seconds": run.seconds,
            "frames_at_kill": started_at + int(run.last.get("lvp_frames_total", 0)),
            "segments_written": written_segments, "in_flight": in_flight,
            # Segments are submitted and written in order: the run had started these.
            "segments_started_end": first + written_segments + in_flight,
            "descendants": len(run.seen),
        })
        print(f"  kill {i + 1}: after {run.seconds:.1f} s at frame "
              f"{rows[-1]['frames_at_kill']} ({in_flight} in flight)", flush=True)
        # lvp resumes from the MP4's whole GOPs; the next run prints where it resumed.
        resumed_from = frames_whole(out)
    wall = time.monotonic() - start
    for cleanup, row in zip(cleanups, rows, strict=True):
        cleanup.join()
        row["left_after_cleanup"] = cleanup.left
        row["cleanup_seconds"] = cleanup.seconds
        row["actors_gone_seconds"] = cleanup.actors_seconds
    # A run killed after its last frame and before its report leaves no report, and the
    # rerun that finds the job complete writes none either.
    final = report_of(out) if out.with_suffix(".json").exists() else None
    equal, how = same_frames(ref, out)
    return {"duration": duration, "workers": workers, "model": model, "frames": total,
            "clean_wall": clean["wall"], "kills_wall": wall, "rows": rows,
            "final_report": final and {k: final[k] for k in ("status", "frames",
                                                             "resumed_from_frame",
                                                             "frames_this_run", "restarts")},
            "frames_equal": equal, "frames_how": how,
            "bytes_equal": ref.read_bytes() == out.read_bytes()}


def frames_whole(path: Path) -> int:
    return fragments(path) * 30  # live preset: one 1 s GOP per fragment


def print_driver(r: dict) -> None:
    w = r["workers"]
    print(f"\nDriver SIGKILL: {r['duration']:g} s of video ({r['frames']} frames) at the live "
          f"preset, {w} workers, model {r['model']}; {len(r['rows'])} kills, the same command "
          "rerun at once after each")
    print("| kill | after s | resumed from | frames at kill | in flight | next run resumed "
          "from | segments rendered again | processes | actors gone after s | left after 60 s "
          "| all gone after s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in r["rows"]:
        gone = "-" if row["cleanup_seconds"] is None else f"{row['cleanup_seconds']:.0f}"
        actors = "-" if row["actors_gone_seconds"] is None else f"{row['actors_gone_seconds']:.0f}"
        print(f"| {row['kill']} | {row['after_seconds']:.1f} | {row['resumed_from']} | "
              f"{row['frames_at_kill']} | {row['in_flight']} | {row.get('next_resumed_from', '-')} "
              f"| {row.get('rerendered_segments', '-')} | {row['descendants']} | {actors} | "
              f"{len(row['left_after_cleanup'])} | {gone} |")
    again = [row.get("rerendered_segments", 0) for row in r["rows"]]
    left = sum(len(row["left_after_cleanup"]) for row in r["rows"])
    fin = r["final_report"] or {"status": "no report (the last kill came after the last "
                                          "frame; the rerun had nothing to do)",
                                "resumed_from_frame": "-", "frames_this_run": "-",
                                "restarts": []}
    print(f"  final frames identical to the fault-free render: {'yes' if r['frames_equal'] else 'NO'}"
          f" ({r['frames_how']}; bytes identical: {'yes' if r['bytes_equal'] else 'no'})")
    print(f"  segments rendered again per kill: max {max(again, default=0)}, mean "
          f"{sum(again) / max(1, len(again)):.1f} (target <= 2 x workers = {2 * w}): "
          f"{'met' if max(again, default=0) <= 2 * w else 'NOT met'}")
    written = [row.get("rerendered_segments", 0) - row["in_flight"] for row in r["rows"]
               if row.get("rerendered_segments")]
    if written:
        print(f"  of those, in flight at the kill: {min(x['in_flight'] for x in r['rows'])}-"
              f"{max(x['in_flight'] for x in r['rows'])}; already in the output (the segment "
              f"holding the resume frame, and the one before it for its tail): "
              f"{min(written)}-{max(written)}")
    print(f"  final run's report: status {fin['status']}, resumed_from_frame "
          f"{fin['resumed_from_frame']}, frames_this_run {fin['frames_this_run']}, restarts "
          f"{len(fin['restarts'])}")
    print(f"  processes of killed runs left {CLEANUP_SECONDS:.0f} s after the kill: {left}")
    names: dict[str, int] = {}
    for row in r["rows"]:
        for proc in row["left_after_cleanup"]:
            name = proc.split(" ", 1)[1]
            names[name] = names.get(name, 0) + 1
    if names:
        print(f"  left at {CLEANUP_SECONDS:.0f} s: "
              + ", ".join(f"{n} x{c}" for n, c in sorted(names.items())))
    print(f"  fault-free {r['clean_wall']:.0f} s; {len(r['rows']) + 1} runs with "
          f"{len(r['rows'])} kills {r['kills_wall']:.0f} s")


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line and exit 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="python -m bench.faults", description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("actors", "driver", "all"), default="all")
    ap.add_argument("--model", default="tiny", help="backend (default: tiny, the bundled model)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--actors-duration", type=float, default=120.0,
                    help="seconds of video for the actor faults (default: 120)")
    ap.add_argument("--every", type=int, default=6, help="segments between segment-actor kills")
    ap.add_argument("--skip", action="append", default=[],
                    choices=("segment", "keyframe", "stitcher"),
                    help="leave this actor alone (repeatable)")
    ap.add_argument("--repeat", type=int, default=2, help="fault-free/faulty pairs (default: 2)")
    ap.add_argument("--driver-duration", type=float, default=300.0,
                    help="seconds of video for the driver kills (default: 300)")
    ap.add_argument("--kills", type=int, default=10, help="driver SIGKILLs (default: 10)")
    ap.add_argument("--seed", type=int, default=0, help="random kill points")
    ap.add_argument("--smoke", action="store_true",
                    help="60 s renders, one pair, 2 driver kills: checks that it runs")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args(argv)
    for name in ("workers", "every", "repeat", "kills"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be 1 or more")
    for name in ("actors_duration", "driver_duration"):
        if not 5 <= getattr(args, name) <= 3600:
            ap.error(f"--{name.replace('_', '-')} must be 5 to 3600 seconds")
    if args.smoke:
        args.actors_duration, args.every, args.repeat = 60.0, 4, 1
        args.driver_duration, args.kills = 30.0, 2
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="lvp-faults-") as tmp:
        if args.part in ("actors", "all"):
            print("Actor faults ...", flush=True)
            results["actors"] = part_actors(Path(tmp), args.actors_duration, args.model,
                                            args.workers, args.repeat, args.every,
                                            frozenset(args.skip))
            print_actors(results["actors"])
        if args.part in ("driver", "all"):
            print("\nDriver kills ...", flush=True)
            span = SMOKE_KILL_SPAN if args.smoke else KILL_SPAN
            results["driver"] = part_driver(Path(tmp), args.driver_duration, args.model,
                                            args.workers, args.kills, args.seed, span)
            print_driver(results["driver"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
