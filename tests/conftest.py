from __future__ import annotations

import av
import numpy as np
import pytest

from engine.schedule import PromptSchedule
from engine.spec import JobSpec
from engine.timeline import BeatTrack, Timeline


def make_spec(tmp_path, prompt: str = "a red circle bouncing on a night background",
              **overrides) -> JobSpec:
    fields = dict(schedule=PromptSchedule.single(prompt), duration=12.0, fps=10, width=64,
                  height=64, seed=3, segment_seconds=5, overlap=4, workers=2,
                  out=tmp_path / "out.mp4", workdir=tmp_path / "work", model="procedural")
    fields.update(overrides)
    return JobSpec(**fields)


def make_timeline(spec: JobSpec) -> Timeline:
    return Timeline(spec, BeatTrack.metronome(spec.total_frames, spec.fps))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def write_mono_wav(path, samples: np.ndarray, rate: int):
    """Float samples in [-1, 1] to a 16-bit mono WAV file, through PyAV."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path
