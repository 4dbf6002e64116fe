"""`lvp`: the command line. The one place that knows every package.

Every check on user input runs here, before Ray starts; a bad input ends with one
line naming the problem and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli import LAUNCHED
from cli.metrics import DEFAULT_LINGER_SECONDS
from engine.errors import InputError
from engine.models.base import BACKENDS, DEFAULT_BACKEND
from engine.presets import PRESETS

if TYPE_CHECKING:
    from cli.job import ResumePlan
    from engine.spec import JobSpec
    from engine.stats import JobClock
    from engine.timeline import BeatTrack

EXECUTORS = ("ray", "local")  # cli.job.EXECUTORS, kept here so --help imports no engine code

EXIT_INPUT = 2
EXIT_FAILED = 1

RENDER_EXAMPLES = """\
examples:
  lvp render --prompt "a red circle bouncing on a night background" --duration 60 --out out.mp4
  lvp render --prompts story.txt --audio beat.wav --duration 10:00 --out out.mp4 --hls out_hls/
  lvp render --prompt "a pink star dancing on the ocean" --audio song.mp3 --duration 1h \\
             --size 512x288 --workers 4 --address auto --out dance.mp4

a prompt schedule file has one prompt per line, 'MM:SS text' or 'HH:MM:SS text':
  00:00 a red circle bouncing on a night background
  01:30 a blue star spinning at sunset

the world understands: colors red orange yellow green cyan blue purple pink white;
shapes circle square triangle star; motions bouncing, drifting left/right, orbiting,
spinning, pulsing, dancing (to the audio's beat), resting; backgrounds day night sunset
meadow ocean.
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def default_workers() -> int:
    """One segment actor per core beyond the first (1 to 8): Stage 1 and the stitcher keep
    a core busy (on 2 cores a second worker is no faster, see bench/RESULTS.md)."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="lvp", description="Long-video streaming generation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    r = sub.add_parser("render", help="render a video (MP4 file and/or live HLS)",
                       description="Render one continuous video from a prompt or a prompt "
                                   "schedule: keyframes first, segments in parallel on Ray "
                                   "actors, stitched with optical flow.",
                       epilog=RENDER_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = r.add_argument_group("what to render")
    prompt = what.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="text prompt for the whole video")
    prompt.add_argument("--prompts", type=Path, metavar="FILE",
                        help="prompt schedule: lines of 'MM:SS text' or 'HH:MM:SS text'")
    what.add_argument("--duration", required=True,
                      help="video length: seconds (600), MM:SS, HH:MM:SS or 90s/10m/2h; max 24h")
    what.add_argument("--image", type=Path, help="reference image (any format Pillow reads)")
    what.add_argument("--audio", type=Path, help="audio track: drives 'dancing' and is muxed in")
    what.add_argument("--audio-mode", choices=("loop", "pad"), default="loop",
                      help="when the audio is shorter than the video (default: loop)")
    what.add_argument("--seed", type=int, default=0,
                      help="random seed: the same seed and inputs give the same video; another "
                           "seed, another take (where the subject starts, the scene's light and "
                           "horizon) (default: 0)")

    fmt = r.add_argument_group("format")
    fmt.add_argument("--preset", choices=sorted(PRESETS),
                     help="draft (128x128@15), live (real time: 256x256@30, ultrafast), "
                          "hq (512x512@30); flags given explicitly override it")
    fmt.add_argument("--fps", type=int, help="frames per second, 1-60 (default: 30)")
    fmt.add_argument("--size",
                     help="WIDTHxHEIGHT, even, 64x64 to 3840x2160 (default: 256x256)")
    fmt.add_argument("--crf", type=int, help="x264 quality, 0-51, lower is better (default: 23)")
    fmt.add_argument("--encoder-preset",
                     choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"),
                     help="x264 speed preset (default: veryfast)")

    out = r.add_argument_group("outputs")
    out.add_argument("--out", type=Path, help="fragmented MP4 file (playable while written)")
    out.add_argument("--hls", type=Path, metavar="DIR",
                     help="HLS folder: stream.m3u8 plus .ts segments, watchable while rendering")
    out.add_argument("--hls-segment-seconds", type=float,
                     help="HLS segment length in seconds (default: 2)")
    out.add_argument("--report", type=Path, help="run report JSON (default: next to the output)")
    out.add_argument("--workdir", type=Path,
                     help="replay memory and ledger folder "
                          "(default: OUT.lvp, or HLS.lvp beside the HLS folder)")
    again = out.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue an interrupted render of this same job (the default "
                            "when the work folder holds it); an error if there is none")
    again.add_argument("--overwrite", action="store_true",
                       help="start afresh, replacing the outputs and the work folder's job "
                            "(without it, lvp never replaces files no run of this job wrote)")

    eng = r.add_argument_group("engine")
    eng.add_argument("--model", default=DEFAULT_BACKEND,
                     help=f"backend: {', '.join(BACKENDS)} (default: {DEFAULT_BACKEND}: the bundled "
                          "learned model; procedural: the world simulator it was trained on, "
                          "exactly what the prompt says; or an installed plug-in)")
    workers = default_workers()
    eng.add_argument("--workers", type=int, default=workers,
                     help="segment actors rendering in parallel (default: one per CPU core "
                          f"beyond the first, 1 to 8: {workers} here; the keyframe "
                          "and stitcher actors need a core too)")
    eng.add_argument("--gpus-per-worker", type=float, default=0.0,
                     help="GPUs each segment actor reserves on the cluster, for GPU backends "
                          "(default: 0)")
    eng.add_argument("--segment-seconds", type=int, default=5,
                     help="seconds per segment, 1-60 (default: 5)")
    eng.add_argument("--overlap", type=int,
                     help="frames both neighbours render at a boundary, blended "
                          "(default: 16, at most half a segment)")
    eng.add_argument("--blend", choices=("flow", "crossfade", "cut"), default="flow",
                     help="how boundary overlaps are joined (default: flow)")
    eng.add_argument("--schedule", choices=("parallel", "chain"), default="parallel",
                     help="parallel: keyframes first, segments at once (default); chain: each "
                          "segment waits for the one before (a baseline for benchmarks)")
    eng.add_argument("--weights", type=Path, default=None,
                     help="weights file or folder for the model (default: the model's bundled "
                          "weights; for tiny, $LVP_TINY_WEIGHTS if set)")
    eng.add_argument("--executor", choices=EXECUTORS, default="ray",
                     help="ray: stages on Ray actors, segments in parallel (default); local: "
                          "every stage in this one process, no Ray (debugging; same frames)")
    eng.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                     help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    eng.add_argument("--metrics-port", type=int,
                     help="serve Prometheus metrics on 127.0.0.1:PORT/metrics")
    eng.add_argument("--metrics-host", default="127.0.0.1",
                     help="address the metrics server binds (default: 127.0.0.1)")
    eng.add_argument("--metrics-linger", type=float, default=DEFAULT_LINGER_SECONDS,
                     metavar="SECONDS",
                     help="keep serving /metrics this long after the job, so a scraper sees the "
                          f"final values (default: {DEFAULT_LINGER_SECONDS:g}; Ctrl-C ends the wait)")
    eng.add_argument("--quiet", action="store_true", help="no progress bar")

    t = sub.add_parser("train", help="train the bundled tiny model on the procedural world",
                       description="Train the tiny model from scratch on data drawn from the "
                                   "procedural world (seeded, reproducible). Writes safetensors "
                                   "weights plus a JSON manifest (hash, command, losses). Use "
                                   "them with lvp render --weights FILE ...\n\n"
                                   "The shipped weights are two steps:\n"
                                   "  lvp train --minutes 54 --seed 0 --threads 1 --out base.safetensors\n"
                                   "  lvp train --refit-pose base.safetensors --seed 0 --threads 1 "
                                   "--out tiny.safetensors",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--minutes", type=float, default=54.0,
                   help="wall-clock training budget (default: 54, what the shipped weights used)")
    t.add_argument("--steps", type=int, help="stop after this many steps instead (if sooner)")
    t.add_argument("--seed", type=int, default=0, help="data and initialisation seed (default: 0)")
    t.add_argument("--out", type=Path, default=Path("tiny.safetensors"),
                   help="weights file to write (default: ./tiny.safetensors)")
    t.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads (default: all cores)")
    t.add_argument("--refit-pose", type=Path, metavar="WEIGHTS",
                   help="instead of training from scratch, refit only the motion parts of WEIGHTS "
                        "(the pose and trajectory networks; 1000 steps, about 4-6 minutes on one "
                        "thread: the shipped weights' second step)")
    t.add_argument("--rollout-share", type=float, metavar="SHARE",
                   help="--refit-pose: share of pose samples that first draw 1-8 keyframes themselves "
                        "(default: the refit's own)")
    t.add_argument("--noise-share", type=float, metavar="SHARE",
                   help="share of teacher-forced pose samples whose history is perturbed (motion "
                        "scaled, jittered); default: the recipe's")

    e = sub.add_parser("eval", help="measure the tiny model and the procedural oracle",
                       description="Prompt adherence on held-out color-shape pairs, image "
                                   "conditioning, audio sync, flicker and seams, and a long "
                                   "render cutting between two prompts (12 shots over 60 minutes), "
                                   "with and without the replay memory: does every keyframe keep "
                                   "its prompt's subject, does each prompt's scene come back. "
                                   "Frames are read by the judge (evaluation/judge.py), a classifier "
                                   "trained on world pictures only.")
    e.add_argument("--models", default="tiny,procedural",
                   help="comma-separated backends (default: tiny,procedural)")
    e.add_argument("--quick", action="store_true",
                   help="a few minutes: fewer prompts, a 10-minute instead of 60-minute horizon")
    e.add_argument("--json", action="store_true", help="print JSON instead of the table")
    e.add_argument("--out", type=Path, help="also write the results as JSON here")
    e.add_argument("--weights", type=Path, help="tiny weights file (default: the bundled one)")

    from cli import stream  # lvp stream: its own module (parser and command)

    stream.add_parser(sub)

    m = sub.add_parser("memory", help="inspect a job's LMDB replay memory")
    msub = m.add_subparsers(dest="memory_command", required=True, parser_class=OneLineParser)
    ls = msub.add_parser("ls", help="list stored keyframes and finished segments")
    ls.add_argument("workdir", type=Path)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    show = msub.add_parser("show", help="show the keyframe at (or before) a time")
    show.add_argument("workdir", type=Path)
    show.add_argument("--at", required=True, help="video time: seconds, MM:SS or HH:MM:SS")
    show.add_argument("--png", type=Path, help="also save the keyframe image here")
    export = msub.add_parser("export", help="write every stored keyframe as a PNG file")
    export.add_argument("workdir", type=Path)
    export.add_argument("dest", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "render":
            return cmd_render(args)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "stream":
            from cli import stream

            return stream.run(args, launched=LAUNCHED)
        from cli import memory

        return memory.run(args)
    except InputError as exc:
        from engine.schedule import printable

        print(f"lvp: error: {printable(exc)}", file=sys.stderr)
        return EXIT_INPUT


def cmd_train(args: argparse.Namespace) -> int:
    from engine.spec import check_output_file, check_range

    if not 0 < args.minutes <= 24 * 60:
        raise InputError(f"--minutes must be more than 0 and at most 1440, got {args.minutes}")
    if args.steps is not None:
        check_range("--steps", args.steps, 1, 10**9)
    check_range("--threads", args.threads, 1, 1024)
    check_output_file(args.out, "weights")
    for name in ("rollout_share", "noise_share"):
        if getattr(args, name) is not None:
            check_range("--" + name.replace("_", "-"), getattr(args, name), 0.0, 1.0)
    if args.rollout_share is not None and args.refit_pose is None:
        raise InputError("--rollout-share applies to --refit-pose only")
    if args.refit_pose is not None and not args.refit_pose.is_file():
        raise InputError(f"--refit-pose: weights not found: {args.refit_pose}")
    from training.tiny_train import RefitConfig, TrainConfig, refit_pose, train

    command = " ".join(["lvp", *sys.argv[1:]]) if sys.argv[1:2] == ["train"] else "lvp train"
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.refit_pose is not None:
        shares = {k: getattr(args, k) for k in ("rollout_share", "noise_share")
                  if getattr(args, k) is not None}
        refit = RefitConfig(steps=args.steps or RefitConfig.steps, seed=args.seed, threads=args.threads,
                            **shares)
        manifest = refit_pose(refit, args.refit_pose, args.out, command, log=log)
    else:
        shares = {"noise_share": args.noise_share} if args.noise_share is not None else {}
        cfg = TrainConfig(minutes=args.minutes, steps=args.steps or TrainConfig.steps, seed=args.seed,
                          threads=args.threads, **shares)
        manifest = train(cfg, args.out, command, log=log)
    print(f"lvp: wrote {args.out} ({manifest['steps']} steps in {manifest['seconds'] / 60:.1f} min); "
          f"use it with lvp render --weights {args.out}", file=sys.stderr)
    if args.refit_pose is None:
        print(f"lvp: the shipped recipe then refits the motion parts (about 6 min): "
              f"lvp train --refit-pose {args.out} --out REFIT.safetensors", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from engine.models.base import BackendConfig, backend_class
    from engine.spec import check_output_file

    if args.weights is not None and not args.weights.is_file():
        raise InputError(f"weights not found: {args.weights}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise InputError("--models names no backend")
    configs = {}
    for name in models:
        cls = backend_class(name)
        weights = args.weights if cls.capabilities.needs_weights else None
        configs[name] = BackendConfig(weights=weights)
        cls.check(configs[name])
    from evaluation.judge import JUDGE_WEIGHTS

    if not JUDGE_WEIGHTS.is_file():
        raise InputError(f"judge weights not found: {JUDGE_WEIGHTS} (make them with "
                         "`python -m evaluation.judge`)")
    if args.out is not None:
        check_output_file(args.out, "results")
    from evaluation.evaluate import EvalConfig, evaluate, table

    cfg = EvalConfig(quick=args.quick)
    results = [evaluate(name, cfg, configs[name],
                        log=lambda line: print(line, file=sys.stderr, flush=True))
               for name in models]
    payload = {"quick": cfg.quick, "results": results}
    if args.out is not None:
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2) if args.json else table(results))
    return 0


def check_port_free(host: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise InputError(f"metrics port must be 1-65535, got {port}")
    with socket.socket() as s:
        # As the metrics server binds: a port whose last scrape left TIME_WAIT connections is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InputError(f"metrics port {host}:{port} is not available ({exc.strerror})") \
                from None


def cmd_render(args: argparse.Namespace) -> int:
    from cli.render_args import spec_from_args
    from engine.schedule import printable
    from engine.stats import JobClock

    # Every time in the report counts from the launch: the user's clock started there.
    clock = JobClock(launched=LAUNCHED)
    spec = spec_from_args(args)
    if args.metrics_port is not None:
        check_port_free(args.metrics_host, args.metrics_port)
    if args.metrics_linger < 0:
        raise InputError(f"--metrics-linger must be 0 or more, got {args.metrics_linger:g}")
    from cli.job import output_config
    from cli.resume import RenderLock, plan_resume

    lock = RenderLock(spec)
    lock.acquire()
    try:
        plan = plan_resume(spec, output_config(spec), overwrite=args.overwrite, resume=args.resume)
        for warning in spec.warnings:
            print(f"lvp: warning: {printable(warning)}", file=sys.stderr)
        if plan.complete:
            from cli.job import report_complete

            report_complete(spec, job_beats(spec), clock)
            print(f"lvp: {printable(spec.out or spec.hls)} already holds this job's "
                  f"{spec.total_frames} frames; nothing to do (--overwrite renders it again; "
                  f"{report_note(spec, clock)})", file=sys.stderr)
            return 0
        return _render(args, spec, clock, plan)
    finally:
        lock.release()


def report_note(spec: JobSpec, clock: JobClock) -> str:
    """Where the run report is, or that it could not be written (a full disk): never a claim
    about a file this run did not write."""
    from cli.job import report_path

    path = report_path(spec)
    try:
        written = path.stat().st_mtime >= clock.launched - 1
    except OSError:
        written = False
    return f"report: {path}" if written else f"the run report could not be written to {path}"


def job_beats(spec: JobSpec) -> BeatTrack:
    from engine.audio_input import beat_envelope
    from engine.timeline import BeatTrack

    if spec.audio:
        envelope = beat_envelope(spec.audio, spec.fps, spec.total_frames, mode=spec.audio_mode)
        return BeatTrack.from_envelope(envelope, spec.fps)
    return BeatTrack.without_audio(spec.schedule, spec.total_frames, spec.fps)


def _render(args: argparse.Namespace, spec: JobSpec, clock: JobClock, plan: ResumePlan) -> int:
    """Validation is done; from here on, real work."""
    from cli.failure import log_failure, one_line
    from cli.job import run_job
    from cli.metrics import PrometheusLogger
    from cli.progress import ProgressBar
    from engine.schedule import printable

    beats = job_beats(spec)
    metrics = PrometheusLogger(spec.fps)
    if args.metrics_port is not None:
        metrics.serve(args.metrics_port, args.metrics_host)
    bar = ProgressBar(spec.total_frames, spec.fps, enabled=not args.quiet,
                      launched_seconds_ago=clock.now(), initial=plan.written)
    try:
        try:
            report = run_job(spec, beats, address=args.address, loggers=[metrics, bar],
                             blend=args.blend, schedule=args.schedule, executor=args.executor,
                             clock=clock, resume=plan)
        finally:
            bar.close()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the files are finished: just leave
        metrics.stop()
        print(f"lvp: interrupted; what was rendered is kept ({report_note(spec, clock)})",
              file=sys.stderr)
        return 130
    except InputError as exc:  # found once Ray was up: what the cluster cannot give
        metrics.stop()
        print(f"lvp: error: {printable(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - one line for the user, details in the log
        metrics.stop()
        log = log_failure(spec.workdir, exc)
        print(f"lvp: render failed: {one_line(exc)} (output kept up to the failure; the same "
              f"command resumes it; {report_note(spec, clock)}"
              + (f"; details: {log})" if log else ")"), file=sys.stderr)
        return EXIT_FAILED
    if report["status"] != "ok":  # the outputs failed to close after the last segment
        metrics.stop()
        print(f"lvp: render failed: {printable(report['error'])} ({report_note(spec, clock)})",
              file=sys.stderr)
        return EXIT_FAILED
    outputs = [str(p) for p in (spec.out, spec.hls) if p]
    print(f"lvp: wrote {report['frames']} frames ({report['frames'] / spec.fps:.1f} s) to "
          f"{' and '.join(outputs)} in {report['wall_seconds']:.1f} s "
          f"(real-time factor {report['realtime_factor']:.2f}); {report_note(spec, clock)}",
          file=sys.stderr)
    if args.metrics_port is not None and args.metrics_linger > 0:
        print(f"lvp: serving the final metrics on {args.metrics_host}:{args.metrics_port} for "
              f"{args.metrics_linger:g} s more (Ctrl-C to stop now)", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            metrics.linger(args.metrics_linger)
    metrics.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
