"""Live prompt changes in the timeline: where they land, that every copy of the timeline
agrees, and that the record plans exactly what a render of it would."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np

from engine.live_prompts import SCHEDULE_NAME, LivePrompts
from engine.schedule import PromptSchedule, read_schedule
from engine.timeline import CONTEXT_KEYFRAMES, BeatTrack, Timeline
from tests.conftest import make_spec

RED = "a red circle resting on a night background"
DANCE = "a blue star dancing on a night background"


def live_timeline(tmp_path, **overrides) -> Timeline:
    spec = make_spec(tmp_path, prompt=RED, duration=30.0, segment_seconds=2, **overrides)
    spec = replace(spec, live=LivePrompts(spec.schedule, spec.workdir))
    return Timeline(spec, BeatTrack.without_audio(spec.schedule, spec.total_frames, spec.fps))


def same_plan(a, b) -> bool:
    return (a.prompts == b.prompts and a.frame_start == b.frame_start
            and np.array_equal(a.beat_energy, b.beat_energy)
            and np.array_equal(a.beat_phase, b.beat_phase)
            and [(c.t, c.prompt, c.beat_energy, c.beat_phase) for c in a.cues]
            == [(c.t, c.prompt, c.beat_energy, c.beat_phase) for c in b.cues])


def test_a_change_lands_after_what_stage1_has_made_and_replays_exactly(tmp_path):
    tl = live_timeline(tmp_path)
    before = [tl.segment(k) for k in range(3)]
    stage1_copy = pickle.loads(pickle.dumps(tl))  # as a Ray actor gets it
    assert not stage1_copy.spec.live.writer
    tl.spec.live.request(DANCE, wall=123.0)
    plan3 = tl.segment(3)
    # Stage 1 has been asked for segments 0-2: keyframes through 6 s plus its 2-keyframe
    # look-ahead, so the change starts at the next keyframe, 9 s.
    t_change = 2 * 3 + CONTEXT_KEYFRAMES + 1
    assert tl.schedule.starts == (0.0, t_change) and tl.schedule.texts == (RED, DANCE)
    assert plan3.cue_at(t_change).prompt == DANCE and plan3.cue_at(t_change - 1).prompt == RED
    # Plans made before are unchanged by it, and the copy plans the same keyframes.
    assert all(same_plan(tl.segment(k), before[k]) for k in range(3))
    assert stage1_copy.keyframe_plan(9, t_change).prompt == DANCE
    assert stage1_copy.keyframe_plan(8, t_change - 1).prompt == RED
    # Dancing without audio: the beat switches on from the change, everywhere.
    frame = round(t_change * tl.spec.fps)
    assert tl.beats.energy[:frame].max() == 0 and tl.beats.energy[frame:].max() > 0
    assert np.array_equal(stage1_copy.beats.energy, tl.beats.energy)
    assert tl.spec.live.changes[0]["video_time"] == t_change
    assert tl.spec.live.changes[0]["asked_wall"] == 123.0

    # A render of the record plans every segment exactly as the live run did.
    record = read_schedule(tl.spec.workdir / SCHEDULE_NAME)
    spec = replace(tl.spec, schedule=record, live=None)
    render = Timeline(spec, BeatTrack.without_audio(record, spec.total_frames, spec.fps))
    assert all(same_plan(render.segment(k), tl.segment(k)) for k in range(tl.num_segments))


def test_a_change_before_the_first_plan_replaces_the_prompt(tmp_path):
    tl = live_timeline(tmp_path)
    tl.spec.live.request(DANCE)
    tl.spec.live.request(RED)  # the last one asked before planning wins
    tl.segment(0)
    assert tl.schedule == PromptSchedule.single(RED)
    assert [c["superseded"] for c in tl.spec.live.changes] == [True, False]
