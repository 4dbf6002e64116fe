import numpy as np
import pytest

from engine.errors import InputError
from engine.prompt import COLORS, parse_prompt
from engine.world import BASE_RADIUS, BeatSample, render_frame, subject_state


def test_prompt_maps_vocabulary_and_warns_on_unknown_words():
    scene = parse_prompt("A purple star drifting slowly left over the ocean, glittering")
    assert (scene.color, scene.shape, scene.motion, scene.background) == (
        "purple", "star", "drifting_left", "ocean")
    assert any("glittering" in w for w in scene.warnings)


def test_prompt_without_subject_is_an_error():
    with pytest.raises(InputError, match="no subject"):
        parse_prompt("a beautiful red sunset")


def test_defaults_fill_missing_attributes():
    scene = parse_prompt("triangle")
    assert (scene.color, scene.motion, scene.background) == ("white", "resting", "day")


def _subject_mask(frame, rgb):
    return np.all(np.abs(frame.astype(int) - rgb) < 12, axis=-1)


@pytest.mark.parametrize("color", list(COLORS))
def test_subject_has_the_prompt_color_and_is_large(color):
    scene = parse_prompt(f"a {color} square resting on a night background")
    frame = render_frame(scene, subject_state(scene, 0.0, 1), 128, 128, 1)
    mask = _subject_mask(frame, COLORS[color])
    # A square of half-diagonal 0.95 r covers about 1.8 r^2; allow for the outline.
    assert mask.sum() > 0.5 * (BASE_RADIUS * 128) ** 2
    ys, xs = np.nonzero(mask)
    assert xs.max() - xs.min() >= 128 // 10


def test_rendering_is_deterministic_and_seed_dependent():
    scene = parse_prompt("a green star orbiting in a meadow")
    a = render_frame(scene, subject_state(scene, 3.3, 7), 96, 64, 7)
    b = render_frame(scene, subject_state(scene, 3.3, 7), 96, 64, 7)
    c = render_frame(scene, subject_state(scene, 3.3, 8), 96, 64, 8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bouncing_follows_gravity():
    scene = parse_prompt("a red circle bouncing")
    ys = np.array([subject_state(scene, t, 0).y for t in np.arange(0, 2.4, 0.01)])
    accel = np.diff(ys, 2)
    # Between bounces the vertical acceleration is constant and points down (y grows down).
    smooth = np.abs(accel - np.median(accel)) < 1e-6
    assert smooth.mean() > 0.9 and np.median(accel) > 0


@pytest.mark.parametrize("motion,axis,sign", [("drifting left", "x", -1), ("drifting right", "x", 1)])
def test_drift_direction(motion, axis, sign):
    scene = parse_prompt(f"a blue square {motion}")
    a, b = subject_state(scene, 1.0, 0), subject_state(scene, 1.5, 0)
    assert np.sign(getattr(b, axis) - getattr(a, axis)) == sign


def test_dancing_moves_with_the_beat():
    scene = parse_prompt("a pink star dancing")
    still = subject_state(scene, 1.0, 0, BeatSample(0.0, 0.5))
    same_phase = subject_state(scene, 2.0, 0, BeatSample(0.0, 0.5))
    hop = subject_state(scene, 1.0, 0, BeatSample(1.0, 0.5))
    assert still == same_phase  # no beat, no movement, whatever the clock says
    assert hop.y < still.y and hop.scale > still.scale
