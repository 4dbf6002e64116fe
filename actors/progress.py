"""The progress bar: frames, real-time factor and ETA."""

from __future__ import annotations

from tqdm import tqdm


class ProgressBar:
    def __init__(self, total_frames: int, fps: int, enabled: bool = True) -> None:
        self.fps = fps
        self.bar = tqdm(total=total_frames, unit="frame", disable=not enabled,
                        dynamic_ncols=True, desc="render")

    def update(self, frames_done: int, wall_seconds: float) -> None:
        self.bar.update(frames_done - self.bar.n)
        if wall_seconds > 0:
            self.bar.set_postfix_str(f"rtf {frames_done / self.fps / wall_seconds:.2f}x")

    def close(self) -> None:
        self.bar.close()
