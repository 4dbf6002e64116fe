import numpy as np
import pytest

from engine.models.base import MemoryView
from engine.models.procedural import ProceduralSegmentModel
from engine.prompt import parse_prompt
from engine.world import render_frame, subject_state
from stitcher.blend import crossfade, flow_blend, hard_cut
from stitcher.quality import seam_ratio, sharpness_kept
from stitcher.stitch import Stitcher
from tests.conftest import make_spec, make_timeline


class ListSink:
    def __init__(self):
        self.chunks = []
        self.closed = False

    def write(self, frames):
        self.chunks.append(frames.copy())

    def close(self):
        self.closed = True

    @property
    def frames(self):
        return np.concatenate(self.chunks)


def _render_segments(timeline, perturb=None):
    model = ProceduralSegmentModel()
    segments = []
    for k in range(timeline.num_segments):
        plan = timeline.segment(k)
        frames = model.render(plan, (), MemoryView())
        if perturb and k % 2 == 1:
            frames = perturb(frames)
        segments.append((k, plan.frame_start, frames, timeline.shared_tail(k)))
    return segments


def _stitch(segments, order, blend="flow"):
    sink = ListSink()
    stitcher = Stitcher([sink], blend=blend)
    for i in order:
        stitcher.add(*segments[i])
    stitcher.close()
    assert sink.closed
    return sink.frames


def test_out_of_order_segments_come_out_in_order_and_complete(tmp_path):
    spec = make_spec(tmp_path, duration=16, prompt="a blue square drifting right at sunset")
    timeline = make_timeline(spec)
    segments = _render_segments(timeline)
    in_order = _stitch(segments, range(len(segments)))
    shuffled = _stitch(segments, [2, 0, 3, 1])
    assert len(in_order) == spec.total_frames
    assert np.array_equal(in_order, shuffled)
    # Segments that agree exactly are passed through: identical to a one-shot render.
    model = ProceduralSegmentModel()
    whole = make_timeline(make_spec(tmp_path, duration=16, segment_seconds=60, overlap=0,
                                    prompt="a blue square drifting right at sunset"))
    one_shot = model.render(whole.segment(0), (), MemoryView())
    assert np.abs(in_order.astype(int) - one_shot).max() <= 1


def test_stitcher_rejects_duplicates_and_reports_missing(tmp_path):
    timeline = make_timeline(make_spec(tmp_path, duration=11))
    segments = _render_segments(timeline)
    stitcher = Stitcher([ListSink()])
    stitcher.add(*segments[1])
    with pytest.raises(ValueError):
        stitcher.add(*segments[1])
    with pytest.raises(RuntimeError, match="segment 0"):
        stitcher.close()


def _shift_and_tint(frames):
    """'A little' disagreement: the whole frame 1 pixel to the right and 1 level brighter."""
    return np.clip(np.roll(frames, 1, axis=2).astype(np.int16) + 1, 0, 255).astype(np.uint8)


def test_flow_blend_hides_disagreeing_segments(tmp_path):
    spec = make_spec(tmp_path, duration=20, fps=30, width=128, height=128, overlap=16,
                     prompt="a red circle orbiting on a day background")
    timeline = make_timeline(spec)
    clean = _render_segments(timeline)
    perturbed = _render_segments(timeline, perturb=_shift_and_tint)
    boundaries = [timeline.segment(k).t0 * spec.fps for k in range(1, 4)]
    boundaries = [round(b) for b in boundaries]

    def ratio(segments, blend):
        return seam_ratio(_stitch(segments, range(4), blend), boundaries, 16, spec.fps)

    assert ratio(clean, "flow") <= 1.1  # segments that agree leave no seam at all
    flow, cut = ratio(perturbed, "flow"), ratio(perturbed, "cut")
    assert cut > 2.5  # without blending the disagreement is a visible jump
    assert flow <= 1.2


def test_flow_blend_avoids_the_double_image_of_a_crossfade(tmp_path):
    # Segments 3 px apart: a cross-fade shows both pictures at once (edges doubled and
    # softened); the flow blend morphs one into the other and keeps the detail.
    spec = make_spec(tmp_path, duration=20, fps=30, width=128, height=128, overlap=16,
                     prompt="a red circle orbiting on a day background")
    timeline = make_timeline(spec)
    moved = _render_segments(timeline, perturb=lambda f: np.roll(f, 3, axis=2))
    boundaries = [round(timeline.segment(k).t0 * spec.fps) for k in range(1, 4)]

    def kept(blend):
        return sharpness_kept(_stitch(moved, range(4), blend), boundaries, 16, spec.fps)

    flow, fade = kept("flow"), kept("crossfade")
    assert fade < 0.7 and flow > fade + 0.15


def test_blend_endpoints_lean_toward_each_side(rng):
    scene = parse_prompt("a red circle orbiting")
    a = np.stack([render_frame(scene, subject_state(scene, t, 0), 64, 64, 0)
                  for t in np.arange(6) / 10])
    b = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)
    for blend in (flow_blend, crossfade):
        out = blend(a, b).astype(int)
        err_a = np.abs(out - a).mean(axis=(1, 2, 3))
        assert err_a[0] < err_a[-1]  # starts close to a, ends close to b
    cut = hard_cut(a, b)
    assert np.array_equal(cut[:3], a[:3]) and np.array_equal(cut[3:], b[3:])


def test_a_resume_from_the_carry_continues_the_same_frames_from_any_committed_point(tmp_path):
    """After each segment the carry holds what the outputs may not hold whole; resuming from
    it at any GOP-aligned point it reaches writes the uninterrupted frames, starting with the
    segment after the carried one (the one that was in flight)."""
    from stitcher.carry import CarryFile, resume_point

    spec = make_spec(tmp_path, duration=16, prompt="a blue square drifting right at sunset")
    timeline = make_timeline(spec)
    segments = _render_segments(timeline)
    whole = _stitch(segments, range(len(segments)))
    gop = spec.fps
    carry = CarryFile(tmp_path, gop)
    stitcher = Stitcher([ListSink()], carry=carry)
    resumed_from = set()
    for k in range(len(segments) - 1):
        stitcher.add(*segments[k])
        saved = carry.load()
        assert saved is not None and saved.segment == k
        assert saved.stop == timeline.frame_start(k + 1)
        assert saved.frame_start == carry.keep_from(saved.stop)
        reach = timeline.frame_start(k + 2) if k + 2 < timeline.num_segments else spec.total_frames
        for written in range(saved.frame_start + gop - saved.frame_start % gop, reach, gop):
            start = resume_point(timeline, written, saved)
            assert start.segment == k + 1
            sink = ListSink()
            Stitcher([sink], start=start).add(*segments[k + 1])
            got = sink.frames
            assert np.array_equal(got, whole[written:written + len(got)]), (k, written)
            assert len(got) == min(reach, spec.total_frames) - written
            resumed_from.add(written)
    assert len(resumed_from) > 5
    stitcher.add(*segments[-1])
    assert carry.load() is None  # the video is complete: nothing to carry


def test_a_carry_that_does_not_reach_the_outputs_is_not_used(tmp_path):
    from stitcher.carry import Carry, resume_point

    spec = make_spec(tmp_path, duration=16, prompt="a blue square drifting right at sunset")
    timeline = make_timeline(spec)
    frame = np.zeros((1, spec.height, spec.width, 3), np.uint8)
    stop = timeline.frame_start(2)
    held = np.repeat(frame, timeline.shared_tail(1), axis=0)
    carry = Carry(1, stop - 10, np.repeat(frame, 10, axis=0), held)
    assert resume_point(timeline, stop - 5, carry).segment == 2
    # Outputs behind the carry's first frame, or beyond what the next segment writes.
    for written in (stop - 20, timeline.frame_start(3) + 5):
        point = resume_point(timeline, written, carry)
        assert len(point.held) == 0 and len(point.carried) == 0  # rendered again instead
    wrong_size = Carry(1, stop - 10, np.zeros((10, 8, 8, 3), np.uint8), held)
    assert len(resume_point(timeline, stop - 5, wrong_size).held) == 0
