"""Turn `lvp render` arguments into a validated JobSpec (no Ray, no rendering).

Every check here only reads (stat, decode) until the inputs and the outputs are known to be
apart: no output may be an input or another output, so a refused command changes no file.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

from engine.audio_input import check_audio
from engine.errors import InputError
from engine.image_input import check_image
from engine.models.base import BackendConfig, backend_class
from engine.presets import BASE, resolve
from engine.schedule import PromptSchedule, check_prompt, printable, read_schedule
from engine.spec import (
    JobSpec,
    check_input_file,
    check_output_file,
    check_range,
    check_writable_dir,
    default_report,
    is_inside,
    parse_duration,
    parse_size,
    resolved,
    same_file,
)
from memory.replay import STORE_NAME

MAX_WORKERS = 1024
LOCAL_WORKERS_PER_CORE = 8  # a local Ray refuses more segment actors than this per core
TINY_WEIGHTS_ENV = "LVP_TINY_WEIGHTS"  # the default for --weights with the tiny model

# What stitcher.sinks.HLSSink writes into its folder: the playlist, the numbered segments
# and the hidden temporary files it renames into place (stitcher.playlist.temp_path_for).
HLS_NAMES = re.compile(r"stream\.m3u8|seg_\d+\.ts|\..+\.tmp")
STORE_FILES = {"data.mdb", "lock.mdb"}  # all LMDB keeps in a replay memory folder


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
    if getattr(args, "metrics_port", None) is not None:  # whether it is free: cli.main
        check_range("--metrics-port", args.metrics_port, 1, 65535)
    linger = getattr(args, "metrics_linger", None)
    if isinstance(linger, float) and not math.isfinite(linger):
        raise InputError(f"--metrics-linger must be a finite number of seconds, got {linger:g}")
    warnings: list[str] = []
    warnings += worker_warnings(args)

    backend = backend_class(args.model)
    weights = args.weights
    weights_label = "--weights"
    if weights is None and args.model == "tiny" and os.environ.get(TINY_WEIGHTS_ENV):
        weights, weights_label = Path(os.environ[TINY_WEIGHTS_ENV]), f"${TINY_WEIGHTS_ENV}"
    if weights is not None:
        check_input_file(weights, "weights", allow_dir=True)  # a plug-in may take a folder
    backend.check(BackendConfig(weights=weights))
    strict = backend.capabilities.strict_prompts

    if args.prompts is not None:
        schedule = read_schedule(args.prompts, require_subject=strict)
    else:
        check_prompt(args.prompt)
        schedule = PromptSchedule.single(args.prompt)
    warnings += schedule.warnings(require_subject=strict)
    if args.weights is not None and not backend.capabilities.needs_weights:
        warnings.append(f"the {args.model} model uses no weights; --weights is ignored")
    late = [t for t in schedule.starts if t >= duration]
    if late:
        warnings.append(f"{len(late)} scheduled prompt(s) start after the video ends")

    if args.image is not None:
        check_input_file(args.image, "image")
        check_image(args.image)
        if not backend.capabilities.reads_image:
            warnings.append(f"the {args.model} model draws from the prompt and ignores --image")
    if args.audio is not None:
        check_input_file(args.audio, "audio")
        check_audio(args.audio)

    if args.out is None and args.hls is None:
        raise InputError("nothing to write: give --out FILE.mp4 and/or --hls DIR")
    for flag, path in (("--out", args.out), ("--report", args.report)):
        if path is not None and (not path.name or path.name in (".", "..") or path.is_dir()):
            raise InputError(f"{flag} {printable(path)} is a folder, expected a file path")
    if args.hls is not None and not resolved(args.hls).name:
        raise InputError(f"--hls {printable(args.hls)} is the root folder; give a folder "
                         "of its own")
    workdir = args.workdir or default_workdir(args.out, args.hls)
    report = args.report or default_report(args.out, args.hls)

    inputs = [("--prompts", args.prompts), ("--image", args.image), ("--audio", args.audio),
              (weights_label, weights)]
    if weights is None and args.model == "tiny":
        from engine.models.tiny import WEIGHTS  # torch-free

        inputs.append(("the bundled tiny weights", WEIGHTS))
    check_paths_apart(
        inputs=[(label, path) for label, path in inputs if path is not None],
        out=args.out,
        report=("--report" if args.report else "the run report", report),
        workdir=("--workdir" if args.workdir else "the work folder", workdir),
        hls=args.hls,
    )
    check_replay_folder(workdir / STORE_NAME)

    # Only now is anything created (output folders and a probe file in each).
    if args.out is not None:
        check_output_file(args.out, "output")
    if args.hls is not None:
        check_writable_dir(args.hls, "HLS output")
    check_writable_dir(workdir, "work")
    check_output_file(report, "report")
    check_output_file(report_temp(report), "report")

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


def report_temp(report: Path) -> Path:
    """The file cli.job.write_report writes before renaming it onto the report."""
    return report.with_name(report.name + ".tmp")


def local_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_warnings(args: argparse.Namespace) -> list[str]:
    """A local Ray runs every segment actor on this machine: more actors than cores share
    them (a warning), far more is refused. A cluster's size is unknown before joining it."""
    if getattr(args, "executor", "ray") != "ray" or (args.address or "local") != "local":
        return []
    cores = local_cores()
    limit = max(LOCAL_WORKERS_PER_CORE * cores, 8)
    if args.workers > limit:
        raise InputError(f"--workers {args.workers} is more than a local run can hold on "
                         f"{cores} CPU core(s) (at most {limit}); use fewer workers or join a "
                         "cluster with --address")
    if args.workers > cores:
        return [f"--workers {args.workers} is more than the {cores} CPU core(s) here: the "
                "segment actors share the cores and the render gets no faster"]
    return []


def _show(label: str, path: Path) -> str:
    return f"{label} {printable(path)}"


def check_paths_apart(inputs: list[tuple[str, Path]], out: Path | None,
                      report: tuple[str, Path], workdir: tuple[str, Path],
                      hls: Path | None) -> None:
    """Refuse a render whose outputs would overwrite an input or each other.

    Paths are compared after resolving symlinks, '..' and relative spellings, and by inode
    for existing files (hard links). Besides the files lvp names (--out, the report and its
    temporary file), the HLS sink writes fixed names into its folder and a new job clears
    WORKDIR/memory.lmdb, so nothing of the user's may live there.
    """
    store = ("the replay memory folder", workdir[1] / STORE_NAME)
    files = [("--out", out)] if out is not None else []
    files += [report, (f"{report[0]}'s temporary file", report_temp(report[1]))]
    folders = [workdir, store] + ([("--hls", hls)] if hls is not None else [])

    for olabel, opath in files + folders:
        for ilabel, ipath in inputs:
            if same_file(opath, ipath):
                raise InputError(f"{_show(olabel, opath)} is the input {_show(ilabel, ipath)}: "
                                 "writing it would destroy the input; choose another path")
    outputs = files + folders
    for i, (alabel, apath) in enumerate(outputs):
        for blabel, bpath in outputs[i + 1:]:
            if (alabel, blabel) != (workdir[0], store[0]) and same_file(apath, bpath):
                raise InputError(f"{_show(alabel, apath)} and {_show(blabel, bpath)} are the "
                                 "same path: one output would overwrite the other")
    for label, path in inputs + files + ([("--hls", hls)] if hls is not None else []):
        if is_inside(path, store[1]):
            raise InputError(f"{_show(label, path)} is inside {printable(store[1])}, which "
                             "lvp clears when a job starts; choose another --workdir")
    if hls is None:
        return
    for label, path in inputs + files:
        if _hls_name(path, hls):
            raise InputError(f"{_show(label, path)} would be overwritten by the HLS stream in "
                             f"{printable(hls)} (it writes stream.m3u8 and seg_NNNNN.ts "
                             "there); choose another name or folder")
    if is_inside(workdir[1], hls):
        raise InputError(f"{_show(workdir[0], workdir[1])} is inside the --hls folder "
                         f"{printable(hls)}, which is published as the stream; give a "
                         "--workdir outside it")


def _hls_name(path: Path, hls: Path) -> bool:
    """Whether `path`, as given or resolved, is a name the HLS sink writes in its folder."""
    real = resolved(path)
    for spelled in (path, real):
        if HLS_NAMES.fullmatch(spelled.name) and same_file(spelled.parent, hls):
            return True
    return False


def check_replay_folder(store: Path) -> None:
    """A new job deletes WORKDIR/memory.lmdb: refuse unless it is an lvp replay memory (or
    absent), so that a folder of the user's that happens to carry the name is never lost."""
    if not os.path.lexists(store):
        return
    shown = printable(store)
    if store.is_symlink() or not store.is_dir():
        raise InputError(f"{shown} is not a replay memory folder (a new job would replace it); "
                         "choose another --workdir")
    try:
        names = {entry.name for entry in os.scandir(store)}
    except OSError as exc:
        raise InputError(f"{shown} cannot be read ({printable(exc.strerror or exc)})") from None
    stray = sorted(names - STORE_FILES)
    if stray:
        raise InputError(f"{shown} holds files that are not a replay memory (e.g. "
                         f"{printable(stray[0])}); a new job would delete them; choose another "
                         "--workdir")
