"""The bundled learned model (`tiny`). This file stays torch-free: the CLI checks the
weights exist before any work starts without paying torch's import time."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import InputError

WEIGHTS = Path(__file__).parent / "weights" / "tiny.safetensors"
WEIGHTS_ENV = "LVP_TINY_WEIGHTS"  # another weights file (tests, experiments)


def weights_path() -> Path:
    return Path(os.environ.get(WEIGHTS_ENV) or WEIGHTS)


def check_weights() -> Path:
    path = weights_path()
    if not path.is_file():
        raise InputError(f"tiny model weights not found: {path} (make them with `lvp train`)")
    return path
