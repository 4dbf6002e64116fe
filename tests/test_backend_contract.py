"""The backend contract, checked against every registered backend (diffusers' pipeline-tester
style): each backend builds small random components in code (`Backend.test_config`), so no
shipped or downloaded weights are needed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.errors import InputError
from engine.models.base import (
    Backend,
    BackendConfig,
    Capabilities,
    KeyframeState,
    available_backends,
    backend_class,
    create_backend,
)
from engine.stages import KeyframeStage, SegmentKeyframes, SegmentStage
from memory.replay import ReplayMemory
from tests.conftest import make_spec, make_timeline

BACKEND_NAMES = sorted(available_backends())
# A dancing prompt: the beat (a metronome here) reaches both stages through the plan's cues.
PROMPT = "a pink star dancing on a night background"


@dataclasses.dataclass
class Rendered:
    keys: list[SegmentKeyframes]
    frames: list[np.ndarray]
    timeline: object


def render_all(backend: Backend, folder, seed: int = 3) -> Rendered:
    spec = make_spec(folder, prompt=PROMPT, duration=12.0, fps=10, width=64, height=48,
                     overlap=4, seed=seed, model=backend.name)
    timeline = make_timeline(spec)
    with ReplayMemory(folder / f"memory-{seed}") as memory:
        keyframes = KeyframeStage(timeline, backend, memory)
        segments = SegmentStage(backend)
        keys = [keyframes.run_segment(k) for k in range(timeline.num_segments)]
        frames = [segments.render(timeline.segment(k), keys[k]).frames for k in range(len(keys))]
    return Rendered(keys, frames, timeline)


@pytest.fixture(scope="module", params=BACKEND_NAMES)
def backend_config(request, tmp_path_factory) -> tuple[type[Backend], BackendConfig]:
    cls = backend_class(request.param)
    return cls, cls.test_config(tmp_path_factory.mktemp(f"components-{request.param}"))


@pytest.fixture(scope="module")
def rendered(backend_config, tmp_path_factory) -> Rendered:
    cls, config = backend_config
    return render_all(cls(config), tmp_path_factory.mktemp("render"))


def test_backend_declares_capabilities_state_and_name(backend_config):
    cls, _ = backend_config
    assert cls.name in available_backends()
    assert isinstance(cls.capabilities, Capabilities)
    assert issubclass(cls.state_type, KeyframeState) and dataclasses.is_dataclass(cls.state_type)
    assert cls.state_type.__dataclass_params__.frozen


def test_keyframes_have_the_plan_size_and_the_declared_state(backend_config, rendered):
    cls, _ = backend_config
    timeline = rendered.timeline
    width, height = timeline.spec.keyframe_size
    seen = [kf for keys in rendered.keys for kf in keys.keyframes]
    assert [kf.t for kf in seen] == sorted(kf.t for kf in seen)
    assert sorted({kf.t for kf in seen}) == list(timeline.track)
    for kf in seen:
        assert kf.image.shape == (height, width, 3) and kf.image.dtype == np.uint8
        assert isinstance(kf.state, cls.state_type)
        assert kf.prompt == PROMPT


def test_state_survives_serialisation(rendered):
    state = rendered.keys[0].keyframes[-1].state
    back = type(state).from_bytes(state.to_bytes())
    for field in dataclasses.fields(state):
        a, b = getattr(state, field.name), getattr(back, field.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        else:
            assert a == b


def test_segments_have_the_plan_shape(rendered):
    timeline = rendered.timeline
    spec = timeline.spec
    for k, frames in enumerate(rendered.frames):
        plan = timeline.segment(k)
        assert frames.shape == (plan.num_frames, spec.height, spec.width, 3)
        assert frames.dtype == np.uint8
        assert frames.std() > 1.0  # a picture, not a blank


def test_neighbours_render_identical_overlap_frames(rendered):
    """The seam argument: both sides of a boundary render its overlap from the same keyframes."""
    timeline = rendered.timeline
    for k in range(timeline.num_segments - 1):
        tail = timeline.shared_tail(k)
        assert tail == timeline.spec.overlap
        assert np.array_equal(rendered.frames[k][-tail:], rendered.frames[k + 1][:tail]), \
            f"segments {k} and {k + 1} disagree in their overlap"


def test_same_seed_same_frames_other_seed_other_video(backend_config, rendered, tmp_path):
    cls, config = backend_config
    again = render_all(cls(config), tmp_path / "again")
    for a, b in zip(rendered.frames, again.frames, strict=True):
        assert np.array_equal(a, b)
    other = render_all(cls(config), tmp_path / "other", seed=4)
    assert not np.array_equal(rendered.frames[0], other.frames[0])


def test_segments_render_in_any_order_on_a_fresh_worker(backend_config, rendered):
    cls, config = backend_config
    worker = SegmentStage(cls(config))
    timeline = rendered.timeline
    for k in reversed(range(timeline.num_segments)):
        frames = worker.render(timeline.segment(k), rendered.keys[k]).frames
        assert np.array_equal(frames, rendered.frames[k])


def test_keyframes_of_another_backend_are_refused(backend_config, rendered, tmp_path):
    cls, config = backend_config
    others = [n for n in BACKEND_NAMES if backend_class(n).state_type is not cls.state_type]
    if not others:
        pytest.skip("no backend with another state type is registered")
    other_cls = backend_class(others[0])
    other = other_cls(other_cls.test_config(tmp_path))
    timeline = rendered.timeline
    with ReplayMemory(tmp_path / "other") as memory:
        foreign = KeyframeStage(timeline, other, memory).run_segment(0)
    with pytest.raises(ValueError, match="another backend"):
        SegmentStage(cls(config)).render(timeline.segment(0), foreign)


def test_missing_weights_are_an_input_error(backend_config, tmp_path):
    cls, _ = backend_config
    if not cls.capabilities.needs_weights:
        pytest.skip(f"{cls.name} needs no weights")
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(InputError, match="nope.safetensors"):
        create_backend(cls.name, BackendConfig(weights=missing))
