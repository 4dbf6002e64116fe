"""Prompt changes from people: validation (the same rules as a prompt on the command line)
and the stdin reader. The HTTP server's POST /prompt and the page's text box use the same
`Steering.change`."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TextIO

from engine.errors import InputError
from engine.live_prompts import LivePrompts
from engine.schedule import PromptSchedule, check_prompt, printable


class Steering:
    def __init__(self, prompts: LivePrompts, strict: bool,
                 say: Callable[[str], None] = lambda line: print(line, file=sys.stderr,
                                                                 flush=True)) -> None:
        self.prompts = prompts
        self.strict = strict  # the backend needs a subject in every prompt (procedural)
        self.say = say
        self.current = prompts.current()[0].texts[-1]

    def change(self, text: str) -> list[str]:
        """Ask for `text` from the next keyframe not yet made; returns warnings. Raises
        InputError (one line, no raw text echoed) for an empty, over-long or control-laden
        prompt; the stream goes on either way."""
        text = text.strip()
        check_prompt(text, "the new prompt")
        warnings = PromptSchedule.single(text).warnings(require_subject=self.strict)
        self.prompts.request(text)
        self.current = text
        self.say(f"lvp: prompt change asked: {printable(text)}")
        return warnings


def read_stdin(steering: Steering, stream: TextIO | None = None) -> threading.Thread:
    """One prompt per line on stdin (a daemon thread; EOF just ends the reading)."""
    source = stream or sys.stdin

    def run() -> None:
        try:
            for line in source:
                if not line.strip():
                    continue
                try:
                    for warning in steering.change(line):
                        steering.say(f"lvp: warning: {printable(warning)}")
                except InputError as exc:
                    steering.say(f"lvp: prompt not changed: {printable(exc)}")
        except (OSError, ValueError):
            return  # stdin closed or not text: no steering from there

    thread = threading.Thread(target=run, name="lvp-stdin", daemon=True)
    thread.start()
    return thread
