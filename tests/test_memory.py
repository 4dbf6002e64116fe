import multiprocessing as mp

import numpy as np
import pytest

from engine.models.base import create_backend
from engine.schedule import PromptSchedule
from engine.stages import KeyframeStage
from memory.replay import ReplayMemory
from tests.conftest import make_spec, make_timeline


def test_keyframes_round_trip_losslessly(tmp_path, rng):
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with ReplayMemory(tmp_path) as store:
        store.put_keyframe(5.0, image, {"prompt": "a red circle", "seed": 1, "model": "m"})
        store.put_keyframe(0.0, image[::-1].copy(), {"prompt": "p0"})
        entry = store.get_keyframe(5.0)
        assert entry is not None and np.array_equal(entry.image, image)
        assert entry.meta["prompt"] == "a red circle" and entry.meta["t"] == 5.0
        assert store.keyframe_times() == [0.0, 5.0]
        assert store.nearest_at_or_before(7.5).t == 5.0
        assert store.get_keyframe(1.0) is None


def _read_times(path, queue):
    with ReplayMemory(path, readonly=True) as store:
        queue.put(store.keyframe_times())


@pytest.mark.subprocess
def test_reader_in_another_process_sees_committed_keyframes(tmp_path):
    with ReplayMemory(tmp_path) as store:
        for t in (0.0, 5.0, 10.0):
            store.put_keyframe(t, np.zeros((8, 8, 3), np.uint8), {})
        queue = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(target=_read_times, args=(tmp_path, queue))
        proc.start()
        proc.join(30)
        assert queue.get(timeout=5) == [0.0, 5.0, 10.0]


def test_ledger_and_job_survive_reopening(tmp_path):
    with ReplayMemory(tmp_path) as store:
        store.put_job({"seed": 4})
        store.mark_segment_done(0, {"frame_start": 0})
        store.mark_segment_done(2, {"frame_start": 96})
    with ReplayMemory(tmp_path, readonly=True) as store:
        assert store.job() == {"seed": 4}
        assert sorted(store.finished_segments()) == [0, 2]


def test_readonly_open_of_missing_store_fails(tmp_path):
    with pytest.raises(FileNotFoundError):
        ReplayMemory(tmp_path / "nope", readonly=True)


def test_keyframe_stage_writes_one_entry_every_five_seconds(tmp_path):
    spec = make_spec(tmp_path, duration=17)
    timeline = make_timeline(spec)
    with ReplayMemory(tmp_path) as store:
        stage = KeyframeStage(timeline, create_backend("procedural"), store)
        results = [stage.run_segment(k) for k in range(timeline.num_segments)]
        assert store.keyframe_times() == [0.0, 5.0, 10.0, 15.0]
        assert [kf.t for kf in results[1].keyframes] == [5, 6, 7, 8, 9, 10]
        # The boundary keyframe is shared, not generated twice.
        assert results[0].keyframes[-1] is results[1].keyframes[0]
        view = results[-1].memory
        assert view.anchor.t == 0.0 and [k.t for k in view.entries] == [0, 5, 10, 15]
        stored = store.get_keyframe(10.0)
        assert np.array_equal(stored.image, results[1].keyframes[-1].image)
        assert stored.meta["model"] == "procedural" and "circle" in stored.meta["prompt"]


def test_a_returning_prompt_finds_its_first_remembered_keyframe(tmp_path):
    a, b = "a red circle orbiting", "a blue square resting"
    spec = make_spec(tmp_path, duration=60, schedule=PromptSchedule((0.0, 10.0, 40.0), (a, b, a)))
    timeline = make_timeline(spec)
    with ReplayMemory(tmp_path) as store:
        stage = KeyframeStage(timeline, create_backend("procedural"), store)
        for k in range(timeline.num_segments):
            stage.run_segment(k)
        # Read back from the LMDB file itself: one entry every five seconds, prompts as made.
        prompts = {m["t"]: m["prompt"] for m in store.metadata()}
        assert sorted(prompts) == [5.0 * i for i in range(13)] and prompts[10.0] == b
        view = stage.memory_view(b)
        # The video's anchor, b's own first entry and the three latest (bounded, whatever the length).
        assert [k.t for k in view.entries] == [0.0, 10.0, 50.0, 55.0, 60.0]
        assert [k.prompt for k in view.entries][:2] == [a, b]
        assert [k.t for k in stage.memory_view(a).entries] == [0.0, 50.0, 55.0, 60.0]
        blind = KeyframeStage(timeline, create_backend("procedural"), store, use_memory=False)
        assert blind.memory_view(a).entries == ()


def _same_keys(a, b) -> bool:
    pairs = list(zip(a.around(), b.around(), strict=True)) + \
        list(zip(a.memory.entries, b.memory.entries, strict=True))
    return all(x.t == y.t and x.prompt == y.prompt and np.array_equal(x.image, y.image)
               and x.state.to_bytes() == y.state.to_bytes() for x, y in pairs)


@pytest.mark.parametrize("model", ["procedural", "tiny"])
def test_stage1_continues_from_the_store_after_a_restart(tmp_path, model):
    """A new stage on the same LMDB file (a restarted actor, a resumed render) asked for any
    recent segment makes exactly the keyframes and memory view the first one made."""
    a, b = "a red circle orbiting on a night background", "a blue square resting on a meadow background"
    spec = make_spec(tmp_path, duration=42, model=model,
                     schedule=PromptSchedule((0.0, 12.0, 30.0), (a, b, a)))
    timeline = make_timeline(spec)
    with ReplayMemory(tmp_path / "store") as store:
        first = KeyframeStage(timeline, create_backend(model), store)
        made = [first.run_segment(k) for k in range(timeline.num_segments)]
    with ReplayMemory(tmp_path / "store") as store:
        restarted = KeyframeStage(timeline, create_backend(model), store)
        for k in (5, 6, 0, 1, 3, 4, 8):  # a resume, a restart from the start, a jump ahead
            assert _same_keys(restarted.run_segment(k), made[k]), k
    # A store that holds states only up to segment 3 (a stage killed there), asked for 7 first
    # (retries out of order): it goes on from 3 and makes 7 as the first stage did.
    with ReplayMemory(tmp_path / "early") as store:
        early = KeyframeStage(timeline, create_backend(model), store)
        for k in range(3):
            early.run_segment(k)
        late = KeyframeStage(timeline, create_backend(model), store)
        assert _same_keys(late.run_segment(7), made[7]) and _same_keys(late.run_segment(4), made[4])
