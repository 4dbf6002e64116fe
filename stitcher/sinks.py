"""Output sinks: encode RGB frames (and optional audio) to fragmented MP4 or live HLS with PyAV."""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Protocol, Self

import av
import numpy as np

from stitcher.audio_track import AudioInput, AudioTrack
from stitcher.encoder import EncodedVideo, GopEncoder
from stitcher.playlist import LiveHLS, LivePublisher, MediaPlaylist, temp_path_for, write_atomic
from stitcher.resume import (
    committed_packets,
    hls_committed_segments,
    remove_stale_temp_files,
    resume_backup,
)

AUDIO_RATE = 48000
AUDIO_LAYOUT = "stereo"
AUDIO_BIT_RATE = 128_000
# MPEG-TS segments get this constant added to every timestamp. Each segment is its own muxer,
# and libavformat shifts a muxer's timestamps when its first ones are negative (AAC priming,
# B-frame dts), which would make segment 0 jump relative to segment 1.
_TS_OFFSET_SECONDS = 1


class Sink(Protocol):
    def write(self, frames: np.ndarray) -> None:
        """frames: [T, H, W, 3] uint8 RGB, T >= 1, continuing the video."""

    def close(self) -> None:
        """Finalize the output; idempotent."""


def _check_geometry(fps: int, width: int, height: int) -> None:
    if not (isinstance(fps, numbers.Integral) and fps > 0):
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    # yuv420p halves both dimensions for chroma; x264 rejects odd sizes.
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even, got {width}x{height}")


def _check_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    shape = getattr(frames, "shape", None)
    if (
        not isinstance(frames, np.ndarray)
        or frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[0] < 1
        or frames.shape[1:] != (height, width, 3)
    ):
        raise ValueError(
            f"expected uint8 frames of shape [T>=1, {height}, {width}, 3], got "
            f"{getattr(frames, 'dtype', type(frames).__name__)} {shape}"
        )
    return np.ascontiguousarray(frames)


# The last frames of a GOP are coded this many quantiser steps finer than the crf (below).
CATCH_UP_FRAMES = 2
CATCH_UP_QP_BELOW_CRF = 21
# ipratio=10 puts I frames 6 * log2(10) ~ 20 quantiser steps under the P frames: x264's cap.
IP_QP_OFFSET = 20


def _x264_options(crf: int, preset: str, keyint: int, gop_frames: int | None = None,
                  i_frame_at_q0: bool = True, no_deadzones: bool = True,
                  catch_up_qp_below: int = CATCH_UP_QP_BELOW_CRF) -> dict[str, str]:
    """x264 settings for every sink; `gop_frames`: how many frames this encoder gets before
    the next IDR (a fresh encoder), when known. An IDR frame re-encodes the whole picture, and whatever
    the P frames before it left out (slow change, their coarser coding noise) shows as one
    jump once a GOP; measured as the IDR step ratio (1.0: no jump) on decoded calm clips with
    `python -m bench.temporal` (bench/RESULTS.md, "Temporal stability").

    - keyint, scenecut=0: a fixed GOP without scene cuts, so IDR frames (and with them MP4
      fragments and HLS segments) fall at exact multiples of `keyint`, whatever the content.
    - mbtree=0: with mb-tree on, x264 (the one PyAV ships) encodes the same frames differently
      in the first encodes of a process (faster, veryfast and medium presets; seen with one
      thread too), so a resumed or retried GOP would not match. Without it every encode of
      the same frames is the same bytes.
    - ipratio=10 (x264: 1.4): I frames about 20 quantiser steps finer than the crf's P
      frames, so near the source. Every GOP has its own encoder, so each starts from an I
      frame; a fine one leaves the P frames little coding noise to hold that the next IDR
      would replace. Procedural calm clips, IDR step ratio of the resting one (moving ones):
      default 7.3 -> 3.1 (1.2-1.7 -> 1.0-1.04), draft 7.3 -> 4.3, live 9.5 -> 2.4, hq 6.0 ->
      1.7; tiny 1.9-6.5 from 2.3-6.6. Bits, not speed: files up to 45% larger on procedural
      clips, 2.4x on tiny's grain; encode CPU 0.87x the previous settings (paired, default).
    - Catch-up before the IDR: a resting subject's edges change by a fraction of a level per
      frame; P frames at the crf's quantiser skip that, and the IDR caught it all up at
      once. The last CATCH_UP_FRAMES frames of a GOP get a fixed quantiser
      CATCH_UP_QP_BELOW_CRF steps under the crf (q2 at the default crf 23; q4 in the figures
      here): they catch the change up a little ahead, so the IDR finds little left. With
      aq-mode=0 (adaptive quantisation coarsened the subject's edges, where the change is).
      Default preset, procedural calm clips, IDR step ratio (the worst step at any position
      of the GOP over the median step, the same here: the jump is not moved to the frames
      before): resting 3.06 -> 1.33, spinning / pulsing /
      orbiting 1.00-1.12 -> 1.03-1.06; tiny resting 2.46 -> 1.55, pulsing 2.53 -> 1.62.
      Bits: +10% to +30% (more where the picture moves); encode speed unchanged.
    - chroma-qp-offset=-6, 8x8dct=0: even at a fine quantiser an I frame re-codes a
      textured subject with its own noise, which the P frames before it did not have; finer
      chroma and 4x4 transforms bring the two nearer. IDR step ratio (default preset,
      resting): tiny 2.92 -> 2.29, procedural 1.35 -> 1.15; draft 4.94 / 3.48 -> 3.28 / 2.64.
      Bits +6% to +21%.
    - The I frame at q0, x264's finest quantiser (`i_frame_at_q0`): where ipratio's 20 steps
      leave it coarser (crf above 20: q3 at the default crf 23, q8 at draft's 28), the encode
      runs at a crf that many steps lower and a zone gives the P frames back their bitrate
      (b=2^(-steps/6): with the deadzones unchanged, their packets kept their size within 2%),
      so only the I frame and the catch-up change; the catch-up at q2 rather than q4 (it lands
      on the source, and the I frame's own noise is then the whole jump). deadzone-intra=0,
      deadzone-inter=0 (`no_deadzones`): without trellis x264 rounds small coefficients to zero,
      so the I frame re-codes the textured subject coarser than its quantiser and the catch-up
      leaves part of the drift. IDR step ratio, resting, tiny / procedural (bench/RESULTS.md,
      "The I frame at q0"): default 2.32 -> 1.68 / 1.15 -> 0.91, live 2.47 -> 1.58 / 1.10 ->
      0.85, draft 3.64 -> 1.59 / 2.64 -> 1.42; other calm prompts 0.81-1.03. Bits: +15% to +24%
      (default, live), +23% to +40% (draft); encode CPU unchanged.
    Not used, measured: ipratio=3 (resting 7.0), qcomp 0-0.2 (no gain once every GOP has its
    own encoder), no-fast-pskip/no-dct-decimate, deblock, psy-rd, trellis, a catch-up of
    three frames or at q1;
    periodic intra refresh (HLS segments must start with an IDR); a longer or gradual
    catch-up (moving clips then jump where it starts), a single catch-up frame (the jump
    moves onto it); a zone on the I frame itself (x264 does not apply it there).
    """
    params = f"keyint={keyint}:scenecut=0:mbtree=0:ipratio=10:aq-mode=0:chroma-qp-offset=-6:8x8dct=0"
    finer = 0  # steps the crf is lowered by, for the I frame; a zone gives the P frames back
    zones = []
    if gop_frames is not None and gop_frames > CATCH_UP_FRAMES:
        if i_frame_at_q0 and gop_frames > CATCH_UP_FRAMES + 1:
            finer = max(0, crf - IP_QP_OFFSET)
        if finer:
            zones.append(f"1,{gop_frames - CATCH_UP_FRAMES - 1},b={2 ** (-finer / 6):.4f}")
        qp = max(1, crf - catch_up_qp_below)
        zones.append(f"{gop_frames - CATCH_UP_FRAMES},{gop_frames - 1},q={qp}")
    if no_deadzones:
        params += ":deadzone-intra=0:deadzone-inter=0"
    if zones:
        params += ":zones=" + "/".join(zones)
    return {"preset": preset, "crf": str(crf - finer), "x264-params": params}


def _rgb_frame(rgb: np.ndarray, pts: int, time_base: Fraction) -> av.VideoFrame:
    """An RGB picture as the encoder's yuv420p frame, converted here on one thread: left to
    the encoder, swscale splits the picture over threads and rounds differently depending on
    how the split falls, so the same frames encoded twice differed on a busy machine."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", threads=1)
    frame.pts = pts
    frame.time_base = time_base
    return frame


@dataclass
class _Handed:
    index: int  # packets handed out before this one
    t_seconds: float  # the video time it was handed out for
    packet: av.Packet


class _AudioFeed:
    """AudioTrack -> AAC encoder, advanced to a given video time.

    With `keep`, the packets handed out are kept until `forget_before` (a live stream taking
    back unlisted video): the audio does not change with the video, so `rewind_to` hands the
    same packets out again, at the same video times, and the segments come out the same."""

    def __init__(self, track: AudioTrack, encoder: av.AudioCodecContext, keep: bool = False) -> None:
        self.track = track
        self.encoder = encoder
        self.keep = keep
        self.handed = 0
        self.kept: deque[_Handed] = deque()
        self.replay: deque[_Handed] = deque()

    def packets_until(self, t_seconds: float, final: bool = False) -> list[av.Packet]:
        """Encoded audio up to `t_seconds`; `final` ends the audio exactly there and drains."""
        packets = []
        while self.replay and (final or self.replay[0].t_seconds <= t_seconds):
            again = self.replay.popleft()
            packets.append(self._hand(again.packet, again.t_seconds))
        if self.replay:
            return packets
        fresh = []
        for frame in self.track.frames_until(t_seconds, final=final):
            fresh.extend(self.encoder.encode(frame))
        if final:
            fresh.extend(self.encoder.encode(None))
        return packets + [self._hand(p, t_seconds) for p in fresh]

    def _hand(self, packet: av.Packet, t_seconds: float) -> av.Packet:
        if self.keep:
            self.kept.append(_Handed(self.handed, t_seconds, packet))
        self.handed += 1
        return packet

    def rewind_to(self, index: int) -> None:
        """Hand out packets `index`, ... again (kept since forget_before)."""
        again = [h for h in self.kept if h.index >= index]
        if len(again) != self.handed - index:
            raise ValueError(f"audio packet {index} is no longer kept")
        self.replay.extendleft(reversed(again))
        for _ in again:
            self.kept.pop()
        self.handed = index

    def forget_before(self, index: int) -> None:
        while self.kept and self.kept[0].index < index:
            self.kept.popleft()


def _open_track(audio: AudioInput | None) -> AudioTrack | None:
    return None if audio is None else AudioTrack(audio, AUDIO_RATE, AUDIO_LAYOUT)


def _configure_aac(ctx: av.AudioCodecContext) -> None:
    ctx.sample_rate = AUDIO_RATE
    ctx.layout = AUDIO_LAYOUT
    ctx.format = "fltp"
    ctx.bit_rate = AUDIO_BIT_RATE
    ctx.time_base = Fraction(1, AUDIO_RATE)


def _standalone_x264(fps: int, width: int, height: int, crf: int, preset: str, keyint: int,
                     threads: int) -> GopEncoder:
    """x264 opened outside any container, one independent encoder per GOP (stitcher.encoder:
    a resumed render encodes the same GOPs). No global header, so SPS/PPS go in-band before
    every IDR: MPEG-TS needs that; the MP4 muxer builds its avcC box from the first packet."""
    return GopEncoder(partial(_x264_context, fps, width, height, crf, preset, keyint, threads),
                      keyint)


def _x264_context(fps: int, width: int, height: int, crf: int, preset: str, keyint: int,
                  threads: int, gop_frames: int | None = None) -> av.VideoCodecContext:
    """An encoder for one GOP of `gop_frames` frames (None: unknown)."""
    video = av.CodecContext.create("libx264", "w")
    video.width = width
    video.height = height
    video.pix_fmt = "yuv420p"
    video.time_base = Fraction(1, fps)
    video.framerate = Fraction(fps)
    video.thread_count = threads  # fixed, never "auto": output must not depend on the machine
    video.options = _x264_options(crf, preset, keyint, gop_frames)
    return video


def _copy_packet(packet: av.Packet) -> av.Packet:
    """An independent packet with the same payload and timing (muxers rewrite what they get)."""
    twin = av.Packet(bytes(packet))
    twin.pts, twin.dts, twin.time_base = packet.pts, packet.dts, packet.time_base
    twin.duration = packet.duration
    twin.is_keyframe = packet.is_keyframe
    return twin


class _SinkBase:
    """Frame validation and encoding shared by the sinks; subclasses decide where packets go.

    A sink made with `shared_video=True` owns no video encoder: a SharedEncoderSink encodes
    once and hands every sink its own copy of the packets.
    """

    _video: av.VideoStream | av.VideoCodecContext | None
    _audio: _AudioFeed | None = None
    _packets_out: int = 0  # video packets muxed: the muxed video reaches this / fps

    def __init__(self, fps: int, width: int, height: int) -> None:
        _check_geometry(fps, width, height)
        self.fps = int(fps)
        self.width = width
        self.height = height
        self.time_base = Fraction(1, fps)
        self.frames_written = 0  # frames handed to the encoder == pts of the next one
        self._closed = False

    def write(self, frames: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        if self._video is None:
            raise RuntimeError(f"{type(self).__name__} has a shared encoder; write to that")
        for rgb in _check_frames(frames, self.width, self.height):
            frame = _rgb_frame(rgb, self.frames_written, self.time_base)
            self.frames_written += 1
            self._mux_video(self._video.encode(frame))

    def write_encoded(self, video: EncodedVideo) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        if video.start != self.frames_written:
            raise ValueError(f"encoded frames start at {video.start}, the video is at "
                             f"{self.frames_written}")
        if self._video is None:
            raise RuntimeError(f"{type(self).__name__} has a shared encoder; write to that")
        self._mux_video(self._video.encode(None))  # the GOP written so far ends here
        self._mux_video(video.packets(self.time_base))
        self.frames_written += video.frames

    def close(self) -> None:
        """Flush the encoder and finish the output; resources are released whatever happens."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._video is not None:
                self._mux_video(self._video.encode(None))
            self._finish()
        finally:
            self._release()

    def _finish(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._mux_video_packet(packet)
            self._packets_out += 1
            # Audio follows the video that has left the encoder (x264 holds frames back for
            # lookahead), so the muxer's interleaving queue stays short.
            if self._audio is not None:
                self._mux_audio(self._packets_out / self.fps)

    def _mux_video_packet(self, packet: av.Packet) -> None:
        raise NotImplementedError

    def _mux_audio(self, t_seconds: float, final: bool = False) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FragmentedMP4Sink(_SinkBase):
    """H.264 (+ AAC) fragmented MP4, with one fragment per GOP.

    A fragment is written and flushed to the OS as soon as the next GOP starts, so if the
    process dies the file plays up to its last complete fragment.

    `continue_at` (a multiple of the GOP) resumes an interrupted run of the same job: the
    file at `path` (or its resume backup, left by a resume that was itself interrupted)
    holds at least that many frames in complete fragments. Those packets are copied into a
    new file at `path`, and frames written next continue at that index. The old file stays
    aside as the backup until the new one holds what was copied.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: int,
        width: int,
        height: int,
        audio: AudioInput | None = None,
        crf: int = 23,
        preset: str = "veryfast",
        gop_seconds: float = 1.0,
        threads: int = 2,
        shared_video: bool = False,
        continue_at: int = 0,
    ) -> None:
        super().__init__(fps, width, height)
        keyint = max(1, round(gop_seconds * fps))
        if continue_at % keyint:
            raise ValueError(f"continue_at {continue_at} is not a multiple of the GOP ({keyint})")
        # Open the audio before creating the output, so bad audio leaves no stray file.
        track = _open_track(audio)
        self._packets_out = 0  # video packets muxed: the muxed video reaches this / fps
        self._backup: Path | None = None
        if continue_at:
            self._backup = self._set_aside(Path(path))
        self._container = av.open(
            os.fspath(path),
            "w",
            format="mp4",
            container_options={
                # delay_moov: the moov goes out with the first fragment, once the start
                # offsets of the tracks are known, so it can hold edit lists. Without them
                # the B-frame delay shifts the whole file (video starting at 2/fps) and the
                # AAC priming samples play as audio.
                "movflags": "frag_keyframe+empty_moov+default_base_moof+delay_moov",
                # avio_flush after every packet write; the mov muxer only writes whole
                # fragments, so this pushes each fragment to the OS when it is complete.
                "flush_packets": "1",
            },
        )
        # Packets arrive encoded (Annex B with in-band SPS/PPS); the muxer makes avcC.
        self._video_stream = self._container.add_mux_stream(
            "h264", rate=fps, width=width, height=height)
        self._video = None if shared_video else _standalone_x264(
            fps, width, height, crf, preset, keyint, threads)
        self._audio: _AudioFeed | None = None
        self._audio_stream: av.AudioStream | None = None
        if track is not None:
            self._audio_stream = self._container.add_stream("aac", rate=AUDIO_RATE)
            _configure_aac(self._audio_stream.codec_context)
            self._audio = _AudioFeed(track, self._audio_stream.codec_context)
        if continue_at:
            self._copy_committed(continue_at)

    @staticmethod
    def _set_aside(path: Path) -> Path:
        backup = resume_backup(path)
        if not backup.exists():  # else a resume before this one was cut short: start from it
            os.replace(path, backup)
        return backup

    def _copy_committed(self, frames: int) -> None:
        """The interrupted run's first `frames` frames, as they were encoded (and the audio
        under them, encoded again: the AAC encoder is deterministic from the start)."""
        assert self._backup is not None
        copied = 0
        for packet in committed_packets(self._backup, frames, self.fps):
            self._mux_video([packet])
            copied += 1
        if copied != frames:
            raise ValueError(f"{self._backup} holds {copied} complete frames, not {frames}")
        self.frames_written = frames

    def _finish(self) -> None:
        if self._audio is not None:
            self._mux_audio(self._packets_out / self.fps, final=True)

    def _release(self) -> None:
        self._container.close()
        if self._audio is not None:
            self._audio.track.close()
        if self._backup is not None:  # the container closed: the copy is in the new file
            self._backup.unlink(missing_ok=True)
            self._backup = None

    def _mux_video_packet(self, packet: av.Packet) -> None:
        packet.stream = self._video_stream
        self._container.mux(packet)
        if self._backup is not None and packet.is_keyframe and self._packets_out > 0 \
                and packet.pts >= self.frames_written > 0:
            # A new GOP after the copied ones: the muxer has written every copied fragment.
            self._backup.unlink(missing_ok=True)
            self._backup = None

    def _mux_audio(self, t_seconds: float, final: bool = False) -> None:
        assert self._audio is not None and self._audio_stream is not None
        for packet in self._audio.packets_until(t_seconds, final):
            packet.stream = self._audio_stream
            self._container.mux(packet)


def _adts_header(audio_specific_config: bytes, payload_size: int) -> bytes:
    """7-byte ADTS header for one raw AAC frame, from the encoder's AudioSpecificConfig.

    MPEG-TS carries AAC as ADTS. A stream added with add_mux_stream has no extradata, so
    FFmpeg's mpegts muxer cannot add the headers itself and we frame the packets here.
    """
    asc = audio_specific_config
    object_type = asc[0] >> 3  # 2 = AAC LC; ADTS stores it minus one in two bits
    freq_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7)
    channels = (asc[1] >> 3) & 0x0F
    size = payload_size + 7
    return bytes(
        [
            0xFF,
            0xF1,  # syncword, MPEG-4, layer 0, no CRC
            ((object_type - 1) << 6) | (freq_index << 2) | (channels >> 2),
            ((channels & 0x03) << 6) | (size >> 11),
            (size >> 3) & 0xFF,
            ((size & 0x07) << 5) | 0x1F,  # buffer fullness 0x7FF: variable bit rate
            0xFC,  # one raw data block
        ]
    )


@dataclass
class _OpenSegment:
    container: av.container.OutputContainer
    video: av.VideoStream
    audio: av.AudioStream | None
    path: Path  # final name; the file is written at `tmp` until complete
    tmp: Path
    first_frame: int


class HLSSink(_SinkBase):
    """HLS: MPEG-TS segments that each start with an IDR frame, and an EVENT playlist, or
    with `live` a sliding-window playlist published at wall-clock pace (LivePublisher).

    Video packets (from its own GOP encoder, or encoded elsewhere) and one AAC encoder's are
    muxed into a fresh MPEG-TS container per segment. x264 opened outside a container repeats
    SPS/PPS before every IDR, so each segment decodes on its own. A new segment starts at every
    IDR on the grid of `segment_seconds`.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        fps: int,
        width: int,
        height: int,
        audio: AudioInput | None = None,
        segment_seconds: float = 2.0,
        crf: int = 23,
        preset: str = "veryfast",
        playlist_name: str = "stream.m3u8",
        threads: int = 2,
        shared_video: bool = False,
        live: LiveHLS | None = None,
        continue_at: int = 0,
    ) -> None:
        super().__init__(fps, width, height)
        self.folder = Path(folder)
        self.playlist_path = self.folder / playlist_name
        self._segment_frames = max(1, round(segment_seconds * fps))
        target = math.ceil(round(self._segment_frames / fps, 3))
        self._playlist = MediaPlaylist(target_duration=target)
        self._live = live
        self._segments_made = 0
        self._publisher: LivePublisher | None = None
        self._packets_out = 0  # video packets muxed; with a closed GOP also the next IDR's pts
        self._segment: _OpenSegment | None = None
        self.pace_in_sink = True  # False: the caller waits for room (has_room) before writing
        self._live_starts: dict[str, int] = {}  # unlisted live segment -> its first frame

        self._video = None if shared_video else _standalone_x264(
            fps, width, height, crf, preset, self._segment_frames, threads)

        self._audio: _AudioFeed | None = None
        self._asc = b""  # AudioSpecificConfig, for the ADTS headers
        track = _open_track(audio)
        if track is not None:
            encoder = av.CodecContext.create("aac", "w")
            _configure_aac(encoder)
            encoder.open()
            self._asc = encoder.extradata
            self._audio = _AudioFeed(track, encoder, keep=live is not None)
        self._audio_marks: dict[int, int] = {}  # unlisted live segment's first frame -> audio packet
        self.folder.mkdir(parents=True, exist_ok=True)
        if live is not None:
            if continue_at:
                raise ValueError("a live stream does not resume")
            self._publisher = LivePublisher(self.folder, self.playlist_path, target,
                                            live.window, live.ahead)
        if continue_at:
            self._continue(continue_at)

    def _continue(self, frames: int) -> None:
        """Keep the first `frames` frames of an interrupted run's segments: list them again,
        number new segments after them, and bring the audio encoder to where it was."""
        if frames % self._segment_frames:
            raise ValueError(f"continue_at {frames} is not a whole number of segments")
        kept = hls_committed_segments(self.folder, self.playlist_path.name, self.fps,
                                      self._segment_frames)[: frames // self._segment_frames]
        if len(kept) * self._segment_frames != frames:
            raise ValueError(f"{self.playlist_path} lists fewer than {frames} whole frames")
        remove_stale_temp_files(self.folder)
        for uri, duration in kept:
            self._playlist.add_segment(uri, duration)
        self._segments_made = len(kept)
        self._packets_out = self.frames_written = frames
        if self._audio is not None:  # deterministic from the start: re-encoded, dropped
            self._audio.packets_until(frames / self.fps)

    @property
    def publisher(self) -> LivePublisher | None:
        return self._publisher

    def has_room(self) -> bool:
        """A live sink: whether the caller may write the next segment now (see pace_in_sink)."""
        return self._publisher is None or self._publisher.has_room()

    @property
    def can_rewind(self) -> bool:
        """Unlisted live video can be taken back (its audio is handed out again as it was)."""
        return self._publisher is not None and self._video is not None

    def rewind_points(self) -> list[tuple[int, float]]:
        """(first frame, wall time due) of every segment not listed yet, in order: the
        queued ones, then the one being written. `rewind` may go back to any of them."""
        if not self.can_rewind:
            return []
        assert self._publisher is not None
        queued = self._publisher.queued()
        listed = set(self._live_starts) - {uri for uri, _ in queued}
        for uri in listed:  # listed meanwhile: no longer ours to take back
            del self._live_starts[uri]
        points = [(self._live_starts[uri], due) for uri, due in queued if uri in self._live_starts]
        if self._segment is not None:
            due = (queued[-1][1] + (self._segment.first_frame - points[-1][0]) / self.fps
                   if points else self._publisher.next_due())
            points.append((self._segment.first_frame, due))
        return points

    def rewind(self, frame: int) -> bool:
        """Take back every frame from `frame` on (the first frame of a segment not listed
        yet, from rewind_points): those segments are withdrawn and deleted, the segment being
        written and the GOP being encoded are dropped, and writing goes on from `frame`, in a
        segment of the same name and number as if the video had always been this way (the
        GOPs are independent: the same frames give the same bytes). False, with nothing
        changed, if that segment was listed meanwhile."""
        if not self.can_rewind or frame % self._segment_frames:
            return False
        if self._audio is not None and frame not in self._audio_marks:
            return False  # its audio is no longer kept
        assert self._publisher is not None and isinstance(self._video, GopEncoder)
        names = [uri for uri, start in self._live_starts.items() if start >= frame]
        if names:
            first = min(names, key=self._live_starts.__getitem__)
            gone = self._publisher.withdraw(first)
            if gone is None:
                return False
            for uri in gone:
                self._live_starts.pop(uri, None)
                (self.folder / uri).unlink(missing_ok=True)
        elif self._segment is None or self._segment.first_frame > frame:
            return False
        if self._segment is not None:
            self._segment.container.close()
            self._segment.tmp.unlink(missing_ok=True)
            self._segment = None
        self._video.discard()
        if self._audio is not None:
            self._audio.rewind_to(self._audio_marks[frame])
        self.frames_written = self._packets_out = frame
        self._segments_made = frame // self._segment_frames
        return True

    def _forget_listed_audio(self) -> None:
        """Keep the audio of the segments a rewind may still take back, and no more."""
        if self._audio is None or self._publisher is None:
            return
        queued = {uri for uri, _ in self._publisher.queued()}
        starts = [start for uri, start in self._live_starts.items() if uri in queued]
        if self._segment is not None:
            starts.append(self._segment.first_frame)
        oldest = min(starts, default=self._packets_out)
        for frame in [f for f in self._audio_marks if f < oldest]:
            del self._audio_marks[frame]
        self._audio.forget_before(self._audio_marks.get(oldest, self._audio.handed))

    def _finish(self) -> None:
        if self._segment is not None:
            self._finish_segment(ended=True)
        elif self._publisher is None:
            write_atomic(self.playlist_path, self._playlist.render(ended=True))
        if self._publisher is not None:
            self._publisher.close(ended=True)

    def _release(self) -> None:
        if self._publisher is not None and not self._publisher.closed:
            with contextlib.suppress(Exception):  # after an error: stop the thread, keep the first
                self._publisher.close(ended=True)
        if self._segment is not None:  # only after an error: drop the partial segment
            self._segment.container.close()
            self._segment.tmp.unlink(missing_ok=True)
            self._segment = None
        if self._audio is not None:
            self._audio.track.close()

    def _mux_video_packet(self, packet: av.Packet) -> None:
        # Chunks encoded apart add IDR frames off the grid (stitcher.chunks); a segment
        # starts only on the grid.
        starts_segment = packet.is_keyframe and packet.pts % self._segment_frames == 0
        if starts_segment and self._segment is not None:
            self._finish_segment(ended=False)
        if self._segment is None:
            self._segment = self._open_segment()
        packet.stream = self._segment.video
        packet.pts += _TS_OFFSET_SECONDS * self.fps
        packet.dts += _TS_OFFSET_SECONDS * self.fps
        self._segment.container.mux(packet)
        if self._publisher is not None and starts_segment and self.pace_in_sink:
            # Pacing waits here, with the new segment's IDR already in it: a Ctrl-C during
            # the wait leaves a segment that still starts with its keyframe.
            self._publisher.wait_for_room()

    def _mux_audio(self, t_seconds: float, final: bool = False) -> None:
        assert self._audio is not None and self._segment is not None
        for packet in self._audio.packets_until(t_seconds, final):
            framed = av.Packet(_adts_header(self._asc, packet.size) + bytes(packet))
            framed.stream = self._segment.audio
            framed.time_base = packet.time_base
            framed.pts = packet.pts + _TS_OFFSET_SECONDS * AUDIO_RATE
            framed.dts = packet.dts + _TS_OFFSET_SECONDS * AUDIO_RATE
            framed.duration = packet.duration
            self._segment.container.mux(framed)

    def _open_segment(self) -> _OpenSegment:
        name = (self._live.segment_name(self._segments_made) if self._live
                else f"seg_{self._segments_made:05d}.ts")
        self._segments_made += 1
        path = self.folder / name
        tmp = temp_path_for(path)
        container = av.open(
            str(tmp),
            "w",
            format="mpegts",
            # Every segment restarts the TS continuity counters; flag that as intended so
            # demuxers reading segments back to back do not report packet loss.
            container_options={"mpegts_flags": "initial_discontinuity"},
        )
        video = container.add_mux_stream(
            "h264", rate=self.fps, width=self.width, height=self.height
        )
        audio = container.add_mux_stream("aac", rate=AUDIO_RATE) if self._audio else None
        if self._audio is not None and self._live is not None:
            self._audio_marks[self._packets_out] = self._audio.handed
        return _OpenSegment(container, video, audio, path, tmp, self._packets_out)

    def _finish_segment(self, ended: bool) -> None:
        """Complete the open segment, publish it, then publish the playlist naming it."""
        segment = self._segment
        assert segment is not None
        if self._audio is not None:
            # The segment's own audio, up to the video cut (the whole rest when ending).
            self._mux_audio(self._packets_out / self.fps, final=ended)
        segment.container.close()
        os.replace(segment.tmp, segment.path)
        self._segment = None
        duration = (self._packets_out - segment.first_frame) / self.fps
        if self._publisher is not None:  # listed when due (the pacing waits in _mux_video_packet)
            self._publisher.submit(segment.path.name, duration, block=False)
            self._live_starts[segment.path.name] = segment.first_frame
            while len(self._live_starts) > 256:  # long listed (rewind_points prunes on use)
                del self._live_starts[next(iter(self._live_starts))]
            self._forget_listed_audio()
            return
        self._playlist.add_segment(segment.path.name, duration)
        write_atomic(self.playlist_path, self._playlist.render(ended=ended))


class SharedEncoderSink(_SinkBase):
    """MP4 and HLS from one x264 encoder: each frame is encoded once and muxed twice.

    The GOP is the HLS segment length (every segment must start with an IDR); the MP4 cuts a
    fragment at the same keyframes.
    """

    def __init__(self, mp4: str | os.PathLike[str], hls_folder: str | os.PathLike[str], fps: int,
                 width: int, height: int, audio: AudioInput | None = None,
                 segment_seconds: float = 2.0, crf: int = 23, preset: str = "veryfast",
                 threads: int = 2, continue_at: int = 0) -> None:
        super().__init__(fps, width, height)
        keyint = max(1, round(segment_seconds * fps))
        self._muxers: list[_SinkBase] = []
        try:
            self._muxers.append(FragmentedMP4Sink(mp4, fps, width, height, audio=audio,
                                                  gop_seconds=segment_seconds, shared_video=True,
                                                  continue_at=continue_at))
            self._muxers.append(HLSSink(hls_folder, fps, width, height, audio=audio,
                                        segment_seconds=segment_seconds, shared_video=True,
                                        continue_at=continue_at))
        except BaseException:
            for muxer in self._muxers:
                muxer.close()
            raise
        self._video = _standalone_x264(fps, width, height, crf, preset, keyint, threads)
        self.frames_written = continue_at

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for muxer in self._muxers:
            muxer._mux_video([_copy_packet(p) for p in packets])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._mux_video(self._video.encode(None))
        finally:
            errors = []
            for muxer in self._muxers:
                try:
                    muxer.close()
                except Exception as exc:  # noqa: BLE001 - close every output, then report
                    errors.append(exc)
            if errors:
                raise errors[0]
