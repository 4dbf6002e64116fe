"""`lvp stream`: a live HLS stream, paced to the wall clock, served over HTTP and steered
while it plays; or (`--serve DIR`) just the server, for a folder `lvp render --hls` writes.

Every check on user input runs before any work (exit 2, one line). Ctrl-C (or SIGTERM)
ends the stream cleanly: the playlist gets ENDLIST, the run report is written, exit 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import InputError

TOKEN_ENV = "LVP_STREAM_TOKEN"
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_FOLDER = Path("lvp-stream")
FOREVER = "24h"  # without --duration: until Ctrl-C, at most the engine's 24 h

EXAMPLES = """\
examples:
  lvp stream --prompt "a blue star orbiting in the ocean" --audio music.mp3
  lvp stream --prompt "a red circle bouncing on a night background" --duration 10m \\
             --serve 127.0.0.1:8080 --hls live_hls/
  lvp stream --serve out_hls/            # serve a folder lvp render --hls is writing

It prints a URL; open it in a browser. With the token in the URL (#token=...) the page
has a text box that changes the prompt; programs POST {"prompt": "..."} to /prompt with
'Authorization: Bearer TOKEN'; a line typed on stdin changes it too. Set $LVP_STREAM_TOKEN
to choose the token. Ctrl-C ends the stream (ENDLIST, report; exit status 130).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("stream", help="a live HLS stream, served and steerable while it plays",
                       description="Generate a live HLS stream at wall-clock pace, serve it with "
                                   "a player page, and change its prompt while it plays.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = s.add_argument_group("what to stream")
    prompt = what.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="text prompt to start with")
    prompt.add_argument("--prompts", type=Path, metavar="FILE",
                        help="prompt schedule to start with: lines of 'MM:SS text'")
    what.add_argument("--duration", help="stop after this much video (default: until Ctrl-C, "
                                         "at most 24 h)")
    what.add_argument("--image", type=Path, help="reference image")
    what.add_argument("--audio", type=Path, help="audio track: drives 'dancing', muxed in")
    what.add_argument("--audio-mode", choices=("loop", "pad"), default="loop")
    what.add_argument("--seed", type=int, default=0)
    fmt = s.add_argument_group("format")
    fmt.add_argument("--preset", choices=("draft", "live", "hq"), default="live",
                     help="default: live (256x256@30, fastest encode, 1 s segments)")
    fmt.add_argument("--fps", type=int)
    fmt.add_argument("--size")
    fmt.add_argument("--crf", type=int)
    fmt.add_argument("--hls-segment-seconds", type=float,
                     help="HLS segment length (default: the preset's; 1 s for live)")
    live = s.add_argument_group("live")
    live.add_argument("--serve", default=DEFAULT_LISTEN, metavar="HOST:PORT|DIR",
                      help=f"address to serve on (default: {DEFAULT_LISTEN}); or an existing "
                           "HLS folder to serve without generating (then --listen is the address)")
    live.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                      help=f"address for --serve DIR (default: {DEFAULT_LISTEN})")
    live.add_argument("--hls", type=Path, default=DEFAULT_FOLDER, metavar="DIR",
                      help=f"folder of the stream's files (default: {DEFAULT_FOLDER}); emptied "
                           "of an earlier stream's files at start")
    live.add_argument("--ahead", type=float, default=2.0, metavar="SECONDS",
                      help="finished video held back ahead of the live edge, to absorb jitter "
                           "(default: 2; more is smoother; a prompt change takes back what is "
                           "not listed yet, except with --executor ray, where less lands it "
                           "sooner)")
    live.add_argument("--window", type=int, default=8, metavar="SEGMENTS",
                      help="segments the live playlist lists (default: 8, at least 6)")
    live.add_argument("--report", type=Path, help="run report (default: DIR.json beside the folder)")
    live.add_argument("--workdir", type=Path, help="replay memory (default: DIR.lvp beside it)")
    eng = s.add_argument_group("engine")
    eng.add_argument("--model", default="tiny")
    eng.add_argument("--weights", type=Path)
    eng.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local (default: starts in about a second, enough for the live preset "
                          "on 2 cores) or ray (stages in parallel on Ray actors)")
    eng.add_argument("--workers", type=int, default=1, help="segment workers (ray only)")
    eng.add_argument("--segment-seconds", type=int, default=2,
                     help="seconds per generated segment (default: 2: a prompt change lands sooner)")
    eng.add_argument("--address", default=os.environ.get("RAY_ADDRESS"))
    eng.add_argument("--quiet", action="store_true", help="no prompt-change lines on stderr")


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT', ':PORT' or 'PORT'."""
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\s]*)):(\d{1,5})|(\d{1,5})", text.strip())
    if not match:
        raise InputError(f"address {text!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    host = match.group(1) or match.group(2) or "127.0.0.1"
    port = int(match.group(3) or match.group(4))
    if not 1 <= port <= 65535:
        raise InputError(f"port must be 1-65535, got {port}")
    return host, port


def looks_like_address(text: str) -> bool:
    return bool(re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^/\\\s]*):\d+|\d+", text.strip()))


def check_bindable(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InputError(f"cannot serve on {host}:{port} ({exc.strerror or exc})") from None


def make_token() -> str:
    token = os.environ.get(TOKEN_ENV, "")
    if token and (len(token) < 16 or not re.fullmatch(r"[A-Za-z0-9._~-]+", token)):
        raise InputError(f"${TOKEN_ENV} must be at least 16 characters of A-Z a-z 0-9 . _ ~ -")
    return token or secrets.token_urlsafe(18)


def render_namespace(args: argparse.Namespace) -> argparse.Namespace:
    """`lvp render`'s arguments for this stream, so its checks (cli.render_args) apply."""
    folder = args.hls
    report = args.report or folder.resolve().with_name(folder.resolve().name + ".json")
    return argparse.Namespace(
        prompt=args.prompt, prompts=args.prompts, duration=args.duration or FOREVER,
        image=args.image, audio=args.audio, audio_mode=args.audio_mode, seed=args.seed,
        preset=args.preset, fps=args.fps, size=args.size, crf=args.crf, encoder_preset=None,
        out=None, hls=folder, hls_segment_seconds=args.hls_segment_seconds, report=report,
        workdir=args.workdir, model=args.model, weights=args.weights, workers=args.workers,
        gpus_per_worker=0.0, segment_seconds=args.segment_seconds, overlap=None, blend="flow",
        schedule="parallel", executor=args.executor, address=args.address, metrics_port=None,
        metrics_host="127.0.0.1", metrics_linger=0.0, quiet=True)


def clear_stream_folder(folder: Path) -> None:
    """Remove an earlier stream's files (only names an HLS sink writes), so no player sees
    its playlist or segments."""
    from live.server import MEDIA_NAMES

    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False) and (
                MEDIA_NAMES.fullmatch(entry.name) or re.fullmatch(r"\..+\.tmp", entry.name)):
            os.unlink(entry.path)


def run(args: argparse.Namespace, launched: float) -> int:
    if args.window < 6 or args.window > 10_000:
        raise InputError(f"--window must be 6 to 10000 segments, got {args.window}")
    if not 0 <= args.ahead <= 600:
        raise InputError(f"--ahead must be 0 to 600 seconds, got {args.ahead:g}")
    if not looks_like_address(args.serve):
        return serve_folder(args)
    if args.prompt is None and args.prompts is None:
        raise InputError("give --prompt TEXT or --prompts FILE (or --serve DIR to serve a folder)")
    host, port = parse_address(args.serve)
    try:
        return stream(args, host, port, launched)
    except KeyboardInterrupt:  # before the stream started: nothing to finish
        return 130


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _stop_signals() -> None:
    """Ctrl-C, and a service manager's SIGTERM, end the stream: ENDLIST and the report."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        # Also when started with SIGINT ignored (a background job of a script): the stream
        # has no other way to end cleanly.
        signal.signal(signal.SIGINT, signal.default_int_handler)


def serve_folder(args: argparse.Namespace) -> int:
    from engine.schedule import printable

    folder = Path(args.serve)
    if not folder.is_dir():
        raise InputError(f"--serve {printable(folder)} is neither HOST:PORT nor a folder")
    host, port = parse_address(args.listen)
    check_bindable(host, port)
    token = make_token()

    from prometheus_client import CollectorRegistry, generate_latest

    from live.server import LiveServer
    from live.watch import PlaylistWatcher

    registry = CollectorRegistry()
    watcher = PlaylistWatcher(folder / "stream.m3u8", registry)
    server = LiveServer(folder, host, port, token, status=watcher.status,
                        metrics=lambda: generate_latest(registry))
    watcher.start()
    server.start()
    _say(f"lvp: serving {printable(folder)} at {server.url}  (status: {server.url}status with "
         f"'Authorization: Bearer {token}'; Ctrl-C to stop)")
    _stop_signals()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 130
    finally:
        watcher.stop()
        server.stop()


def stream(args: argparse.Namespace, host: str, port: int, launched: float) -> int:
    from cli.render_args import spec_from_args
    from engine.live_prompts import SCHEDULE_NAME, LivePrompts
    from engine.models.base import backend_class
    from engine.schedule import printable
    from stitcher.playlist import LiveHLS

    spec = spec_from_args(render_namespace(args))
    check_bindable(host, port)
    token = make_token()
    for warning in spec.warnings:
        _say(f"lvp: warning: {printable(warning)}")
    run_id = secrets.token_hex(3)
    spec = replace(spec, live=LivePrompts(spec.schedule, spec.workdir),
                   hls_live=LiveHLS(ahead=args.ahead, window=args.window, run_id=run_id))
    assert spec.hls is not None and spec.live is not None

    # Validation is done; from here on, real work.
    from prometheus_client import generate_latest

    from cli.job import report_path, run_job
    from cli.metrics import PrometheusLogger
    from engine.stats import JobClock
    from live.server import LiveServer
    from live.speed import SpeedCheck
    from live.steering import Steering, read_stdin
    from live.watch import PlaylistWatcher

    clock = JobClock(launched=launched)
    clear_stream_folder(spec.hls)
    beats = beat_track(spec)
    metrics = PrometheusLogger(spec.fps)
    live = spec.live
    watcher = PlaylistWatcher(spec.hls / "stream.m3u8", metrics.registry,
                              changes=lambda: live.changes)
    steering = Steering(live, backend_class(spec.model).capabilities.strict_prompts,
                        say=(lambda line: None) if args.quiet else _say)

    def status() -> dict[str, Any]:
        return {**watcher.status(), "prompt": live.current()[0].texts[-1],
                "prompt_asked": steering.current, "prompt_changes": list(live.changes)}

    server = LiveServer(spec.hls, host, port, token, steer=steering.change, status=status,
                        metrics=lambda: generate_latest(metrics.registry))
    server.start()
    watcher.start()
    _say(f"lvp: streaming at {server.url}#token={token}")
    _say(f"lvp: control: POST {server.url}prompt {{\"prompt\": ...}} with 'Authorization: Bearer "
         f"{token}'; or type a prompt and Enter here; Ctrl-C ends the stream")
    read_stdin(steering)
    _stop_signals()
    speed = SpeedCheck(spec.fps, workers=spec.workers if args.executor == "ray" else 0, say=_say)
    code = 0
    try:
        # One segment in flight per worker: a prompt change waits behind less finished video.
        run_job(spec, beats, address=args.address, loggers=[metrics, speed], blend="flow",
                schedule="parallel", executor=args.executor, clock=clock, in_flight=spec.workers)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C only ends the wait
            linger(watcher, args.window * spec.hls_segment_seconds)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, details in the report
        from cli.failure import log_failure, one_line

        log = log_failure(spec.workdir, exc)
        _say(f"lvp: stream failed: {one_line(exc)} (report: {report_path(spec)}"
             + (f"; details: {log})" if log else ")"))
        code = 1
    finally:
        watcher.stop()
        server.stop()
        add_live_report(report_path(spec), watcher, live, speed, launched,
                        spec.workdir / SCHEDULE_NAME)
    if code != 1:
        _say(f"lvp: stream ended: {watcher.video_seconds:.0f} s published in "
             f"{watcher.published} segments, {watcher.late} late; report: {report_path(spec)}")
    return code


def linger(watcher: Any, playlist_seconds: float) -> None:
    """After a clean end, serve on until a player a playlist behind the live edge has played
    the last segment (the end was listed at once, ahead of its time). Ctrl-C stops sooner."""
    watcher.poll()
    end = watcher.end_due()
    if end is None:
        return
    wait = end + playlist_seconds - time.time()
    if wait > 0:
        _say(f"lvp: the stream is complete; serving {wait:.0f} s more so players reach its "
             "end (Ctrl-C to stop now)")
        time.sleep(wait)


def beat_track(spec: Any) -> Any:
    from engine.audio_input import beat_envelope
    from engine.timeline import BeatTrack

    if spec.audio:
        envelope = beat_envelope(spec.audio, spec.fps, spec.total_frames, mode=spec.audio_mode)
        return BeatTrack.from_envelope(envelope, spec.fps)
    return BeatTrack.without_audio(spec.schedule, spec.total_frames, spec.fps)


def add_live_report(path: Path, watcher: Any, live: Any, speed: Any, launched: float,
                    schedule_file: Path) -> None:
    """The live figures, added to the run report run_job wrote."""
    with contextlib.suppress(OSError, ValueError):
        report = json.loads(path.read_text())
        latencies = [c["latency_seconds"] for c in watcher.latencies]
        report["live"] = {
            "segments_published": watcher.published,
            "video_seconds_published": watcher.video_seconds,
            "late_segments": watcher.late,
            "first_segment_listed_seconds": (None if watcher.first_listed_wall is None
                                             else watcher.first_listed_wall - launched),
            "speed": speed.summary(),
            "prompt_changes": live.changes,
            "prompt_change_latencies": watcher.latencies,
            "median_prompt_change_latency_seconds": (sorted(latencies)[len(latencies) // 2]
                                                     if latencies else None),
            "schedule": live.schedule_text(),
            "schedule_file": str(schedule_file),
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, path)
