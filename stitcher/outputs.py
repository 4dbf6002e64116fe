"""Which sinks a job writes to, as plain data that can travel to the stitcher actor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stitcher import resume
from stitcher.audio_track import AudioInput
from stitcher.chunks import EncodeSettings
from stitcher.playlist import LiveHLS
from stitcher.resume import resume_backup
from stitcher.sinks import FragmentedMP4Sink, HLSSink, SharedEncoderSink, Sink

MP4_GOP_SECONDS = 1.0  # an MP4 written alone: one fragment a second
HLS_PLAYLIST = "stream.m3u8"  # the HLS sink's default playlist name


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
    hls_live: LiveHLS | None = None  # lvp stream: paced, sliding-window HLS

    @property
    def gop_frames(self) -> int:
        """Frames per GOP: an IDR starts every HLS segment and MP4 fragment."""
        seconds = self.hls_segment_seconds if self.hls is not None else MP4_GOP_SECONDS
        return max(1, round(seconds * self.fps))

    @property
    def encoding(self) -> EncodeSettings:
        """What every encoder of this video uses, in the stitcher and in the segment workers."""
        return EncodeSettings(self.fps, self.width, self.height, self.crf, self.preset,
                              self.gop_frames)


def committed_frames(cfg: OutputConfig, whole_gops: bool = True) -> int:
    """Frames every output holds whole after an interrupted run: where a resume continues,
    rounded down to a whole GOP unless `whole_gops` is False (a finished video's last GOP
    may be short)."""
    held = []
    if cfg.mp4 is not None:
        backup = resume_backup(cfg.mp4)
        held.append(resume.committed_frames(backup if backup.exists() else cfg.mp4))
    if cfg.hls is not None and cfg.hls_live is None:
        segments = resume.hls_committed_segments(cfg.hls, HLS_PLAYLIST, cfg.fps, cfg.gop_frames)
        held.append(len(segments) * cfg.gop_frames)
    elif cfg.hls is not None:
        held.append(0)  # a live stream starts afresh
    frames = min(held, default=0)
    return frames - frames % cfg.gop_frames if whole_gops else frames


def open_sinks(cfg: OutputConfig, continue_at: int = 0) -> list[Sink]:
    """The job's sinks; `continue_at` > 0 keeps that many frames of an interrupted run."""
    common = dict(fps=cfg.fps, width=cfg.width, height=cfg.height, audio=cfg.audio,
                  crf=cfg.crf, preset=cfg.preset)
    if cfg.mp4 is not None and cfg.hls is not None:
        # Both outputs: encode once (x264 is most of the stitcher's time), mux twice.
        return [SharedEncoderSink(cfg.mp4, cfg.hls, segment_seconds=cfg.hls_segment_seconds,
                                  continue_at=continue_at, **common)]
    sinks: list[Sink] = []
    if cfg.mp4 is not None:
        sinks.append(FragmentedMP4Sink(cfg.mp4, gop_seconds=MP4_GOP_SECONDS,
                                       continue_at=continue_at, **common))
    if cfg.hls is not None:
        sinks.append(HLSSink(cfg.hls, segment_seconds=cfg.hls_segment_seconds,
                             live=cfg.hls_live, continue_at=continue_at, **common))
    return sinks
