"""Can this machine keep a live stream at wall-clock pace? Measured on the first segments,
said once at start, and kept for the report.

The figure is work seconds per video second from the stages' own timings (what the stream's
pacing cannot hide: a paced sink waits, the stages do not). In one process the stages run one
after another, so their times add up; on Ray they overlap, so the slowest stage bounds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.stats import SegmentRendered, StatLogger, StitchResult

POLICY = ("segments that are not ready in time are published late and the schedule restarts "
          "from them; lvp_live_lag_seconds and lvp_live_late_segments_total show it")


class SpeedCheck(StatLogger):
    def __init__(self, fps: int, workers: int, say: Callable[[str], None],
                 after_seconds: float = 4.0) -> None:
        self.fps = fps
        self.workers = workers  # 0: every stage in one process (local executor)
        self.say = say
        self.after_seconds = after_seconds
        self.keyframe = self.render = self.stitch = 0.0
        self.video = 0.0
        self.cost: float | None = None  # work seconds per video second

    def rendered(self, stats: SegmentRendered) -> None:
        self.keyframe += stats.keyframe_seconds
        self.render += stats.render_seconds

    def written(self, stats: StitchResult, now: float) -> None:
        self.stitch += stats.blend_seconds + stats.encode_seconds
        self.video += stats.frames_written / self.fps
        if self.cost is None and self.video >= self.after_seconds:
            if self.workers:
                self.cost = max(self.keyframe, self.render / self.workers, self.stitch) / self.video
            else:
                self.cost = (self.keyframe + self.render + self.stitch) / self.video
            if self.cost < 0.9:
                self.say(f"lvp: this machine makes the stream at {1 / self.cost:.1f}x real time: "
                         "it keeps pace")
            else:
                self.say(f"lvp: warning: this machine makes the stream at only "
                         f"{1 / self.cost:.2f}x real time, too slow for live: {POLICY}; a lighter "
                         "--preset (live, draft) or a smaller --size keeps pace")

    def summary(self) -> dict[str, Any]:
        return {"work_seconds_per_video_second": self.cost,
                "realtime_capable": None if self.cost is None else self.cost < 0.9,
                "policy": POLICY}
