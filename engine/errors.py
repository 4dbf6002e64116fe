"""Errors that carry a message meant for the user."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input; the message is one line that names the problem."""


def one_line(text: object) -> str:
    """Messages must stay on one line even if a path or a library's reason has newlines."""
    return " ".join(str(text).split())


def input_error(problem: str, path: Path | str, reason: BaseException | str | None = None) -> InputError:
    """'problem: path (reason)' on one line."""
    msg = f"{problem}: {path}"
    if reason is not None:
        detail = one_line(reason) or type(reason).__name__
        msg += f" ({detail})"
    return InputError(one_line(msg))
