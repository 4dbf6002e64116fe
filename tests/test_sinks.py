import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from stitcher.audio_track import AudioInput, AudioTrack
from stitcher.sinks import FragmentedMP4Sink, HLSSink, SharedEncoderSink

W, H = 64, 64
MAX_ERROR = 6.0  # mean abs error per decoded frame at crf 23
REPO = Path(__file__).resolve().parents[1]


def gradient_frames(start: int, n: int, width: int = W, height: int = H) -> np.ndarray:
    """Smooth colour waves, easy to encode. They drift 3 px per frame, so neighbouring frames
    differ by ~10 (mean abs) and a frame out of place fails MAX_ERROR."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = 3 * np.arange(start, start + n, dtype=np.float32)[:, None, None]
    r = 128 + 90 * np.sin((x + t) / 10)
    g = 128 + 90 * np.cos((y + 0.5 * t) / 12)
    b = 128 + 60 * np.sin((x + y - t) / 16)
    return np.stack([r, g, b], axis=-1).round().astype(np.uint8)


def write_tone(path: Path, seconds: float, rate: int = 48000) -> Path:
    """Mono 440 Hz sine WAV."""
    n = round(seconds * rate)
    samples = (0.5 * 32767 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.int16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        for start in range(0, n, 4096):
            chunk = np.ascontiguousarray(samples[None, start : start + 4096])
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_in_chunks(sink, total: int, sizes=(1, 7, 12)) -> None:
    done, i = 0, 0
    while done < total:
        n = min(sizes[i % len(sizes)], total - done)
        sink.write(gradient_frames(done, n))
        done, i = done + n, i + 1


def decode_video(path: Path) -> tuple[list[np.ndarray], list[float], av.VideoStream]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time))
        return frames, times, stream


def decoded_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        chunks = [f.to_ndarray() for f in container.decode(audio=0)]
        assert container.streams.audio[0].sample_rate == 48000
    return np.concatenate(chunks, axis=1)


def assert_video_matches(frames: list[np.ndarray], times: list[float], fps: int, count: int):
    assert len(frames) == count
    assert frames[0].shape == (H, W, 3)
    np.testing.assert_allclose(np.diff(times), 1 / fps, atol=1e-3)
    expected = gradient_frames(0, count).astype(np.int16)
    errors = [np.abs(f.astype(np.int16) - e).mean() for f, e in zip(frames, expected, strict=True)]
    assert max(errors) < MAX_ERROR, errors


@pytest.fixture
def tone(tmp_path) -> Path:
    return write_tone(tmp_path / "tone.wav", 1.0)


# --- fragmented MP4 ---


def test_mp4_roundtrip(tmp_path):
    path = tmp_path / "out.mp4"
    sink = FragmentedMP4Sink(path, fps=10, width=W, height=H)
    write_in_chunks(sink, 25)
    sink.close()
    sink.close()  # idempotent

    frames, times, stream = decode_video(path)
    assert stream.average_rate == 10
    assert (stream.width, stream.height) == (W, H)
    assert times[0] == 0.0  # delay_moov lets the edit list hide the B-frame delay
    assert_video_matches(frames, times, fps=10, count=25)


def test_mp4_is_deterministic(tmp_path):
    outputs = []
    for name in ("a.mp4", "b.mp4"):
        with FragmentedMP4Sink(tmp_path / name, fps=10, width=W, height=H) as sink:
            sink.write(gradient_frames(0, 15))
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("mode", ["loop", "pad"])
def test_mp4_audio_matches_video_duration(tmp_path, tone, mode):
    path = tmp_path / "out.mp4"
    with FragmentedMP4Sink(path, fps=10, width=W, height=H, audio=AudioInput(str(tone), mode)) as s:
        write_in_chunks(s, 30)

    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        assert abs(float(audio.duration * audio.time_base) - 3.0) < 0.1
    samples = decoded_audio(path)
    assert abs(samples.shape[1] / 48000 - 3.0) < 0.1
    # The tone lasts 1 s: looped, 2.5 s is still the tone; padded, it is silence.
    late = np.sqrt(np.mean(samples[:, 120000:130000] ** 2))
    assert late > 0.1 if mode == "loop" else late < 1e-3
    frames, times, _ = decode_video(path)
    assert_video_matches(frames, times, fps=10, count=30)


_KILL_CHILD = """
import sys
from stitcher.audio_track import AudioInput
from stitcher.sinks import FragmentedMP4Sink
from test_sinks import gradient_frames

audio = AudioInput(sys.argv[2], "loop")
sink = FragmentedMP4Sink(sys.argv[1], fps=10, width=64, height=64, audio=audio, gop_seconds=1.0)
i = 0
while True:
    sink.write(gradient_frames(i, 1))
    i += 1
    print(i, flush=True)
"""


@pytest.mark.subprocess
def test_mp4_survives_sigkill(tmp_path, tone):
    path = tmp_path / "killed.mp4"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    child = subprocess.Popen(
        [sys.executable, "-c", _KILL_CHILD, str(path), str(tone)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # x264 holds ~10 frames of lookahead; by frame 45 at least 2 GOPs of 10 are out.
        deadline = time.monotonic() + 30
        written = 0
        while written < 45:
            ready, _, _ = select.select([child.stdout], [], [], deadline - time.monotonic())
            line = child.stdout.readline() if ready else ""
            assert line, f"writer stalled or died: {child.stderr.read() if not ready else ''}"
            written = int(line)
        child.send_signal(signal.SIGKILL)  # no close(), no trailer: like a crash
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    # The child kept writing until the signal landed, so the file may end inside a fragment;
    # a reader then gets an error for the truncated packet. Everything before it must decode.
    frames, audio_samples = [], 0
    with av.open(str(path)) as container:
        try:
            for packet in container.demux():
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        frames.append(frame.to_ndarray(format="rgb24"))
                    else:
                        audio_samples += frame.samples
        except av.InvalidDataError:
            pass
    assert len(frames) >= 20
    assert abs(audio_samples / 48000 - len(frames) / 10) < 0.2
    expected = gradient_frames(0, len(frames)).astype(np.int16)
    errors = [np.abs(f.astype(np.int16) - e).mean() for f, e in zip(frames, expected, strict=True)]
    assert max(errors) < MAX_ERROR, errors


# --- HLS ---


def parse_playlist(text: str) -> tuple[dict[str, str], list[tuple[float, str]]]:
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    tags, segments = {}, []
    for i, line in enumerate(lines[1:], start=1):
        if line.startswith("#EXTINF:"):
            segments.append((float(line[len("#EXTINF:") :].rstrip(",")), lines[i + 1]))
        elif line.startswith("#EXT-X-"):
            key, _, value = line[1:].partition(":")
            tags[key] = value
        else:
            assert segments and line == segments[-1][1], f"stray line {line!r}"
    return tags, segments


def test_hls_segments_and_playlist(tmp_path):
    folder = tmp_path / "hls"
    sink = HLSSink(folder, fps=10, width=W, height=H, segment_seconds=1.0)
    write_in_chunks(sink, 25)
    # Mid-stream: the first segments are published, the playlist is still open.
    tags, segments = parse_playlist((folder / "stream.m3u8").read_text())
    assert segments and "EXT-X-ENDLIST" not in tags
    assert tags["EXT-X-PLAYLIST-TYPE"] == "EVENT"
    sink.close()
    sink.close()

    tags, segments = parse_playlist((folder / "stream.m3u8").read_text())
    assert "EXT-X-ENDLIST" in tags
    assert tags["EXT-X-VERSION"] == "3" and tags["EXT-X-MEDIA-SEQUENCE"] == "0"
    assert [uri for _, uri in segments] == ["seg_00000.ts", "seg_00001.ts", "seg_00002.ts"]
    assert [d for d, _ in segments] == [1.0, 1.0, 0.5]
    assert all(int(tags["EXT-X-TARGETDURATION"]) >= d for d, _ in segments)
    # Only the published files: temp names were all renamed into place.
    assert sorted(os.listdir(folder)) == ["seg_00000.ts", "seg_00001.ts", "seg_00002.ts"] + [
        "stream.m3u8"
    ]

    for duration, uri in segments:
        # Each segment plays on its own, starting with an IDR frame.
        with av.open(str(folder / uri)) as container:
            assert next(container.demux(video=0)).is_keyframe
        with av.open(str(folder / uri)) as container:
            first = next(container.decode(video=0))
            assert first.key_frame and first.pict_type == PictureType.I
        frames, _, _ = decode_video(folder / uri)
        assert len(frames) == round(duration * 10)

    frames, times, stream = decode_video(folder / "stream.m3u8")  # FFmpeg's HLS demuxer
    assert (stream.width, stream.height) == (W, H)
    assert_video_matches(frames, times, fps=10, count=25)


@pytest.mark.parametrize("mode", ["loop", "pad"])
def test_hls_audio(tmp_path, tone, mode):
    folder = tmp_path / "hls"
    audio = AudioInput(str(tone), mode)
    with HLSSink(folder, fps=20, width=W, height=H, audio=audio, segment_seconds=1.0) as sink:
        write_in_chunks(sink, 60)

    _, segments = parse_playlist((folder / "stream.m3u8").read_text())
    assert [d for d, _ in segments] == [1.0, 1.0, 1.0]
    playlist = folder / "stream.m3u8"
    frames, times, _ = decode_video(playlist)
    assert_video_matches(frames, times, fps=20, count=60)
    samples = decoded_audio(playlist)
    # MPEG-TS has no edit lists: the 1024 AAC priming samples stay, within the tolerance.
    assert abs(samples.shape[1] / 48000 - 3.0) < 0.1
    late = np.sqrt(np.mean(samples[:, 120000:130000] ** 2))
    assert late > 0.1 if mode == "loop" else late < 1e-3


# --- shared sink behaviour ---


def make_sink(kind: str, tmp_path: Path):
    if kind == "mp4":
        return FragmentedMP4Sink(tmp_path / "out.mp4", fps=10, width=W, height=H)
    return HLSSink(tmp_path / "hls", fps=10, width=W, height=H)


@pytest.mark.parametrize("kind", ["mp4", "hls"])
@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((2, H, W + 2, 3), np.uint8),  # wrong width
        np.zeros((2, H, W, 4), np.uint8),  # RGBA
        np.zeros((H, W, 3), np.uint8),  # missing T axis
        np.zeros((0, H, W, 3), np.uint8),  # T == 0
        np.zeros((2, H, W, 3), np.float32),  # wrong dtype
    ],
)
def test_write_rejects_bad_frames(tmp_path, kind, frames):
    sink = make_sink(kind, tmp_path)
    with pytest.raises(ValueError):
        sink.write(frames)
    sink.close()


@pytest.mark.parametrize("kind", ["mp4", "hls"])
def test_write_after_close_raises(tmp_path, kind):
    sink = make_sink(kind, tmp_path)
    sink.write(gradient_frames(0, 3))
    sink.close()
    with pytest.raises(RuntimeError):
        sink.write(gradient_frames(3, 1))


def test_odd_size_rejected(tmp_path):
    with pytest.raises(ValueError, match="even"):
        FragmentedMP4Sink(tmp_path / "x.mp4", fps=10, width=63, height=64)


# --- audio input ---


def test_audio_track_loop_and_pad(tmp_path):
    tone = write_tone(tmp_path / "tone.wav", 0.5)  # 24000 samples, not a multiple of 1024
    for mode in ("loop", "pad"):
        track = AudioTrack(AudioInput(str(tone), mode))
        frames = track.frames_until(0.7) + track.frames_until(0.7) + track.frames_until(1.3)
        assert all(f.samples == 1024 for f in frames)  # whole frames until the final call
        frames += track.frames_until(1.3, final=True)
        pts = [f.pts for f in frames]
        assert pts == list(np.cumsum([0] + [f.samples for f in frames[:-1]]))
        data = np.concatenate([f.to_ndarray() for f in frames], axis=1)
        assert data.shape == (2, round(1.3 * 48000))  # exactly the requested length
        if mode == "loop":  # the second pass starts over, sample for sample
            np.testing.assert_allclose(data[:, 24000:26000], data[:, :2000], atol=1e-6)
        else:
            assert not data[:, 24000:].any()
        track.close()


def test_audio_rejects_files_without_audio(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("this is not media\n" * 20)
    header_only = tmp_path / "header_only.wav"
    with av.open(str(header_only), "w") as container:
        container.add_stream("pcm_s16le", rate=48000, layout="mono")
        container.start_encoding()  # writes the header; PyAV otherwise waits for a packet
    video_only = tmp_path / "video.mp4"
    with FragmentedMP4Sink(video_only, fps=10, width=W, height=H) as sink:
        sink.write(gradient_frames(0, 2))

    for path, message in [
        (empty, "not a readable audio file"),
        (text, "not a readable audio file"),
        (video_only, "no audio stream"),
        (header_only, "no decodable audio"),
        (tmp_path / "missing.wav", "audio not found"),
    ]:
        with pytest.raises(ValueError, match=message):
            AudioTrack(AudioInput(str(path), "loop"))
    # The sinks check the audio before creating any output.
    with pytest.raises(ValueError, match="not a readable audio file"):
        FragmentedMP4Sink(tmp_path / "o.mp4", 10, W, H, audio=AudioInput(str(text), "pad"))
    with pytest.raises(ValueError, match="not a readable audio file"):
        HLSSink(tmp_path / "hls", 10, W, H, audio=AudioInput(str(empty), "pad"))
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "hls").exists()


def test_audio_mode_validated():
    with pytest.raises(ValueError, match="mode"):
        AudioInput("x.wav", "repeat")


# --- MP4 and HLS from one encoder ---


def test_shared_encoder_writes_identical_mp4_and_hls(tmp_path, tone):
    with SharedEncoderSink(tmp_path / "o.mp4", tmp_path / "hls", fps=10, width=W, height=H,
                           audio=AudioInput(str(tone), "loop"), segment_seconds=1.0) as sink:
        write_in_chunks(sink, 45)
    mp4, mp4_times, _ = decode_video(tmp_path / "o.mp4")
    hls, _, _ = decode_video(tmp_path / "hls" / "stream.m3u8")
    assert_video_matches(mp4, mp4_times, fps=10, count=45)
    assert mp4_times[0] == 0.0  # edit list: no B-frame delay at the start
    assert all(np.array_equal(a, b) for a, b in zip(mp4, hls, strict=True))  # one encode
    assert abs(decoded_audio(tmp_path / "o.mp4").shape[1] / 48000 - 4.5) < 0.05
    playlist = (tmp_path / "hls" / "stream.m3u8").read_text()
    assert playlist.count("#EXTINF:1.000") == 4 and "#EXT-X-ENDLIST" in playlist
    # Every TS segment starts with a keyframe and decodes on its own.
    for segment in sorted((tmp_path / "hls").glob("seg_*.ts")):
        with av.open(str(segment)) as c:
            first = next(c.decode(video=0))
            assert first.key_frame
