"""Thread limits for the stage objects."""

from __future__ import annotations

import sys


def limit_threads(threads: int) -> None:
    """Keep torch and OpenCV to `threads` threads in this process.

    One stage per core, so they do not oversubscribe the machine; and the same thread count
    everywhere, because a reduction split over another number of threads rounds differently
    (the frames of a render must not depend on where it ran). Call it after the backend is
    loaded: torch is only configured where a backend imported it, so torch-free backends
    don't pay its start-up time.
    """
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
