"""Which sinks a job writes to, as plain data that can travel to the stitcher actor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stitcher.audio_track import AudioInput
from stitcher.sinks import FragmentedMP4Sink, HLSSink, SharedEncoderSink, Sink


@dataclass(frozen=True)
class OutputConfig:
    fps: int
    width: int
    height: int
    mp4: Path | None = None
    hls: Path | None = None
    audio: AudioInput | None = None
    hls_segment_seconds: float = 2.0
    crf: int = 23
    preset: str = "veryfast"


def open_sinks(cfg: OutputConfig) -> list[Sink]:
    common = dict(fps=cfg.fps, width=cfg.width, height=cfg.height, audio=cfg.audio,
                  crf=cfg.crf, preset=cfg.preset)
    if cfg.mp4 is not None and cfg.hls is not None:
        # Both outputs: encode once (x264 is most of the stitcher's time), mux twice.
        return [SharedEncoderSink(str(cfg.mp4), str(cfg.hls), segment_seconds=cfg.hls_segment_seconds,
                                  **common)]
    sinks: list[Sink] = []
    if cfg.mp4 is not None:
        sinks.append(FragmentedMP4Sink(str(cfg.mp4), **common))
    if cfg.hls is not None:
        sinks.append(HLSSink(str(cfg.hls), segment_seconds=cfg.hls_segment_seconds, **common))
    return sinks
