"""Turn `lvp render` arguments into a validated JobSpec (no Ray, no rendering)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from engine.audio_input import check_audio
from engine.errors import InputError
from engine.image_input import check_image
from engine.models.base import BackendConfig, backend_class
from engine.presets import BASE, resolve
from engine.schedule import PromptSchedule, read_schedule
from engine.spec import (
    JobSpec,
    check_output_file,
    check_range,
    check_writable_dir,
    parse_duration,
    parse_size,
)

MAX_WORKERS = 1024
TINY_WEIGHTS_ENV = "LVP_TINY_WEIGHTS"  # the default for --weights with the tiny model


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    explicit_overlap = args.overlap  # an explicit overlap is checked, a preset's is clamped
    fmt = resolve(args.preset, {name: getattr(args, name) for name in BASE})
    args = argparse.Namespace(**{**vars(args), **fmt})
    duration = parse_duration(args.duration)
    width, height = parse_size(args.size)
    check_range("--fps", args.fps, 1, 60)
    check_range("--workers", args.workers, 1, MAX_WORKERS)
    check_range("--gpus-per-worker", args.gpus_per_worker, 0, 16)
    check_range("--segment-seconds", args.segment_seconds, 1, 60)
    max_overlap = args.segment_seconds * args.fps // 2
    overlap = min(args.overlap, max_overlap) if explicit_overlap is None else explicit_overlap
    check_range("--overlap", overlap, 0, max_overlap)
    check_range("--crf", args.crf, 0, 51)
    check_range("--hls-segment-seconds", args.hls_segment_seconds, 0.5, 30)
    check_range("--seed", args.seed, 0, 2**63 - 1)
    backend = backend_class(args.model)
    weights = args.weights
    if weights is None and args.model == "tiny" and os.environ.get(TINY_WEIGHTS_ENV):
        weights = Path(os.environ[TINY_WEIGHTS_ENV])
    backend.check(BackendConfig(weights=weights))
    strict = backend.capabilities.strict_prompts

    if args.prompts is not None:
        schedule = read_schedule(args.prompts, require_subject=strict)
    else:
        if not args.prompt.strip():
            raise InputError("prompt is empty")
        schedule = PromptSchedule.single(args.prompt)
    warnings = schedule.warnings(require_subject=strict)
    if args.weights is not None and not backend.capabilities.needs_weights:
        warnings.append(f"the {args.model} model uses no weights; --weights is ignored")
    late = [t for t in schedule.starts if t >= duration]
    if late:
        warnings.append(f"{len(late)} scheduled prompt(s) start after the video ends")

    if args.image is not None:
        check_image(args.image)
        if not backend.capabilities.reads_image:
            warnings.append(f"the {args.model} model draws from the prompt and ignores --image")
    if args.audio is not None:
        check_audio(args.audio)

    if args.out is None and args.hls is None:
        raise InputError("nothing to write: give --out FILE.mp4 and/or --hls DIR")
    if args.out is not None:
        check_output_file(args.out, "output")
    if args.hls is not None:
        check_writable_dir(args.hls, "HLS output")
    workdir = args.workdir or default_workdir(args.out, args.hls)
    check_writable_dir(workdir, "work")
    if args.report is not None:
        check_output_file(args.report, "report")

    return JobSpec(
        schedule=schedule,
        duration=duration,
        fps=args.fps,
        width=width,
        height=height,
        seed=args.seed,
        segment_seconds=args.segment_seconds,
        overlap=overlap,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        model=args.model,
        weights=weights,
        image=args.image,
        audio=args.audio,
        audio_mode=args.audio_mode,
        out=args.out,
        hls=args.hls,
        hls_segment_seconds=args.hls_segment_seconds,
        report=args.report,
        workdir=workdir,
        crf=args.crf,
        encoder_preset=args.encoder_preset,
        warnings=tuple(warnings),
    )


def default_workdir(out: Path | None, hls: Path | None) -> Path:
    if out is not None:
        return out.with_suffix(".lvp")
    assert hls is not None
    # Beside the HLS folder, never inside it: that folder is what a web server publishes.
    folder = hls.resolve()
    return folder.with_name(folder.name + ".lvp")
