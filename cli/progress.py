"""The progress bar: a stat logger showing frames, real-time factor and ETA since launch."""

from __future__ import annotations

import sys

from tqdm import tqdm

from engine.stats import StatLogger, StitchResult


class ProgressBar(StatLogger):
    def __init__(self, total_frames: int, fps: int, enabled: bool = True,
                 launched_seconds_ago: float = 0.0, initial: int = 0) -> None:
        self.fps = fps
        self.frames = 0  # written by this run (a resumed run starts the bar at `initial`)
        self.bar = tqdm(total=total_frames, unit="frame", disable=not enabled, initial=initial,
                        dynamic_ncols=True, desc="render", smoothing=0)
        # tqdm's clock starts now; the user's started at launch: rates and ETA count from there.
        if enabled:
            self.bar.start_t -= launched_seconds_ago

    def written(self, stats: StitchResult, now: float) -> None:
        self.frames += stats.frames_written
        self.bar.update(stats.frames_written)
        if now > 0:
            self.bar.set_postfix_str(f"rtf {self.frames / self.fps / now:.2f}x")

    def restarted(self, part: str, what: str) -> None:
        # On stderr with lvp's other lines, also when the bar is off (--quiet).
        tqdm.write(f"lvp: warning: {what}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
