"""Every run reports its temporal quality: per-boundary seam figures and the keyframe step
ratio, measured by the stitcher on the frames it writes, checked here against the same figures
computed directly on the decoded output."""

import json

import av
import numpy as np
import pytest

from cli.job import run_job
from stitcher.probe import ProbePlan, TemporalProbe
from stitcher.quality import STEP_FLOOR, frame_differences, seam_ratio_at
from tests.conftest import make_spec, make_timeline


def decode(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("prompt", ["a red circle orbiting at night",
                                    "a white square drifting right on a meadow background"])
def test_report_temporal_figures_match_the_decoded_video(tmp_path, prompt):
    spec = make_spec(tmp_path, prompt=prompt, duration=17.0, fps=10, width=64, height=64,
                     overlap=4, crf=0)  # lossless x264: the decoded video is what was written
    report = run_job(spec, make_timeline(spec).beats, executor="local")
    temporal = json.loads(spec.out.with_suffix(".json").read_text())["temporal"]
    assert temporal == json.loads(json.dumps(report["temporal"]))

    frames = decode(spec.out).astype(np.float32)
    assert len(frames) == spec.total_frames
    diffs = frame_differences(frames)
    boundaries = [50, 100, 150]
    assert [s["frame"] for s in temporal["seams"]] == boundaries
    assert [s["segment"] for s in temporal["seams"]] == [1, 2, 3]
    for seam, b in zip(temporal["seams"], boundaries, strict=True):
        direct = seam_ratio_at(diffs, b, spec.overlap, spec.fps, floor=STEP_FLOOR)
        assert seam["seam_ratio"] == pytest.approx(direct, rel=0.1), b  # 4:2:0 chroma aside
    assert temporal["worst_seam_ratio"] == max(s["seam_ratio"] for s in temporal["seams"])

    steps = np.concatenate([[0.0], diffs])  # steps[i]: onto frame i
    at_keyframes = [i for i in range(1, len(frames)) if i % spec.fps == 0]
    elsewhere = [i for i in range(1, len(frames)) if i % spec.fps]
    direct_ratio = (steps[at_keyframes].mean() + STEP_FLOOR) / (steps[elsewhere].mean() + STEP_FLOOR)
    assert temporal["keyframe_step_ratio"] == pytest.approx(direct_ratio, rel=0.1)


def test_probe_sees_a_pulse_once_a_second_and_is_1_on_smooth_motion():
    fps, total = 10, 60
    x = np.linspace(0, 255, total)
    smooth = np.broadcast_to(x[:, None, None, None], (total, 8, 8, 3)).astype(np.uint8)
    pulsing = smooth.copy()
    pulsing[::fps] = np.clip(pulsing[::fps].astype(int) + 40, 0, 255).astype(np.uint8)
    ratios = {}
    for name, frames in (("smooth", smooth), ("pulsing", pulsing)):
        probe = TemporalProbe(ProbePlan(fps=fps, segment_frames=20, overlap=4, total_frames=total))
        probe.observe(0, frames[:25])
        probe.observe(25, frames[25:])
        ratios[name] = probe.totals.ratio
    assert ratios["smooth"] == pytest.approx(1.0, abs=0.1)
    assert ratios["pulsing"] > 5


def test_probe_is_bounded_and_chunking_does_not_matter():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (400, 16, 16, 3), dtype=np.uint8)
    plan = ProbePlan(fps=10, segment_frames=50, overlap=4, total_frames=400)
    whole, parts = TemporalProbe(plan), TemporalProbe(plan)
    seams_whole = whole.observe(0, frames) + whole.finish()
    seams_parts = ()
    for start in range(0, 400, 7):
        seams_parts += parts.observe(start, frames[start:start + 7])
    seams_parts += parts.finish()
    assert seams_whole == seams_parts and len(seams_whole) == 7
    assert whole.totals == parts.totals
    assert len(whole._steps) <= whole._steps.maxlen < 60  # the last seconds only
    with pytest.raises(ValueError, match="expected frame"):
        whole.observe(3, frames[:2])
