"""Temporal stability measures (stitcher.quality): step ratios at given frames and background
flicker, on synthetic clips, on the procedural world as rendered, and through a real encode."""

import av
import numpy as np
import pytest

import stitcher.sinks as sinks
from engine.models.base import create_backend
from evaluation.evaluate import Run, eval_spec
from stitcher.quality import (
    STEP_FLOOR,
    background_flicker,
    every,
    flicker_score,
    frame_differences,
    frame_steps,
    static_mask,
    step_means,
    step_ratio,
)
from stitcher.sinks import FragmentedMP4Sink

FPS = 15


def still_clip(frames: int = 60, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return np.repeat(picture[None], frames, axis=0)


def test_positions_and_steps():
    assert every(30, 91) == [30, 60, 90]
    assert every(30, 30) == []
    with pytest.raises(ValueError):
        every(0, 10)
    clip = np.random.default_rng(1).integers(0, 256, (150, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(frame_steps(clip), frame_differences(clip))  # chunked, same values
    assert frame_steps(clip[:1]).shape == (0,)


def test_still_clip_reads_one_without_dividing_by_zero():
    clip = still_clip()
    assert step_means(frame_steps(clip), every(FPS, len(clip))) == (0.0, 0.0)
    assert step_ratio(clip, every(FPS, len(clip))) == 1.0
    assert background_flicker(clip) == 0.0 and flicker_score(clip) == 1.0
    assert static_mask(clip).all()


def test_jump_every_second_reads_large():
    clip = still_clip(90).astype(np.int16)
    for k, p in enumerate(every(30, len(clip))):
        clip[p:] += 3 if k % 2 == 0 else -3  # the whole picture jumps by 3 levels, then back
    clip = np.clip(clip, 0, 255).astype(np.uint8)
    positions = every(30, len(clip))
    at, elsewhere = step_means(frame_steps(clip), positions)
    assert elsewhere == 0.0 and at > 2.5
    assert step_ratio(clip, positions) == pytest.approx((at + STEP_FLOOR) / STEP_FLOOR)
    assert step_ratio(clip, positions) > 100
    # The same steps, measured at other frames, are the "elsewhere" and the ratio drops.
    assert step_ratio(clip, every(7, len(clip)), exclude=positions) == 1.0
    assert step_ratio(clip, every(7, len(clip))) < 0.3


def test_positions_outside_the_clip_are_ignored_and_empty_sets_refused():
    clip = still_clip(40)
    assert step_ratio(clip, [0, 10, 40, 99]) == step_ratio(clip, [10])
    with pytest.raises(ValueError):
        step_ratio(clip, [0, 40])  # frame 0 has no step; 40 is past the end
    with pytest.raises(ValueError):
        step_ratio(clip, range(1, 40))  # no step left to compare with


def test_flicker_is_measured_on_the_static_background_only():
    clip = still_clip(30, 64)
    moving = clip.copy()
    for t in range(len(moving)):
        moving[t, 20:30, 2 * t:2 * t + 10] = 255  # a subject crossing the picture
    mask = static_mask(moving)
    assert 0.5 < mask.mean() < 0.95 and not mask[25, 30]
    assert background_flicker(moving, mask) == 0.0
    noisy = moving.astype(np.int16)
    noisy[1::2] += 2  # every other frame two levels brighter: flicker everywhere
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    assert background_flicker(noisy, mask) == pytest.approx(2.0, abs=0.05)
    assert flicker_score(noisy, mask) == pytest.approx((255 - 2.0) / 255, abs=1e-3)
    with pytest.raises(ValueError):
        background_flicker(noisy, np.zeros(mask.shape, bool))


def procedural(prompt: str, seconds: float = 6.0, size: int = 128) -> np.ndarray:
    run = Run(eval_spec(prompt, seconds, "procedural", 0, size=size, fps=FPS),
              create_backend("procedural"))
    try:
        return run.stitched()
    finally:
        run.close()


@pytest.mark.parametrize("motion", ["resting", "spinning", "pulsing", "orbiting"])
def test_procedural_world_has_no_keyframe_pulse(motion):
    """By construction: the world is drawn from the same function at every frame, keyframes
    are only where the model is told what to draw, so nothing happens at them."""
    frames = procedural(f"a green circle {motion} on an ocean background")
    assert 0.8 < step_ratio(frames, every(FPS, len(frames))) < 1.25


def encode_decode(frames: np.ndarray, fps: int, crf: int = 23, preset: str = "veryfast",
                  tmp=None) -> np.ndarray:
    path = tmp / "clip.mp4"
    with FragmentedMP4Sink(path, fps, frames.shape[2], frames.shape[1], crf=crf,
                           preset=preset) as sink:
        sink.write(frames)
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# The x264 options before the change for issue 18: x264's I/P quantiser ratio of 1.4.
PREVIOUS_OPTIONS = {"preset": "veryfast", "crf": "23", "x264-params": "keyint=30:scenecut=0:mbtree=0"}


def test_still_procedural_picture_does_not_pump_at_idr_frames(tmp_path, monkeypatch):
    """A still picture through the MP4 sink (GOP of one second), decoded again: no IDR frame
    shows. With the previous options every IDR fell back to a coarse I frame after P frames
    that had refined the picture over the GOP, a jump once a second."""
    fps = 30
    picture = procedural("a green circle resting on an ocean background", 1.0, 128)[:1]
    frames = np.repeat(picture, 6 * fps, axis=0)
    idr = every(fps, len(frames))
    decoded = encode_decode(frames, fps, tmp=tmp_path)
    assert step_ratio(decoded, idr) < 1.2

    monkeypatch.setattr(sinks, "_x264_options",
                        lambda crf, preset, keyint, gop_frames=None: PREVIOUS_OPTIONS)
    before = encode_decode(frames, fps, tmp=tmp_path)
    assert step_ratio(before, idr) > 3.0


def _worst_gop_position(decoded: np.ndarray, gop: int) -> float:
    """The mean step onto each position of the GOP (the IDR's and the frames before it
    included), the worst over the median: a jump moved off the IDR still shows."""
    steps = frame_steps(decoded)
    usable = len(steps) // gop * gop
    by_position = steps[:usable].reshape(-1, gop)[1:].mean(axis=0)
    return float((by_position.max() + STEP_FLOOR) / (np.median(by_position) + STEP_FLOOR))


def test_a_resting_subject_does_not_jump_at_idr_frames(tmp_path, monkeypatch):
    """A resting subject breathes by a fraction of a level per frame at its edges: P frames at
    the crf's quantiser skip that, and without the catch-up frames before each IDR (the
    settings before it, as below) the IDR showed it all at once."""
    fps = 30
    frames = procedural("a green circle resting on an ocean background", 8.0, 256)
    decoded = encode_decode(frames, fps, tmp=tmp_path)
    assert _worst_gop_position(decoded, fps) < 1.6

    no_catch_up = {"preset": "veryfast", "crf": "23",
                   "x264-params": "keyint=30:scenecut=0:mbtree=0:ipratio=10"}
    monkeypatch.setattr(sinks, "_x264_options",
                        lambda crf, preset, keyint, gop_frames=None: no_catch_up)
    before = encode_decode(frames, fps, tmp=tmp_path)
    assert _worst_gop_position(before, fps) > 2.4


def _packet_sizes(tmp) -> np.ndarray:
    with av.open(str(tmp / "clip.mp4")) as container:
        return np.array([p.size for p in container.demux(video=0) if p.size])


def test_a_resting_textured_subject_does_not_jump_at_idr_frames(tmp_path, monkeypatch):
    """The bundled model's resting subject is textured: an I frame re-codes it with its own
    noise, which shows at every IDR unless that frame is at x264's finest quantiser. The
    crf is lowered for it and a zone gives the P frames back their bitrate."""
    fps = 30
    run = Run(eval_spec("a green circle resting on an ocean background", 8.5, "tiny", 0,
                        size=256, fps=fps), create_backend("tiny"))
    try:
        frames = run.stitched()[fps // 2:]
    finally:
        run.close()
    current = sinks._x264_options

    def encode_with(**keywords) -> tuple[float, np.ndarray]:
        monkeypatch.setattr(sinks, "_x264_options",
                            lambda crf, preset, keyint, gop_frames=None: current(
                                crf, preset, keyint, gop_frames, **keywords))
        decoded = encode_decode(frames, fps, tmp=tmp_path)
        return _worst_gop_position(decoded, fps), _packet_sizes(tmp_path)

    after, sizes = encode_with()
    before, sizes_before = encode_with(i_frame_at_q0=False, no_deadzones=False,
                                       catch_up_qp_below=19)
    assert after < 2.0 < before
    # The cost is bits in the I frames: the P frames (all but each GOP's I frame and catch-up
    # frames) are coded at the crf, each at most a few bytes more (fine detail the deadzones
    # dropped); the file grows by less than 30% (this calm clip is mostly I frames).
    p_frames = [i for i in range(len(sizes)) if 0 < i % fps < fps - sinks.CATCH_UP_FRAMES]
    assert sizes[::fps].mean() > 1.1 * sizes_before[::fps].mean()
    assert np.mean(sizes[p_frames] - sizes_before[p_frames]) < 50
    assert sizes.sum() < 1.3 * sizes_before.sum()
