"""A failure during work, told in one line; the whole story goes to a log file."""

from __future__ import annotations

import contextlib
import re
import time
import traceback
from pathlib import Path

from engine.schedule import printable

LOG_NAME = "lvp.log"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def root_cause(exc: BaseException) -> BaseException:
    """The error a stage raised, not the wrapper Ray put around it on the way here."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError keeps the original
        if isinstance(cause, BaseException):
            exc = cause
            continue
        break
    return exc


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, without colour codes or control characters."""
    cause = root_cause(exc)
    lines = [line.strip() for line in _ANSI.sub("", str(cause)).splitlines() if line.strip()]
    text = f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    return printable(text[:400])


def log_failure(workdir: Path, exc: BaseException) -> Path | None:
    """Append the full traceback to WORKDIR/lvp.log; None if even that cannot be written."""
    path = workdir / LOG_NAME
    try:
        with path.open("a") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} render failed\n")
            log.write(_ANSI.sub("", "".join(traceback.format_exception(exc))))
    except OSError:
        with contextlib.suppress(OSError):
            if path.stat().st_size == 0:
                path.unlink()
        return None
    return path
