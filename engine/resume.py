"""Where a render goes on from, given how many frames its outputs already hold whole."""

from __future__ import annotations

import bisect

from engine.timeline import Timeline


def first_segment_for(timeline: Timeline, written: int) -> int:
    """The segment to render first so that frames `written`.. come out as in one run.

    Segment k's own frames start at its first frame (the overlap before it blends in the tail
    of segment k-1), so the segment holding frame `written` is rendered again together with
    the one before it, whose frames are all written already and serve only for that tail.
    """
    starts = [timeline.frame_start(k) for k in range(timeline.num_segments)]
    holder = bisect.bisect_right(starts, written) - 1
    return max(0, holder - 1)
