"""Plan a job: segments, keyframe times, prompts and audio windows.

Segment k owns the video time [k*S, (k+1)*S] (keyframes at 1 per second, both ends
included, so neighbours share their boundary keyframe) and renders the frames of that
span plus a few overlap frames on each side, which the stitcher blends.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from engine.prompt import prompt_motion
from engine.schedule import PromptSchedule
from engine.spec import JobSpec

AUDIO_WINDOW = 40  # samples in a keyframe's audio window
AUDIO_WINDOW_RATE = 30  # samples per second of that window, whatever the video's fps
# Keyframes beyond each end of a segment that Stage 2 also gets: the overlap frames at a
# boundary are rendered by both neighbours, and with the same keyframes around them both
# renders agree, so the seam vanishes.
CONTEXT_KEYFRAMES = 2


def audio_window(energy: np.ndarray, t: float, fps: float) -> np.ndarray:
    """Per-frame beat energy from 1 s before t to 1/3 s after, on the fixed 30/s grid.

    `energy[i]` is the envelope at time i / fps; before the start it is 0 (silence).
    """
    grid = (t - 1.0 + np.arange(AUDIO_WINDOW) / AUDIO_WINDOW_RATE) * fps
    if len(energy) == 0:
        return np.zeros(AUDIO_WINDOW, np.float32)
    # Only the samples around t: the same points np.interp would pick from the whole
    # envelope (so the same values), at a cost that does not grow with the video (24 h live).
    lo = min(max(math.floor(grid[0]), 0), len(energy) - 1)
    hi = min(max(math.ceil(grid[-1]) + 1, lo + 1), len(energy))
    return np.interp(grid, np.arange(lo, hi), energy[lo:hi], left=0.0).astype(np.float32)


@dataclass(frozen=True)
class KeyframePlan:
    """One Stage 1 step: the keyframe at time t."""

    index: int  # position in the whole keyframe track
    t: float
    prompt: str
    beat_energy: float
    beat_phase: float
    seed: int
    size: tuple[int, int]  # (width, height) of keyframes
    store_in_memory: bool  # one keyframe every memory_interval seconds goes to LMDB
    audio_window: np.ndarray | None = None  # beat envelope around t on a 30/s grid
    reference: np.ndarray | None = None  # the user's image at keyframe size, if any
    shot: int = 0  # which shot (run of one prompt) of the schedule t is in: PromptSchedule.shot_at


@dataclass(frozen=True)
class KeyframeCue:
    """What the job says at one keyframe time: the prompt in force and the audio around it."""

    t: float
    prompt: str
    beat_energy: float
    beat_phase: float
    audio_window: np.ndarray  # [AUDIO_WINDOW] float32: the beat envelope from t - 1 s to t + 1/3 s


@dataclass(frozen=True)
class SegmentPlan:
    """One Stage 2 job: all frames of segment `index`, overlap included."""

    index: int
    t0: float
    t1: float
    keyframe_times: tuple[float, ...]
    frame_start: int  # first global frame index rendered (overlap included)
    frame_stop: int  # one past the last
    fps: int
    width: int
    height: int
    seed: int
    prompts: PromptSchedule  # the prompts in force during this segment
    beat_energy: np.ndarray  # [frame_stop - frame_start] float32, the audio window
    beat_phase: np.ndarray  # [frame_stop - frame_start] float64, running sum of energy
    # One per keyframe time Stage 2 may be given: CONTEXT_KEYFRAMES before, own, after.
    cues: tuple[KeyframeCue, ...] = ()

    @property
    def num_frames(self) -> int:
        return self.frame_stop - self.frame_start

    def cue_at(self, t: float) -> KeyframeCue:
        for cue in self.cues:
            if abs(cue.t - t) < 1e-6:
                return cue
        raise KeyError(f"segment {self.index} has no keyframe cue at t={t:g}")

    def frame_times(self) -> np.ndarray:
        return np.arange(self.frame_start, self.frame_stop) / self.fps


def beat_phase(energy: np.ndarray, fps: float) -> np.ndarray:
    """The beat's running integral: at each sample, the sum of the envelope before it, in
    envelope-seconds (float64)."""
    return np.concatenate([[0.0], np.cumsum(energy, dtype=np.float64)[:-1]]) / fps


@dataclass(frozen=True)
class BeatTrack:
    """The per-frame audio drive of the whole video and its running integral."""

    energy: np.ndarray  # [total_frames] float32 in [0, 1]
    phase: np.ndarray  # [total_frames] float64, seconds-weighted cumulative energy

    @classmethod
    def from_envelope(cls, energy: np.ndarray, fps: int) -> BeatTrack:
        energy = np.asarray(energy, dtype=np.float32)
        return cls(energy, beat_phase(energy, fps))

    @classmethod
    def metronome(cls, total_frames: int, fps: int, bpm: float = 120.0,
                  active: np.ndarray | None = None) -> BeatTrack:
        """A steady beat, silent outside `active` frames (a [total_frames] bool mask)."""
        t = np.arange(total_frames) / fps
        since_beat = t % (60.0 / bpm)
        energy = np.exp(-since_beat / 0.12).astype(np.float32)
        if active is not None:
            energy = np.where(active, energy, 0.0).astype(np.float32)
        return cls.from_envelope(energy, fps)

    @classmethod
    def without_audio(cls, schedule: PromptSchedule, total_frames: int, fps: int) -> BeatTrack:
        """The beat of a video with no audio: a metronome while a dancing prompt is in force,
        so 'dancing' still dances, and silence elsewhere. In the world only dancing follows
        the beat; an invented beat under other prompts is something a learned model could
        only get wrong (the tiny model's bouncing hopped on every metronome tick)."""
        dancing = [prompt_motion(text) == "dancing" for text in schedule.texts]
        t = np.arange(total_frames) / fps
        active = np.array(dancing)[np.searchsorted(schedule.starts, t, side="right") - 1]
        return cls.metronome(total_frames, fps, active=active)

    def at(self, frame: int) -> tuple[float, float]:
        i = min(max(frame, 0), len(self.energy) - 1)
        return float(self.energy[i]), float(self.phase[i])


def dancing_spans(schedule: PromptSchedule) -> tuple[tuple[float, float], ...]:
    """The times a dancing prompt is in force: all that BeatTrack.without_audio reads."""
    spans = []
    for i, text in enumerate(schedule.texts):
        if prompt_motion(text) == "dancing":
            end = schedule.starts[i + 1] if i + 1 < len(schedule.starts) else math.inf
            if spans and spans[-1][1] == schedule.starts[i]:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((schedule.starts[i], end))
    return tuple(spans)


@dataclass(frozen=True)
class Timeline:
    spec: JobSpec
    beats: BeatTrack

    @property
    def frames_per_segment(self) -> int:
        return self.spec.segment_seconds * self.spec.fps

    @property
    def num_segments(self) -> int:
        return math.ceil(self.spec.total_frames / self.frames_per_segment)

    @cached_property
    def track(self) -> tuple[float, ...]:
        """Every keyframe time of the video, in order (neighbours share their boundary one)."""
        times: list[float] = []
        for k in range(self.num_segments):
            times.extend(t for t in self.keyframe_times(k) if not times or t > times[-1])
        return tuple(times)

    def track_span(self, k: int) -> tuple[int, int]:
        """Positions in `track` of segment k's first and last own keyframe."""
        own = self.keyframe_times(k)
        first = bisect.bisect_left(self.track, own[0] - 1e-9)
        return first, first + len(own) - 1

    def keyframe_times(self, k: int) -> tuple[float, ...]:
        t0, t1 = self._span(k)
        times = [float(t) for t in range(math.ceil(t0), math.floor(t1) + 1)]
        if not times or times[-1] < t1:
            times.append(t1)
        return tuple(times)

    def all_keyframe_times(self) -> list[float]:
        return list(self.track)

    def cue(self, t: float) -> KeyframeCue:
        schedule = self.schedule  # first: a live change may update the beat
        energy, phase = self.beats.at(round(t * self.spec.fps))
        return KeyframeCue(t, schedule.text_at(t), energy, phase,
                           audio_window(self.beats.energy, t, self.spec.fps))

    def shared_tail(self, k: int) -> int:
        """Frames at the end of segment k that segment k+1 also renders (0 for the last)."""
        if k + 1 >= self.num_segments:
            return 0
        return self.frame_stop(k) - self.frame_start(k + 1)

    def keyframe_plan(self, index: int, t: float, reference: np.ndarray | None = None) -> KeyframePlan:
        spec = self.spec
        schedule = self.schedule  # first: a live change may update the beat
        energy, phase = self.beats.at(round(t * spec.fps))
        window = audio_window(self.beats.energy, t, spec.fps)
        interval = spec.memory_interval
        return KeyframePlan(
            index=index,
            t=t,
            prompt=schedule.text_at(t),
            beat_energy=energy,
            beat_phase=phase,
            seed=spec.seed,
            size=spec.keyframe_size,
            store_in_memory=abs(t / interval - round(t / interval)) < 1e-9,
            audio_window=window,
            reference=reference,
            shot=schedule.shot_at(t),
        )

    @property
    def schedule(self) -> PromptSchedule:
        """The prompts in force: the spec's, or a live job's as changed so far."""
        live = self.spec.live
        if live is None:
            return self.spec.schedule
        schedule, changed = live.current()
        if changed and self.spec.audio is None:
            # Without audio the beat follows the prompts (a metronome while 'dancing'), as in
            # a render of the record. Replaced, not written into: a Ray actor's copy holds
            # read-only arrays; every holder of this Timeline sees the new beat. Only when
            # where it dances changed: a day's beat takes some 0.5 s to make, and a change
            # waits for it.
            dancing = dancing_spans(schedule)
            if dancing != self.__dict__.get("_dancing", dancing_spans(self.spec.schedule)):
                object.__setattr__(self, "beats", BeatTrack.without_audio(
                    schedule, self.spec.total_frames, self.spec.fps))
            object.__setattr__(self, "_dancing", dancing)
        return schedule

    def _steer(self, k: int) -> None:
        """Apply the live prompt changes asked for so far, at the first keyframe Stage 1 has
        not made yet. Only the driver's planning (`segment`) does this: Stage 1 is asked for
        segment k only after its plan is made, so it has made keyframes through segment
        k - 1's context, and no plan made before covers that time (the render loop calls
        the executor's keyframes(k) after timeline.segment(k))."""
        live = self.spec.live
        if live is None or not live.has_pending():
            return
        done_through = max(k - 1, live.planned)  # Stage 1 may have been asked this far
        position = 0 if done_through < 0 else self.track_span(done_through)[1] + CONTEXT_KEYFRAMES + 1
        if position < len(self.track):
            live.apply_pending(self.track[position])
        self.schedule  # noqa: B018 - refresh the beat now, before this plan reads it

    def frame_start(self, k: int) -> int:
        """Segment k's first frame (the overlap before its own span included)."""
        return max(0, k * self.frames_per_segment - self.spec.overlap // 2)

    def frame_stop(self, k: int) -> int:
        """One past segment k's last frame (the overlap after its own span included)."""
        spec = self.spec
        if k == self.num_segments - 1:
            return spec.total_frames
        return min(spec.total_frames, (k + 1) * self.frames_per_segment + spec.overlap - spec.overlap // 2)

    def span(self, k: int) -> tuple[float, float]:
        """Segment k's own time [t0, t1] in seconds (no side effects: a live job's report)."""
        return self._span(k)

    def segment(self, k: int) -> SegmentPlan:
        spec = self.spec
        if spec.live is not None and spec.live.writer:
            self._steer(k)
            spec.live.planned = max(spec.live.planned, k)
        start, stop = self.frame_start(k), self.frame_stop(k)
        t0, t1 = self._span(k)
        first, last = self.track_span(k)
        around = self.track[max(first - CONTEXT_KEYFRAMES, 0):last + 1 + CONTEXT_KEYFRAMES]
        return SegmentPlan(
            index=k,
            t0=t0,
            t1=t1,
            keyframe_times=self.keyframe_times(k),
            frame_start=start,
            frame_stop=stop,
            fps=spec.fps,
            width=spec.width,
            height=spec.height,
            seed=spec.seed,
            prompts=self.schedule.window(start / spec.fps, stop / spec.fps),
            beat_energy=self.beats.energy[start:stop].copy(),
            beat_phase=self.beats.phase[start:stop].copy(),
            cues=tuple(self.cue(t) for t in around),
        )

    def _span(self, k: int) -> tuple[float, float]:
        s = self.spec.segment_seconds
        return float(k * s), min(float((k + 1) * s), self.spec.total_frames / self.spec.fps)
