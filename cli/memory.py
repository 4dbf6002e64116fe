"""`lvp memory ls|show|export`: look inside a job's replay memory."""

from __future__ import annotations

import argparse
import json

import cv2

from engine.errors import InputError
from engine.schedule import format_time, parse_clock
from memory.replay import STORE_NAME, ReplayMemory


def open_store(args: argparse.Namespace) -> ReplayMemory:
    workdir = args.workdir
    if (workdir / "data.mdb").exists():  # the user pointed at the store itself
        workdir = workdir.parent
    if not (workdir / STORE_NAME).exists():
        raise InputError(f"no replay memory in {args.workdir} (expected {STORE_NAME}/ inside)")
    return ReplayMemory(workdir, readonly=True)


def run(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        if args.memory_command == "ls":
            return _ls(store, args.json)
        if args.memory_command == "show":
            return _show(store, args)
        return _export(store, args)


def _ls(store: ReplayMemory, as_json: bool) -> int:
    metas = list(store.metadata())
    done = store.finished_segments()
    if as_json:
        print(json.dumps({"job": store.job(), "keyframes": metas,
                          "finished_segments": sorted(done)}, indent=2))
        return 0
    print(f"{'time':>9}  {'size':>7}  {'model':<11} {'seed':>6}  prompt")
    for meta in metas:
        print(f"{format_time(meta['t']):>9}  {meta['width']}x{meta['height']:<4} "
              f"{meta.get('model', '?'):<11} {meta.get('seed', ''):>6}  {meta.get('prompt', '')}")
    print(f"{len(metas)} keyframes; {len(done)} segments finished; "
          f"{store.disk_bytes() / 1024:.0f} KiB on disk")
    return 0


def _show(store: ReplayMemory, args: argparse.Namespace) -> int:
    try:
        t = parse_clock(args.at)
    except ValueError:
        raise InputError(f"--at {args.at!r} is not a time (seconds, MM:SS or HH:MM:SS)") from None
    entry = store.nearest_at_or_before(t)
    if entry is None:
        raise InputError(f"no keyframe stored at or before {format_time(t)}")
    print(json.dumps(entry.meta, indent=2))
    if args.png:
        _save_png(args.png, entry.image)
        print(f"saved {args.png}")
    return 0


def _export(store: ReplayMemory, args: argparse.Namespace) -> int:
    dest = args.dest
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {dest} ({exc.strerror})") from None
    metas = []
    for t in store.keyframe_times():
        entry = store.get_keyframe(t)
        assert entry is not None
        name = f"keyframe_{round(t * 1000):012d}ms.png"  # names come from times only
        _save_png(dest / name, entry.image)
        metas.append({**entry.meta, "file": name})
    (dest / "keyframes.json").write_text(json.dumps(metas, indent=2))
    print(f"exported {len(metas)} keyframes to {dest}")
    return 0


def _save_png(path, image) -> None:
    if not cv2.imwrite(str(path), image[..., ::-1]):
        raise InputError(f"cannot write {path}")
