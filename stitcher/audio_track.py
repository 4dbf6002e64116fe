"""Streaming audio source for the sinks: decode, resample, and loop or pad to the video length."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from engine.audio_input import open_audio

log = logging.getLogger(__name__)

AUDIO_MODES = ("loop", "pad")
FRAME_SAMPLES = 1024  # AAC frame size: every frame but the very last must have exactly this many


@dataclass(frozen=True)
class AudioInput:
    path: str
    mode: str  # "loop": restart the file when it ends; "pad": silence after it ends

    def __post_init__(self) -> None:
        if self.mode not in AUDIO_MODES:
            raise ValueError(f"audio mode must be one of {AUDIO_MODES}, got {self.mode!r}")


class AudioTrack:
    """Audio of an `AudioInput`, delivered as the video advances.

    Decodes lazily, one packet at a time, so memory does not depend on the file's length.
    Frames are planar float ("fltp") of FRAME_SAMPLES samples, with pts counted in samples
    (time_base 1/sample_rate) starting at 0 and without gaps.
    """

    def __init__(self, audio: AudioInput, sample_rate: int = 48000, layout: str = "stereo"):
        self.audio = audio
        self.sample_rate = sample_rate
        self.layout = layout
        self.time_base = Fraction(1, sample_rate)
        self.channels = av.AudioLayout(layout).nb_channels
        self._emitted = 0  # samples handed out so far == pts of the next frame
        self._source_ended = False  # no more samples will come: silence from now on
        self._pass_samples = 0  # samples decoded in the current pass over the file
        self._buffer = np.zeros((self.channels, 0), dtype=np.float32)
        self._chunks = self._decode_once()
        # Fail now, not minutes into a render, when the file holds no decodable audio.
        if not self._fill(1):
            raise ValueError(f"{audio.path!r} contains no decodable audio")

    def frames_until(self, t_seconds: float, *, final: bool = False) -> list[av.AudioFrame]:
        """Next frames, covering audio time up to `t_seconds` (monotonic across calls).

        Only whole frames are returned, so the audio may stop short of `t_seconds` by less
        than one frame. With `final=True` the last frame is shortened instead so the audio
        ends exactly at `t_seconds`; an encoder accepts one such short frame, at the end.
        """
        target = round(t_seconds * self.sample_rate)
        frames = []
        while target - self._emitted >= FRAME_SAMPLES:
            frames.append(self._take(FRAME_SAMPLES))
        if final and target > self._emitted:
            frames.append(self._take(target - self._emitted))
        return frames

    def close(self) -> None:
        """Release the input file; idempotent."""
        self._chunks.close()
        self._source_ended = True

    def _take(self, n: int) -> av.AudioFrame:
        if not self._fill(n):
            # The source has ended (pad mode): silence for whatever is missing.
            pad = np.zeros((self.channels, n - self._buffer.shape[1]), dtype=np.float32)
            self._buffer = np.concatenate([self._buffer, pad], axis=1)
        data, self._buffer = self._buffer[:, :n], self._buffer[:, n:]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), "fltp", self.layout)
        frame.sample_rate = self.sample_rate
        frame.time_base = self.time_base
        frame.pts = self._emitted
        self._emitted += n
        return frame

    def _fill(self, n: int) -> bool:
        """Buffer at least `n` samples; False if the source ended first."""
        pending = [self._buffer]
        have = self._buffer.shape[1]
        while have < n and not self._source_ended:
            chunk = next(self._chunks, None)
            if chunk is not None:
                pending.append(chunk)
                have += chunk.shape[1]
                self._pass_samples += chunk.shape[1]
            elif self.audio.mode == "loop" and self._pass_samples > 0:
                # Reopen rather than seek to 0: seeking is unreliable in some formats.
                self._chunks = self._decode_once()
                self._pass_samples = 0
            else:
                # Pad mode, or a pass that yielded nothing (looping it would spin forever).
                self._source_ended = True
        self._buffer = np.concatenate(pending, axis=1) if len(pending) > 1 else self._buffer
        return have >= n

    def _decode_once(self) -> Iterator[np.ndarray]:
        """Samples of one pass over the file, as [channels, n] float32 chunks."""
        _, container, stream = open_audio(self.audio.path)
        resampler = av.AudioResampler(
            format="fltp", layout=self.layout, rate=self.sample_rate, frame_size=FRAME_SAMPLES
        )
        with container:
            try:
                for frame in container.decode(stream):
                    for out in resampler.resample(frame):
                        yield out.to_ndarray()
            except av.FFmpegError as e:
                # A damaged tail should not kill an hour-long render: treat it as the end.
                log.warning("audio %s: decoding stopped early: %s", self.audio.path, e)
            for out in resampler.resample(None):
                yield out.to_ndarray()
