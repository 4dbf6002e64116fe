import numpy as np
import pytest

from engine.errors import InputError
from engine.schedule import PromptSchedule, read_schedule
from engine.spec import parse_duration, parse_size
from engine.timeline import BeatTrack
from tests.conftest import make_spec, make_timeline


def test_segments_tile_the_video_with_overlaps(tmp_path):
    spec = make_spec(tmp_path, duration=12.5, fps=10, overlap=4)
    tl = make_timeline(spec)
    assert tl.num_segments == 3
    plans = [tl.segment(k) for k in range(3)]
    assert plans[0].frame_start == 0 and plans[-1].frame_stop == spec.total_frames == 125
    for a, b in zip(plans, plans[1:], strict=False):
        assert a.frame_stop - b.frame_start == 4  # shared frames, centered on the boundary
        assert b.frame_start == round(b.t0 * spec.fps) - 2
    assert plans[0].keyframe_times == (0, 1, 2, 3, 4, 5)
    assert plans[2].keyframe_times == (10, 11, 12, 12.5)
    assert tl.all_keyframe_times()[:7] == [0, 1, 2, 3, 4, 5, 6]
    assert len(plans[1].beat_energy) == plans[1].num_frames


def test_memory_entries_every_five_seconds(tmp_path):
    tl = make_timeline(make_spec(tmp_path, duration=20))
    stored = [t for t in tl.all_keyframe_times() if tl.keyframe_plan(0, t).store_in_memory]
    assert stored == [0, 5, 10, 15, 20]


def test_prompt_schedule_file(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("# story\n00:00 a red circle bouncing\n00:07 a blue star spinning\n"
                    "01:00:00 a green square resting\n")
    sched = read_schedule(path)
    assert sched.text_at(6.9).startswith("a red") and sched.text_at(7).startswith("a blue")
    assert sched.text_at(4000).startswith("a green")
    window = sched.window(5, 10)
    assert window.texts == sched.texts[:2] and window.text_at(8).startswith("a blue")


@pytest.mark.parametrize("content,match", [
    ("00:00 a red circle\n00:00 a blue star\n", "increase"),
    ("0:0 red circle\n", "expected"),
    ("00:05 a red sunset\n", "no subject"),
    ("", "no prompts"),
])
def test_bad_schedules(tmp_path, content, match):
    path = tmp_path / "p.txt"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        read_schedule(path)


@pytest.mark.parametrize("text,seconds", [("600", 600), ("10:00", 600), ("1:00:00", 3600),
                                          ("90s", 90), ("2h", 7200), ("0.5", 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5", "abc", "", "25h", "nan"])
def test_bad_durations(text):
    with pytest.raises(InputError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["255x256", "32x32", "8000x8000", "256", "axb"])
def test_bad_sizes(text):
    with pytest.raises(InputError):
        parse_size(text)


def test_beat_phase_is_the_running_integral():
    beats = BeatTrack.from_envelope(np.ones(30, np.float32), fps=10)
    assert beats.phase[0] == 0 and beats.phase[10] == pytest.approx(1.0)


def test_single_schedule():
    assert PromptSchedule.single("a red circle").window(0, 100).texts == ("a red circle",)


def test_shots_are_runs_of_one_prompt():
    schedule = PromptSchedule((0.0, 5.0, 10.0, 15.0, 20.0), ("a", "a", "b", "a", "c"))
    shots = [schedule.shot_at(t) for t in (0.0, 7.0, 12.0, 16.0, 30.0)]
    assert shots == [0, 0, 2, 3, 4]  # a prompt listed twice in a row is one shot; a return is new


def test_without_audio_beats_only_under_dancing_prompts():
    schedule = PromptSchedule((0.0, 2.0, 4.0), ("a red circle bouncing", "a blue star dances",
                                                "a green square orbiting"))
    beats = BeatTrack.without_audio(schedule, 60, 10)
    assert beats.energy[:20].max() == 0 and beats.energy[40:].max() == 0
    assert beats.energy[20:40].max() > 0.9  # a steady beat while the dancing prompt holds
    # The phase (running integral) only advances while the beat sounds.
    assert beats.phase[20] == 0 and beats.phase[40] > 0 and beats.phase[-1] == beats.phase[41]
