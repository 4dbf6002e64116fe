"""Soak: one long render at the live preset, memory of every process sampled all the way.

    python -m bench.soak                      # one hour of video (about 30 min on 2 cores)
    python -m bench.soak --duration 10m       # shorter
    python -m bench.soak --smoke              # 120 s of video: checks that the soak runs

Runs `lvp render --preset live --duration D` (bundled tiny model) as a real subprocess and
samples, every few seconds, the RSS and PSS of the lvp process and every descendant (Ray's
GCS, raylet and actors). Prints the growth after warm-up (target: under 50 MB), the LMDB
store's size, the wall time, and every listening socket of the run's processes that is not
on a loopback address (target: none). --json writes all samples.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NoReturn

import psutil

from engine.errors import InputError
from engine.spec import parse_duration

PROMPT = "a red circle bouncing on a night background"
REPO = Path(__file__).resolve().parent.parent
MB = 1e6
GROWTH_TARGET_MB = 50.0


@dataclass
class Sample:
    t: float  # seconds since launch
    processes: int
    rss: int  # bytes, summed over the lvp process and its descendants
    pss: int  # proportional: shared pages (Ray's object store) counted once in all
    uss: int = 0  # private pages only: what a process would give back if it ended
    # name -> (rss, pss, uss)
    by_name: dict[str, tuple[int, int, int]] = field(default_factory=dict)


@dataclass
class Sampler:
    """Samples the process tree of `pid` every `interval` s in a thread; also records every
    listening socket the tree opens (every `sockets_every` samples)."""

    pid: int
    interval: float
    sockets_every: int = 3
    samples: list[Sample] = field(default_factory=list)
    listening: dict[tuple[str, str, int], str] = field(default_factory=dict)  # -> process name
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid)
        procs = [root, *root.children(recursive=True)]
        for proc in procs:
            self.seen.setdefault(proc.pid, proc)
        return procs

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                procs = self._tree()
            except psutil.NoSuchProcess:
                return
            rss = pss = uss = 0
            by_name: dict[str, tuple[int, int, int]] = {}
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    mem = proc.memory_full_info()  # reads smaps: a few ms per process
                    rss, pss, uss = rss + mem.rss, pss + mem.pss, uss + mem.uss
                    name = process_name(proc)
                    old = by_name.get(name, (0, 0, 0))
                    by_name[name] = (old[0] + mem.rss, old[1] + mem.pss, old[2] + mem.uss)
            # The tree can end between listing and reading it: a sample of nothing is not a zero.
            if by_name:
                self.samples.append(Sample(time.monotonic() - self._start, len(procs), rss, pss,
                                           uss, by_name))
            if n % self.sockets_every == 0:
                self._sockets(procs)
            n += 1
            self._stop.wait(self.interval)

    def _sockets(self, procs: list[psutil.Process]) -> None:
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                name = process_name(proc)
                for conn in proc.net_connections(kind="inet"):
                    # TCP: listening; UDP: any bound socket without a peer.
                    if conn.status == psutil.CONN_LISTEN or (conn.status == psutil.CONN_NONE
                                                             and not conn.raddr):
                        kind = "tcp" if conn.status == psutil.CONN_LISTEN else "udp"
                        self.listening[(kind, conn.laddr.ip, conn.laddr.port)] = name

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def process_name(proc: psutil.Process) -> str:
    """'ray::SegmentActor', 'gcs_server', 'lvp' ...: what a reader recognises."""
    cmd = proc.cmdline()
    if cmd and cmd[0].startswith("ray::"):
        return cmd[0].split()[0].split(".")[0]  # the actor, not the method it runs
    if any(part == "cli" for part in cmd[:4]):
        return "lvp"
    return proc.name()


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
    return (mapped or addr).is_loopback


def lvp_env() -> dict[str, str]:
    """Run this checkout's lvp (and Ray workers import it too), whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def store_bytes(workdir: Path) -> tuple[int, int]:
    """LMDB store: (bytes on disk, apparent size); the map file is sparse."""
    files = [f for f in (workdir / "memory.lmdb").iterdir() if f.is_file()]
    return sum(f.stat().st_blocks * 512 for f in files), sum(f.stat().st_size for f in files)


def gone_within(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still running after up to `timeout` s (is_running checks pid reuse)."""
    deadline = time.monotonic() + timeout
    alive = procs
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.5)
    return alive


def steady(samples: list[Sample], warmup_end: float) -> list[Sample]:
    """The samples after warm-up and before shutdown (the trailing ones that miss part of
    the process tree: Ray going down)."""
    after = [s for s in samples if s.t >= warmup_end]
    if len(after) < 4:
        raise SystemExit(f"soak: only {len(after)} samples after warm-up; run longer")
    full = statistics.median(s.processes for s in after)
    while len(after) > 4 and after[-1].processes < full:
        after.pop()
    return after


def windows(after: list[Sample], window: float) -> tuple[list[Sample], list[Sample]]:
    head = [s for s in after if s.t < after[0].t + window] or after[:2]
    tail = [s for s in after if s.t > after[-1].t - window] or after[-2:]
    return head, tail


def growth(samples: list[Sample], warmup_end: float, window: float) -> dict[str, float]:
    """Memory after warm-up: median of the first `window` s after it vs the last `window` s
    before shutdown, the largest sample vs that first median, and a least-squares slope in
    MB per hour of wall time."""
    after = steady(samples, warmup_end)
    head, tail = windows(after, window)
    out: dict[str, float] = {}
    for key in ("rss", "pss", "uss"):
        first = statistics.median(getattr(s, key) for s in head)
        last = statistics.median(getattr(s, key) for s in tail)
        ts = [s.t for s in after]
        ys = [getattr(s, key) for s in after]
        slope = statistics.linear_regression(ts, ys).slope if len(set(ts)) > 1 else 0.0
        out[f"{key}_start_mb"] = first / MB
        out[f"{key}_end_mb"] = last / MB
        out[f"{key}_growth_mb"] = (last - first) / MB
        out[f"{key}_peak_over_start_mb"] = (max(ys) - first) / MB
        out[f"{key}_slope_mb_per_hour"] = slope * 3600 / MB
    return out


def quarters(samples: list[Sample], warmup_end: float, window: float) -> dict[str, list[float]]:
    """RSS in MB per process name (and in all) at the start, 1/4, 1/2, 3/4 and end of the
    steady part: a step (an allocator arena) reads differently from a steady climb."""
    after = steady(samples, warmup_end)
    t0, t1 = after[0].t, after[-1].t
    points = [t0 + (t1 - t0) * q for q in (0.0, 0.25, 0.5, 0.75, 1.0)]
    names = sorted(set().union(*(s.by_name for s in after)))
    out: dict[str, list[float]] = {}
    for name in [*names, "all"]:
        row = []
        for t in points:
            near = [s for s in after if abs(s.t - t) <= window / 2] or \
                [min(after, key=lambda s, t=t: abs(s.t - t))]
            row.append(statistics.median(s.rss if name == "all" else
                                         s.by_name.get(name, (0, 0, 0))[0] for s in near) / MB)
        out[name] = row
    return out


def growth_by_process(samples: list[Sample], warmup_end: float,
                      window: float) -> dict[str, tuple[float, float, float]]:
    """Per process name (actors of one class summed): (RSS, PSS, USS) growth in MB, as above."""
    head, tail = windows(steady(samples, warmup_end), window)
    names = set().union(*(s.by_name for s in head + tail))

    def median(part: list[Sample], name: str, i: int) -> float:
        return statistics.median(s.by_name.get(name, (0, 0, 0))[i] for s in part)

    return {name: tuple((median(tail, name, i) - median(head, name, i)) / MB for i in range(3))
            for name in sorted(names)}


def soak(duration: str, model: str, interval: float, warmup: float | None,
         tmp: Path, settle: float = 60.0) -> dict:
    out = tmp / "soak.mp4"
    cmd = [sys.executable, "-m", "cli", "render", "--prompt", PROMPT, "--preset", "live",
           "--duration", duration, "--model", model, "--out", str(out), "--quiet"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=lvp_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid, interval)
    _, err = proc.communicate()
    wall = time.monotonic() - start
    sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"soak: lvp render failed (exit {proc.returncode}): {err.strip()[-800:]}")
    left = gone_within(list(sampler.seen.values()), 60.0)
    report = json.loads(out.with_suffix(".json").read_text())
    # Warm-up: Ray and the actors start and the first segments go through; by default until
    # the first frame plus `settle` s (60), or a tenth of the run if that is longer.
    first_frame = report["first_segment_seconds"]
    warm = warmup if warmup is not None else max(first_frame + settle, 0.1 * wall)
    window = max(interval * 3, min(120.0, 0.05 * wall))
    disk, apparent = store_bytes(out.with_suffix(".lvp"))
    foreign = {f"{k[0]} {k[1]}:{k[2]}": name for k, name in sampler.listening.items()
               if not is_loopback(k[1])}
    return {
        "command": " ".join(cmd[1:]),
        "video_seconds": report["duration_seconds"],
        "frames": report["frames"],
        "wall_seconds": wall,
        "report_wall_seconds": report["wall_seconds"],
        "realtime_factor": report["realtime_factor"],
        "warmup_seconds": warm,
        "window_seconds": window,
        "samples": len(sampler.samples),
        "max_processes": max((s.processes for s in sampler.samples), default=0),
        "memory": growth(sampler.samples, warm, window),
        "growth_by_process_mb": growth_by_process(sampler.samples, warm, window),
        "rss_quarters_mb": quarters(sampler.samples, warm, window),
        "lmdb_bytes_on_disk": disk,
        "lmdb_bytes_apparent": apparent,
        "mp4_bytes": out.stat().st_size,
        "listening": {f"{k[0]} {k[1]}:{k[2]}": n for k, n in sorted(sampler.listening.items())},
        "listening_not_loopback": foreign,
        "processes_left_after_60s": [f"{p.pid} {p.name()}" for p in left],
        "trace": [asdict(s) for s in sampler.samples],
    }


def print_results(r: dict) -> None:
    m = r["memory"]
    ok = "yes" if m["rss_growth_mb"] < GROWTH_TARGET_MB and m["pss_growth_mb"] < GROWTH_TARGET_MB \
        else "NO"
    print(f"Soak: {r['command']}")
    print(f"  video {r['video_seconds']:.0f} s, {r['frames']} frames, wall {r['wall_seconds']:.0f} s "
          f"(real-time factor {r['realtime_factor']:.2f}), {r['samples']} samples, "
          f"up to {r['max_processes']} processes")
    print(f"  warm-up: first {r['warmup_seconds']:.0f} s; medians over {r['window_seconds']:.0f} s windows")
    print("  | sum over processes | after warm-up MB | at the end MB | growth MB | peak over start MB "
          "| slope MB/h |")
    for key in ("rss", "pss", "uss"):
        print(f"  | {key.upper()} | {m[f'{key}_start_mb']:.0f} | {m[f'{key}_end_mb']:.0f} | "
              f"{m[f'{key}_growth_mb']:+.1f} | {m[f'{key}_peak_over_start_mb']:+.1f} | "
              f"{m[f'{key}_slope_mb_per_hour']:+.1f} |")
    print(f"  growth under {GROWTH_TARGET_MB:.0f} MB: {ok}")
    top = sorted(r["growth_by_process_mb"].items(), key=lambda kv: -abs(kv[1][1]))[:6]
    print("  growth by process (RSS / PSS / USS MB): "
          + ", ".join(f"{name} {rss:+.1f} / {pss:+.1f} / {uss:+.1f}"
                      for name, (rss, pss, uss) in top))
    print("  | RSS MB, after warm-up: | start | 1/4 | 1/2 | 3/4 | end |")
    for name, row in r["rss_quarters_mb"].items():
        print(f"  | {name} | " + " | ".join(f"{x:.0f}" for x in row) + " |")
    print(f"  LMDB store: {r['lmdb_bytes_on_disk'] / 2**20:.2f} MiB on disk "
          f"({r['lmdb_bytes_apparent'] / 2**20:.0f} MiB map); MP4 {r['mp4_bytes'] / 2**20:.1f} MiB")
    print(f"  listening sockets of the run's processes: {len(r['listening'])}, not on loopback: "
          f"{len(r['listening_not_loopback'])} {r['listening_not_loopback'] or ''}".rstrip())
    print(f"  processes of the run left 60 s after it ended: {len(r['processes_left_after_60s'])}")


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line and exit 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--duration", default="1h", help="video length, as lvp takes it (default: 1h)")
    ap.add_argument("--model", default="tiny", help="backend (default: tiny, the bundled model)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, help="seconds of warm-up not counted (default: first "
                                                 "frame + 60 s, or a tenth of the run)")
    ap.add_argument("--smoke", action="store_true",
                    help="120 s of video, four samples a second, warm-up until 3 s after the "
                         "first frame")
    ap.add_argument("--json", type=Path, help="write every figure and sample here")
    args = ap.parse_args(argv)
    if args.interval <= 0:
        ap.error("--interval must be more than 0")
    try:
        parse_duration(args.duration)
    except InputError as exc:
        ap.error(str(exc))
    duration, interval = ("120", min(args.interval, 0.25)) if args.smoke else (args.duration,
                                                                           args.interval)
    with tempfile.TemporaryDirectory(prefix="lvp-soak-") as tmp:
        results = soak(duration, args.model, interval, args.warmup, Path(tmp),
                       settle=3.0 if args.smoke else 60.0)
    print_results(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
