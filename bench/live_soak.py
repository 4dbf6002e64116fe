"""Live soak: `lvp stream` watched by hls.js in headless Chromium for an hour.

    python -m bench.live_soak                    # one hour of stream (issue 14's target)
    python -m bench.live_soak --duration 10m     # shorter
    python -m bench.live_soak --smoke            # 75 s: checks that the soak runs

Launches `lvp stream --model tiny --preset live --serve 127.0.0.1:PORT --duration D` as a user
would, opens the page it serves in Debian's chromium (playwright-core from tests/browser,
hls.js from live/web; `node tests/browser/soak.mjs`) and plays it to the end. Meanwhile it
records, every --interval seconds, lvp's /metrics (live lag gauge, segments published, late
segments), the playlist as a player reads it (each segment's lateness from its
PROGRAM-DATE-TIME), the HLS folder's file count and bytes, and, every --memory-interval
seconds, the RSS/PSS/USS of lvp's process tree (bench.soak's Sampler). The player reports
currentTime, its distance from the live edge, the buffer ahead, stalls and errors.

Targets (issue 14): lag under 2 segment durations, 0 stalls in hls.js, memory growth under
50 MB after warm-up, HLS folder size bounded. The exit status is 0 whether they are met or
not (a measurement); the summary says met / NOT met for each. --json writes every sample.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.live import free_port
from bench.soak import GROWTH_TARGET_MB, OneLineParser, Sample, Sampler, growth, growth_by_process, lvp_env
from engine.errors import InputError
from engine.spec import parse_duration
from live.watch import parse_playlist

REPO = Path(__file__).resolve().parent.parent
BROWSER = REPO / "tests" / "browser"
PLAYER_SCRIPT = BROWSER / "soak.mjs"
TOKEN = "bench-live-soak-token-0123456789"
PROMPT = "a blue star orbiting in the ocean"
SMOKE_SECONDS = 75.0
LAG_TARGET_SEGMENTS = 2.0
# A `waiting` that ends within this is Chromium stepping over a seek or a tiny gap (a few
# ms in the smoke runs): reported, but not a stall a viewer sees (3 frames at 30 fps).
VISIBLE_STALL_SECONDS = 0.1
METRICS = ("lvp_live_lag_seconds", "lvp_live_late_segments_total",
           "lvp_live_segments_published_total")


def chromium_path() -> str | None:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return found if Path(found).exists() else None


def missing_npm() -> list[str]:
    """The npm packages the player needs, as the commands that install them."""
    needed = ((BROWSER / "node_modules" / "playwright-core", "npm install --prefix tests/browser"),
              (REPO / "live" / "web" / "node_modules" / "hls.js", "npm install --prefix live/web"))
    return [how for path, how in needed if not path.exists()]


def scrape(text: str) -> dict[str, float]:
    """The live figures from lvp's /metrics (Prometheus text)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in METRICS:
                out[sample.name] = sample.value
    return out


def folder_size(folder: Path) -> tuple[int, int]:
    """(files, bytes) in the HLS folder; files may vanish while it is read (old segments)."""
    files = size = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file(follow_symlinks=False):
                    size += entry.stat(follow_symlinks=False).st_size
                    files += 1
    return files, size


class PlaylistLog:
    """Every segment the playlist ever listed, as a player sees it, with its lateness: the gap
    between its PROGRAM-DATE-TIME and the end of the one before (lvp restarts the schedule
    from a late segment, so the gap is how late it was). Exact, whatever the sampling rate,
    as long as a poll comes within a playlist's window."""

    def __init__(self) -> None:
        self.segments: dict[int, dict[str, Any]] = {}  # media sequence number -> segment
        self.missed = 0  # segments that left the window between two polls
        self.ended = False
        self.ended_wall: float | None = None  # when ENDLIST was first seen

    def add(self, text: str, now: float) -> None:
        listing = parse_playlist(text)
        self.ended = listing.ended
        if listing.ended and self.ended_wall is None:
            self.ended_wall = now
        newest = max(self.segments, default=None)
        if newest is not None and listing.media_sequence > newest + 1:
            self.missed += listing.media_sequence - newest - 1
        for seq, (uri, duration, date) in enumerate(listing.segments,
                                                    start=listing.media_sequence):
            if seq in self.segments:
                continue
            before = self.segments.get(seq - 1)
            late = None
            if before and before["date"] is not None and date is not None:
                late = max(0.0, date - (before["date"] + before["duration"]))
            self.segments[seq] = {"seq": seq, "uri": uri, "duration": duration, "date": date,
                                  "seen": now, "late_seconds": late}

    def segment_seconds(self) -> float | None:
        durations = [s["duration"] for s in self.segments.values()]
        return statistics.median(durations) if durations else None


class PlayerReader:
    """Reads soak.mjs's JSON lines on a thread (a full pipe would stall the player)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.samples: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.end: dict[str, Any] | None = None
        self.start: dict[str, Any] | None = None
        self.garbage: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                item = json.loads(line)
            except ValueError:
                if len(self.garbage) < 20:
                    self.garbage.append(line.rstrip())
                continue
            kind = item.pop("type", None)
            if kind == "sample":
                self.samples.append(item)
            elif kind == "event":
                self.events.append(item)
            elif kind == "end":
                self.end = item
            elif kind == "start":
                self.start = item

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def stop(proc: subprocess.Popen[Any], sig: int, wait: float) -> None:
    """Ask a process we started to end (SIGINT: lvp writes ENDLIST and its report), then kill
    it if it does not."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def soak(args: argparse.Namespace, seconds: float, tmp: Path) -> dict[str, Any]:
    port = free_port()
    folder = tmp / "hls"
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "cli", "stream", "--prompt", PROMPT, "--model", args.model,
           "--preset", "live", "--duration", f"{seconds:g}", "--serve", f"127.0.0.1:{port}",
           "--hls", str(folder), "--executor", args.executor, "--ahead", f"{args.ahead:g}",
           "--window", str(args.window)]
    log_path = tmp / "lvp.log"
    launched = time.time()
    with log_path.open("w") as log:  # a file, not a pipe: an hour of lines never blocks lvp
        lvp = subprocess.Popen(cmd, cwd=REPO, env={**lvp_env(), "LVP_STREAM_TOKEN": TOKEN},
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               text=True)
    sampler = Sampler(lvp.pid, args.memory_interval)
    sampler_wall0 = time.time()  # Sample.t counts from about here
    playlist = PlaylistLog()
    lvp_samples: list[dict[str, Any]] = []
    player: subprocess.Popen[str] | None = None
    reader: PlayerReader | None = None
    first_segment: float | None = None
    lvp_exit: float | None = None
    player_log = (tmp / "player.log").open("w")
    http = requests.Session()
    # The stream lasts its duration at wall-clock pace after start-up, then lingers a playlist
    # so players reach the end; past this lvp is stuck and gets Ctrl-C.
    deadline = launched + seconds + args.window * 2 + 180
    interrupted = False
    try:
        try:
            while lvp.poll() is None and time.time() < deadline:
                tick = time.time()
                row: dict[str, Any] = {"wall": tick, "t": tick - launched}
                with contextlib.suppress(requests.RequestException, ValueError):
                    row.update(scrape(http.get(url + "metrics", timeout=5).text))
                with contextlib.suppress(requests.RequestException, ValueError):
                    reply = http.get(url + "stream.m3u8", timeout=5)
                    if reply.status_code == 200:
                        playlist.add(reply.text, tick)
                row["files"], row["bytes"] = folder_size(folder)
                row["segments_seen"] = len(playlist.segments)
                lvp_samples.append(row)
                if first_segment is None and playlist.segments:
                    first_segment = tick - launched
                    # The player starts once a segment is listed, as a viewer opening the URL
                    # printed at start would get a playing stream.
                    player = subprocess.Popen(
                        ["node", PLAYER_SCRIPT.name, url, f"{seconds + args.window * 2 + 120:g}",
                         f"{args.player_interval:g}"],
                        cwd=BROWSER, env={**os.environ, "CHROMIUM": args.chromium},
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=player_log, text=True)
                    reader = PlayerReader(player)
                if first_segment is None and tick - launched > 120:
                    raise SystemExit("live soak: lvp listed no segment in 120 s; log: "
                                     + log_path.read_text()[-800:])
                time.sleep(max(0.0, args.interval - (time.time() - tick)))
        except KeyboardInterrupt:
            # Ctrl-C reaches lvp and the player too (one process group): they end cleanly,
            # and the samples so far are still summarised.
            interrupted = True
        lvp_exit = time.time()
    finally:
        stop(lvp, signal.SIGINT, 120)
        lvp_exit = lvp_exit or time.time()
        sampler.stop()
        if player is not None:
            # It ends by itself when the video ends (ENDLIST); lvp lingered for that.
            try:
                player.wait(60)
            except subprocess.TimeoutExpired:
                stop(player, signal.SIGTERM, 30)
        if reader is not None:
            reader.join(10)
        player_log.close()
    return {
        "command": " ".join(["lvp", *cmd[3:]]),
        "seconds": seconds,
        "interrupted": interrupted,
        "launched": launched,
        "lvp_exit_wall": lvp_exit,
        "lvp_exit_status": lvp.returncode,
        "lvp_log_tail": log_path.read_text()[-2000:].splitlines()[-8:],
        "player_log_tail": ((tmp / "player.log").read_text()[-2000:].splitlines()[-8:]
                            if (tmp / "player.log").exists() else []),
        "first_segment_seconds": first_segment,
        "lvp_samples": lvp_samples,
        "segments": list(playlist.segments.values()),
        "segments_missed_between_polls": playlist.missed,
        "playlist_ended": playlist.ended,
        "playlist_ended_wall": playlist.ended_wall,
        "memory_t0_wall": sampler_wall0,
        "segment_seconds": playlist.segment_seconds(),
        "memory_samples": [asdict(s) for s in sampler.samples],
        "player_start": reader.start if reader else None,
        "player_samples": reader.samples if reader else [],
        "player_events": reader.events if reader else [],
        "player_end": reader.end if reader else None,
        "player_garbage": reader.garbage if reader else [],
    }


def summarise(r: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    seg = r["segment_seconds"] or 1.0
    exit_wall = r["lvp_exit_wall"]
    # The stream's steady part ends when ENDLIST is listed: after it lvp lingers, then shuts
    # down (memory falls), and the player's live-edge figures no longer mean anything.
    end_wall = min(r["playlist_ended_wall"] or exit_wall, exit_wall)
    # Lag: lvp's gauge at each sample, and each segment's lateness read from the playlist
    # (which catches a late segment between two samples); the worse of the two counts.
    gauge = [s["lvp_live_lag_seconds"] for s in r["lvp_samples"] if "lvp_live_lag_seconds" in s]
    lateness = [s["late_seconds"] for s in r["segments"] if s["late_seconds"] is not None]
    lag_max = max(gauge + lateness, default=None)
    last = next((s for s in reversed(r["lvp_samples"]) if "lvp_live_late_segments_total" in s), {})
    # Player: only while lvp was up (once the server is gone a lagging player's errors are
    # the harness's doing), and only once playback started.
    during = [s for s in r["player_samples"] if s["wall"] <= exit_wall]
    playing = [s for s in during if s["ct"] > 0 and s["wall"] <= end_wall]
    final = (r["player_end"] or {}).get("last") or (r["player_samples"][-1]
                                                    if r["player_samples"] else {})
    up_to_exit = during[-1] if during else {}
    events = [e for e in r["player_events"] if e["wall"] <= exit_wall]
    stalls_hls = sum(1 for e in events if e.get("details") == "bufferStalledError")
    waiting = sum(1 for e in events if e.get("kind") == "waiting")
    # How long each `waiting` lasted (until `playing`); one never resumed counts as visible.
    waits = [e["after"] for e in events if e.get("kind") == "resumed"]
    visible = sum(1 for w in waits if w >= VISIBLE_STALL_SECONDS) + max(0, waiting - len(waits))
    fatal = [f"{e['type']}: {e['details']}" for e in events if e.get("kind") == "hls_error"
             and e.get("fatal")]
    fatal_after = [f"{e['type']}: {e['details']}" for e in r["player_events"]
                   if e["wall"] > exit_wall and e.get("kind") == "hls_error" and e.get("fatal")]
    if r["player_end"] and r["player_end"].get("why") in ("error", "page_crashed"):
        fatal.append(f"player {r['player_end']['why']}: {r['player_end'].get('error', '')}")
    errors: dict[str, int] = {}
    for e in events:
        if e.get("kind") == "hls_error":
            key = f"{e['type']}: {e['details']}"
            errors[key] = errors.get(key, 0) + 1
    latency = [s["latency"] for s in playing if s.get("latency") is not None]
    behind = [s["behind_wall"] for s in playing if s.get("behind_wall") is not None]
    ahead = [s["ahead"] for s in playing]
    rate = None
    if len(playing) >= 2 and playing[-1]["wall"] > playing[0]["wall"]:
        rate = (playing[-1]["ct"] - playing[0]["ct"]) / (playing[-1]["wall"] - playing[0]["wall"])
    # Memory: warm-up as bench.soak (first segment + 60 s, or a tenth of the run).
    wall = exit_wall - r["launched"]
    live_wall = end_wall - r["launched"]
    first = r["first_segment_seconds"] or 0.0
    warm = args.warmup if args.warmup is not None else max(first + 60.0, 0.1 * live_wall)
    window = max(args.memory_interval * 3, min(120.0, 0.05 * live_wall))
    offset = r["memory_t0_wall"] - r["launched"]  # Sample.t -> seconds since launch
    # From the JSON's dicts, so a saved run can be summarised again.
    live_memory = [Sample(**{**m, "by_name": {k: tuple(v) for k, v in m["by_name"].items()}})
                   for m in r["memory_samples"] if m["t"] + offset <= live_wall]
    memory: dict[str, Any] | None
    by_process: dict[str, Any] = {}
    try:
        memory = growth(live_memory, warm - offset, window)
        by_process = growth_by_process(live_memory, warm - offset, window)
    except SystemExit as exc:  # too few samples after warm-up: say so, keep the rest
        memory = {"error": str(exc)}
    # Folder: after warm-up, at most what lvp's sliding window keeps (stitcher.playlist:
    # the listed segments; those removed less than a playlist duration + target duration ago,
    # one more for the deletion's timing; the look-ahead, plus the one being waited on; the
    # playlist and a temp file), and the bytes of the last quarter no more than 1.5x the
    # first quarter's (the tiny model's segments are much alike in size).
    steady = [s for s in r["lvp_samples"] if s["t"] >= warm and s["wall"] <= end_wall]
    file_bound = (args.window + math.ceil((args.window * seg + math.ceil(seg)) / seg) + 1
                  + math.ceil(args.ahead / seg) + 1 + 2)
    folder: dict[str, Any] = {
        "files_min": min((s["files"] for s in steady), default=None),
        "files_max": max((s["files"] for s in steady), default=None),
        "bytes_min": min((s["bytes"] for s in steady), default=None),
        "bytes_max": max((s["bytes"] for s in steady), default=None),
        "files_bound": file_bound,
        "files_max_whole_run": max((s["files"] for s in r["lvp_samples"]), default=None),
        "bytes_max_whole_run": max((s["bytes"] for s in r["lvp_samples"]), default=None),
    }
    if len(steady) >= 8:
        quarter = len(steady) // 4
        folder["bytes_max_first_quarter"] = max(s["bytes"] for s in steady[:quarter])
        folder["bytes_max_last_quarter"] = max(s["bytes"] for s in steady[-quarter:])
    lag_met = lag_max is not None and lag_max < LAG_TARGET_SEGMENTS * seg
    stalls_met = bool(playing) and stalls_hls == 0 and visible == 0 and not fatal
    mem_met = (memory is not None and "error" not in memory
               and memory["rss_growth_mb"] < GROWTH_TARGET_MB
               and memory["pss_growth_mb"] < GROWTH_TARGET_MB)
    folder_met = (folder["files_max"] is not None and folder["files_max"] <= file_bound
                  and folder.get("bytes_max_last_quarter", 0)
                  <= 1.5 * folder.get("bytes_max_first_quarter", 0))
    return {
        "segment_seconds": seg,
        "first_segment_seconds": r["first_segment_seconds"],
        "lvp_exit_status": r["lvp_exit_status"],
        "wall_seconds": wall,
        "endlist_seconds": live_wall,
        "lvp_samples": len(r["lvp_samples"]),
        "player_samples": len(r["player_samples"]),
        "memory_samples": len(r["memory_samples"]),
        "lag": {
            "gauge_max_seconds": max(gauge, default=None),
            "gauge_p95_seconds": percentile(gauge, 0.95),
            "segment_lateness_max_seconds": max(lateness, default=None),
            "max_seconds": lag_max,
            "max_segments": None if lag_max is None else lag_max / seg,
            "p95_segments": None if not gauge else percentile(gauge, 0.95) / seg,
            "late_segments": last.get("lvp_live_late_segments_total"),
            "late_segments_in_playlist": sum(1 for x in lateness if x > 0.05),
            "segments_published": last.get("lvp_live_segments_published_total"),
            "segments_missed_between_polls": r["segments_missed_between_polls"],
        },
        "player": {
            "started": bool(playing),
            "final_current_time": final.get("ct"),
            "ended": bool(final.get("ended")),
            "end_reason": (r["player_end"] or {}).get("why"),
            "current_time_at_lvp_exit": up_to_exit.get("ct"),
            "advance_rate": rate,
            "stalls_hls": stalls_hls,
            "waiting": waiting,
            "waiting_visible": visible,
            "waiting_longest_seconds": max(waits, default=None),
            "seeks": sum(1 for e in events if e.get("kind") == "seeking"),
            "waiting_seconds": up_to_exit.get("waiting_seconds", 0.0),
            "fatal": fatal,
            "fatal_after_lvp_exit": fatal_after,
            "errors": errors,
            "live_edge_latency_median": statistics.median(latency) if latency else None,
            "live_edge_latency_max": max(latency, default=None),
            "behind_wall_clock_median": statistics.median(behind) if behind else None,
            "behind_wall_clock_max": max(behind, default=None),
            "buffer_ahead_median": statistics.median(ahead) if ahead else None,
            "buffer_ahead_min": min(ahead, default=None),
            "dropped_frames": final.get("dropped"),
            "decoded_frames": final.get("decoded"),
        },
        "memory": memory,
        "memory_growth_by_process_mb": by_process,
        "warmup_seconds": warm,
        "memory_window_seconds": window,
        "folder": folder,
        "targets": {
            f"lag under {LAG_TARGET_SEGMENTS:g} segment durations": lag_met,
            "0 stalls in hls.js (and 0 fatal errors)": stalls_met,
            f"memory growth under {GROWTH_TARGET_MB:g} MB after warm-up (RSS and PSS)": mem_met,
            "HLS folder size bounded": folder_met,
        },
    }


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def print_summary(r: dict[str, Any], s: dict[str, Any]) -> None:
    lag, p, f = s["lag"], s["player"], s["folder"]
    print(f"Live soak: {r['command']}" + ("  (interrupted: Ctrl-C)" if r.get("interrupted") else ""))
    print(f"  {r['seconds']:.0f} s of stream, wall {s['wall_seconds']:.0f} s, first segment "
          f"listed {fmt(s['first_segment_seconds'], '.1f')} s after launch, lvp exit "
          f"{s['lvp_exit_status']}; segments of {s['segment_seconds']:g} s")
    print(f"  samples: lvp {s['lvp_samples']}, player {s['player_samples']}, "
          f"memory {s['memory_samples']}")
    print(f"  lag: max {fmt(lag['max_seconds'])} s = {fmt(lag['max_segments'])} segments "
          f"(gauge max {fmt(lag['gauge_max_seconds'])} s, p95 {fmt(lag['gauge_p95_seconds'])} s "
          f"= {fmt(lag['p95_segments'])} segments; worst segment in the playlist "
          f"{fmt(lag['segment_lateness_max_seconds'])} s late)")
    print(f"  late segments: {fmt(lag['late_segments'], '.0f')} of "
          f"{fmt(lag['segments_published'], '.0f')} published "
          f"(playlist: {lag['late_segments_in_playlist']}); segments missed between polls: "
          f"{lag['segments_missed_between_polls']}")
    print(f"  player: currentTime {fmt(p['current_time_at_lvp_exit'], '.1f')} s when lvp "
          f"exited, final {fmt(p['final_current_time'], '.1f')} s, ended: {p['ended']} "
          f"({p['end_reason']}); advance {fmt(p['advance_rate'], '.3f')} s per s")
    print(f"  stalls: hls.js BUFFER_STALLED_ERROR {p['stalls_hls']}, video waiting "
          f"{p['waiting_visible']} of {VISIBLE_STALL_SECONDS:g} s or more (all: {p['waiting']}, "
          f"{p['waiting_seconds']:.2f} s in all, longest {fmt(p['waiting_longest_seconds'], '.3f')}"
          f" s; seeks {p['seeks']}); fatal errors {len(p['fatal'])} {p['fatal'] or ''}".rstrip())
    if p["errors"]:
        print("  hls.js errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(p["errors"].items())))
    if p["fatal_after_lvp_exit"]:
        print(f"  (after lvp exited, not counted: {p['fatal_after_lvp_exit']})")
    print(f"  player distance from the live edge (hls.js latency): median "
          f"{fmt(p['live_edge_latency_median'])} s, max {fmt(p['live_edge_latency_max'])} s; "
          f"on screen vs PROGRAM-DATE-TIME: median {fmt(p['behind_wall_clock_median'])} s, max "
          f"{fmt(p['behind_wall_clock_max'])} s; buffered ahead median "
          f"{fmt(p['buffer_ahead_median'])} s, min {fmt(p['buffer_ahead_min'])} s; dropped "
          f"frames {p['dropped_frames']} of {p['decoded_frames']}")
    m = s["memory"]
    if m is None or "error" in m:
        print(f"  memory: {m and m['error']}")
    else:
        print(f"  memory after {s['warmup_seconds']:.0f} s warm-up (medians over "
              f"{s['memory_window_seconds']:.0f} s): " + ", ".join(
                  f"{k.upper()} {m[f'{k}_start_mb']:.0f} -> {m[f'{k}_end_mb']:.0f} MB "
                  f"({m[f'{k}_growth_mb']:+.1f}, slope {m[f'{k}_slope_mb_per_hour']:+.1f} MB/h)"
                  for k in ("rss", "pss", "uss")))
    print(f"  HLS folder after warm-up: {f['files_min']}-{f['files_max']} files (bound "
          f"{f['files_bound']}), {fmt(f['bytes_min'] and f['bytes_min'] / 1e6)}-"
          f"{fmt(f['bytes_max'] and f['bytes_max'] / 1e6)} MB")
    for target, met in s["targets"].items():
        print(f"  target {target}: {'met' if met else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="python -m bench.live_soak", description=__doc__.split("\n")[0])
    ap.add_argument("--duration", default="1h",
                    help="length of the stream, as lvp takes it (default: 1h)")
    ap.add_argument("--seconds", type=float, help="length of the stream in seconds (overrides "
                                                  "--duration)")
    ap.add_argument("--smoke", action="store_true",
                    help=f"{SMOKE_SECONDS:.0f} s of stream: checks that the soak runs")
    ap.add_argument("--model", default="tiny", help="backend (default: tiny, the bundled model)")
    ap.add_argument("--executor", default="local", choices=("local", "ray"))
    ap.add_argument("--ahead", type=float, default=2.0, help="lvp stream --ahead (default: 2)")
    ap.add_argument("--window", type=int, default=8, help="lvp stream --window (default: 8)")
    ap.add_argument("--interval", type=float, default=1.0,
                    help="seconds between reads of /metrics, the playlist and the folder")
    ap.add_argument("--memory-interval", type=float, default=5.0,
                    help="seconds between memory samples of lvp's process tree")
    ap.add_argument("--player-interval", type=float, default=2.0,
                    help="seconds between the player's reports")
    ap.add_argument("--warmup", type=float, help="seconds of warm-up not counted for memory and "
                                                 "the folder (default: first segment + 60 s, or "
                                                 "a tenth of the run)")
    ap.add_argument("--json", type=Path, help="write the summary and every sample here")
    args = ap.parse_args(argv)
    for name in ("interval", "memory_interval", "player_interval"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be more than 0")
    try:
        seconds = args.seconds if args.seconds is not None else parse_duration(args.duration)
    except InputError as exc:
        ap.error(str(exc))
    if args.smoke:
        seconds = SMOKE_SECONDS
        args.memory_interval = min(args.memory_interval, 1.0)
        args.warmup = args.warmup if args.warmup is not None else 20.0
    if seconds <= 0:
        ap.error("--seconds must be more than 0")
    chromium = chromium_path()
    if chromium is None:
        ap.error("chromium is not installed (apt-get install -y chromium)")
    if shutil.which("node") is None:
        ap.error("node is not installed (apt-get install -y nodejs npm)")
    missing = missing_npm()
    if missing:
        ap.error("npm packages missing: run " + " and ".join(f"`{m}`" for m in missing))
    args.chromium = chromium
    with tempfile.TemporaryDirectory(prefix="lvp-live-soak-") as tmp:
        results = soak(args, seconds, Path(tmp))
    summary = summarise(results, args)
    print_summary(results, summary)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
