"""`lvp memory ls|show|export`: look inside a job's replay memory.

A store that is damaged (truncated or overwritten files, keys holding bad JSON or a bad
PNG) or a bad argument ends with one line and exit status 2, like every other input error.
Text read from the store (prompts, metadata) reaches the terminal with its control
characters escaped: a stored prompt cannot move the cursor or retitle the window.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb

from engine.errors import InputError, one_line
from engine.schedule import file_kind, format_time, parse_clock, printable
from memory.replay import STORE_NAME, ReplayMemory, encode_png

EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a command ended by SIGPIPE
PROMPT_COLUMN_CHARS = 200  # the table cuts longer prompts (--json has them whole)

# What reading a damaged store can raise: LMDB's own errors, DamagedStoreError and bad JSON
# or PNG (ValueError), metadata of the wrong shape (KeyError, TypeError), absurd numbers
# (OverflowError) and JSON nested too deep (RecursionError).
_DAMAGE = (lmdb.Error, ValueError, KeyError, TypeError, OverflowError, RecursionError)


def store_folder(workdir: Path) -> Path:
    """WORKDIR/memory.lmdb, or WORKDIR itself when the user pointed at the store."""
    if workdir.name == STORE_NAME and _mode(workdir / "data.mdb") is not None:
        return workdir
    return workdir / STORE_NAME


def open_store(args: argparse.Namespace) -> ReplayMemory:
    shown = printable(args.workdir)
    store = store_folder(args.workdir)
    mode = _mode(store)
    if mode is None or not stat.S_ISDIR(mode):
        raise InputError(f"no replay memory in {shown} (expected {STORE_NAME}/ inside)")
    data = _mode(store / "data.mdb")
    if data is None:
        raise InputError(f"no replay memory in {shown} ({STORE_NAME}/ holds no data.mdb)")
    if not stat.S_ISREG(data):  # LMDB would open it: a FIFO blocks forever
        raise InputError(f"replay memory in {shown} is damaged: data.mdb is not a regular file "
                         f"({file_kind(data)})")
    try:
        return ReplayMemory(store.parent, readonly=True)
    except (lmdb.Error, OSError, ValueError) as exc:
        raise InputError(f"replay memory in {shown} cannot be opened: it is damaged or not an "
                         f"LMDB store ({_reason(exc)})") from None


def run(args: argparse.Namespace) -> int:
    command: Callable[[ReplayMemory, argparse.Namespace], int] = {
        "ls": _ls, "show": _show, "export": _export}[args.memory_command]
    _check_arguments(args)
    try:
        with open_store(args) as store:
            return command(store, args)
    except InputError:
        raise
    except BrokenPipeError:  # `lvp memory ls X | head -1`: the reader has what it wanted
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except _DAMAGE as exc:
        raise InputError(f"replay memory in {printable(args.workdir)} is damaged "
                         f"({_reason(exc)})") from None
    except OSError as exc:
        raise InputError(f"replay memory in {printable(args.workdir)} cannot be read "
                         f"({_reason(exc)})") from None


def _check_arguments(args: argparse.Namespace) -> None:
    """Arguments that need no store: checked before it is opened."""
    if args.memory_command == "show":
        args.at_seconds = _parse_at(args.at)
        if args.png is not None:
            _check_writable_target(args.png, args.workdir, "--png")
    elif args.memory_command == "export":
        _check_writable_target(args.dest, args.workdir, "export folder")


def _parse_at(text: str) -> float:
    try:
        t = parse_clock(text)
    except ValueError:
        t = math.nan
    if not math.isfinite(t):
        raise InputError(f"--at {printable(repr(text))} is not a time (seconds, MM:SS or "
                         "HH:MM:SS)")
    return t


def _check_writable_target(path: Path, workdir: Path, what: str) -> None:
    store = store_folder(workdir)
    target, folder = _resolved(path), _resolved(store)
    inside = target == folder or target.is_relative_to(folder)
    for name in ("data.mdb", "lock.mdb"):  # a hard link to a store file is inside it too
        with contextlib.suppress(OSError, ValueError):
            inside = inside or os.path.samefile(path, store / name)
    if inside:
        raise InputError(f"{what} {printable(path)} is inside the replay memory "
                         f"{printable(store)}; choose a path outside it")


def _ls(store: ReplayMemory, args: argparse.Namespace) -> int:
    metas = [_checked_meta(meta) for meta in store.metadata()]
    done = store.finished_segments()
    if args.json:
        print(json.dumps({"job": store.job(), "keyframes": metas,
                          "finished_segments": sorted(done)}, indent=2, allow_nan=False))
        return 0
    print(f"{'time':>9}  {'size':>7}  {'model':<11} {'seed':>6}  prompt")
    for meta in metas:
        size = f"{_cell(meta.get('width', '?'), 5)}x{_cell(meta.get('height', '?'), 5):<4}"
        print(f"{format_time(meta['t']):>9}  {size:>7}  {_cell(meta.get('model', '?'), 40):<11} "
              f"{_cell(meta.get('seed', ''), 24):>6}  "
              f"{_cell(meta.get('prompt', ''), PROMPT_COLUMN_CHARS)}")
    print(f"{len(metas)} keyframes; {len(done)} segments finished; "
          f"{store.disk_bytes() / 1024:.0f} KiB on disk")
    return 0


def _show(store: ReplayMemory, args: argparse.Namespace) -> int:
    t = args.at_seconds
    with _quiet_stderr():
        entry = store.nearest_at_or_before(t)
    if entry is None:
        raise InputError(f"no keyframe stored at or before {format_time(t)}")
    print(json.dumps(entry.meta, indent=2, allow_nan=False))
    if args.png:
        _write_file(args.png, encode_png(entry.image))
        print(f"saved {printable(args.png)}")
    return 0


def _export(store: ReplayMemory, args: argparse.Namespace) -> int:
    dest = args.dest
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {printable(dest)} ({_reason(exc)})") from None
    metas = []
    for t in store.keyframe_times():
        with _quiet_stderr():
            entry = store.get_keyframe(t)
        if entry is None:
            raise ValueError(f"keyframe at {t:g} s has metadata but no image")
        name = f"keyframe_{round(t * 1000):012d}ms.png"  # names come from times only
        _write_file(dest / name, encode_png(entry.image))
        metas.append({**entry.meta, "file": name})
    _write_file(dest / "keyframes.json", json.dumps(metas, indent=2, allow_nan=False).encode())
    print(f"exported {len(metas)} keyframes to {printable(dest)}")
    return 0


def _checked_meta(meta: Any) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise ValueError(f"keyframe metadata is a JSON {type(meta).__name__}, not an object")
    t = meta.get("t")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < 1e9:
        raise ValueError(f"keyframe metadata has no valid time (t = {_cell(t, 40)})")
    return meta


def _cell(value: object, width: int) -> str:
    """One table cell: control characters escaped, cut to `width` characters."""
    text = printable(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path`, refusing anything but a regular file. O_NONBLOCK: opening a
    FIFO nobody reads fails at once instead of waiting; the file is truncated only once
    fstat has shown it is a regular file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    mode = _mode(path)
    if mode is not None and not stat.S_ISREG(mode):
        raise InputError(f"cannot write {printable(path)}: it is not a regular file "
                         f"({file_kind(mode)})")
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise InputError(f"cannot write {printable(path)} ({_reason(exc)})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"cannot write {printable(path)}: it is not a regular file "
                             f"({file_kind(mode)})")
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise InputError(f"cannot write {printable(path)} ({_reason(exc)})") from None
    finally:
        os.close(fd)


def _mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):
        return None


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return Path(os.path.abspath(path))


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) if isinstance(exc, OSError) else None
    return printable(one_line(text or exc)) or type(exc).__name__


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Mute file descriptor 2 while a keyframe is decoded: libpng reports a damaged PNG on
    stderr itself ('libpng error: IDAT: CRC error') before OpenCV returns the failure that
    becomes our one-line message."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the exit-time flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
        pass
