"""The LMDB store survives its writer being killed at any moment.

A forked child process runs Stage 1 with the ledger, as a render's keyframe actor does, and is killed
with SIGKILL at random points. After every kill the store opens, its checks pass, ledger keys
are gap-free up to the last one committed, every ledger entry has the keyframes and the Stage 1
checkpoint it depends on, and a new stage continues from it to the same keyframes.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import numpy as np
import pytest

from engine.models.base import create_backend
from engine.stages import KeyframeStage
from memory.replay import ReplayMemory
from tests.conftest import make_spec, make_timeline

FORK = multiprocessing.get_context("fork")  # a child with every module loaded: killed at once

def _write(tmp_path, ready) -> None:
    """A forked child: Stage 1 plus the ledger, resuming after the last committed entry."""
    spec = make_spec(tmp_path, duration=600)
    timeline = make_timeline(spec)
    with ReplayMemory(tmp_path / "store") as store:
        k = max(store.finished_segments(), default=-1) + 1
        stage = KeyframeStage(timeline, create_backend("procedural"), store)
        ready.set()
        while k < timeline.num_segments:
            stage.run_segment(k)
            store.mark_segment_done(k, {"segment": k})
            k += 1


def _check(tmp_path) -> int:
    with ReplayMemory(tmp_path / "store", readonly=True) as store:
        done = store.finished_segments()
        assert sorted(done) == list(range(len(done))), "ledger keys have a gap"
        if done:  # written before the ledger entry: a restart always finds where to go on
            assert store.get_checkpoint(max(done) + 1) is not None
        times = store.keyframe_times()
        assert times == [5.0 * i for i in range(len(times))], "keyframe keys have a gap"
        if done:  # segment k's keyframes reach (k + 1) * 5 s
            assert times[-1] >= 5.0 * (max(done) + 1)
        return len(done)


@pytest.mark.subprocess
def test_a_writer_killed_100_times_leaves_a_whole_store(tmp_path):
    rng = random.Random(0)
    committed = 0
    for _ in range(100):
        ready = FORK.Event()
        proc = FORK.Process(target=_write, args=(tmp_path, ready))
        proc.start()
        assert ready.wait(30)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        now = _check(tmp_path)
        assert now >= committed  # nothing committed is ever lost
        committed = now
    assert committed > 0

    # A stage that starts from this store makes the keyframes an uninterrupted one makes.
    spec = make_spec(tmp_path, duration=600)
    timeline = make_timeline(spec)
    with ReplayMemory(tmp_path / "fresh") as fresh, ReplayMemory(tmp_path / "store") as store:
        straight = KeyframeStage(timeline, create_backend("procedural"), fresh)
        expected = [straight.run_segment(k) for k in range(committed + 1)]
        resumed = KeyframeStage(timeline, create_backend("procedural"), store).run_segment(committed)
        assert all(np.array_equal(a.image, b.image) and a.t == b.t
                   for a, b in zip(resumed.around(), expected[-1].around(), strict=True))
