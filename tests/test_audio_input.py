"""Tests for engine.audio_input: every input is generated in tmp_path with PyAV or wave."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from engine.audio_input import beat_envelope, check_audio
from engine.errors import InputError

SR = 44100


def _clicks(seconds: float, times: list[float], rate: int = SR) -> np.ndarray:
    """Mono float signal with a short windowed burst (a 'click') at each time."""
    x = np.zeros(int(round(seconds * rate)), dtype=np.float32)
    burst = (0.8 * np.hanning(64) * np.sign(np.sin(np.arange(64)))).astype(np.float32)
    for t in times:
        i = int(round(t * rate))
        x[i : i + 64] += burst[: len(x) - i]
    return x


def _write(path: Path, x: np.ndarray, codec: str = "pcm_s16le", rate: int = SR) -> Path:
    """Encode a mono float signal with PyAV (stereo for lossy codecs, like real files)."""
    with av.open(str(path), "w") as c:
        layout = "mono" if codec.startswith("pcm") else "stereo"
        s = c.add_stream(codec, rate=rate, layout=layout)
        fmt = s.codec_context.format.name
        size = s.codec_context.frame_size or 4096
        nch = 1 if layout == "mono" else 2
        for i in range(0, len(x), size):
            chunk = x[i : i + size]
            a = np.tile(chunk, (nch, 1)) if fmt.endswith("p") else np.repeat(chunk, nch)[None]
            if fmt.startswith("s16"):
                a = (np.clip(a, -1, 1) * 32767).astype(np.int16)
            elif fmt.startswith("s32"):
                a = (np.clip(a, -1, 1) * 2147483000).astype(np.int32)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(a), format=fmt, layout=layout)
            frame.rate = rate
            frame.pts = i
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return path


def _onsets(env: np.ndarray, thr: float = 0.5) -> np.ndarray:
    """Frames where the envelope rises through ``thr`` (one per beat)."""
    above = env >= thr
    return np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))


def _check_shape(env: np.ndarray, n: int) -> None:
    assert env.shape == (n,) and env.dtype == np.float32
    assert np.all(np.isfinite(env)) and env.min() >= 0.0 and env.max() <= 1.0


# 2 Hz clicks at 0.5, 1.0, ... 3.5 s -> at 30 fps, frames 15, 30, ... 105.
CLICK_TIMES = [0.5 * k for k in range(1, 8)]
CLICK_FRAMES = np.array([15 * k for k in range(1, 8)])


@pytest.fixture
def click_wav(tmp_path: Path) -> Path:
    return _write(tmp_path / "clicks.wav", _clicks(4.0, CLICK_TIMES))


def test_check_audio_duration(click_wav: Path) -> None:
    assert check_audio(click_wav) == pytest.approx(4.0, abs=1e-3)


def test_click_track_peaks_line_up(click_wav: Path) -> None:
    env = beat_envelope(click_wav, fps=30, n_frames=120, mode="pad")
    _check_shape(env, 120)
    onsets = _onsets(env)
    assert len(onsets) == len(CLICK_FRAMES), onsets
    assert np.abs(onsets - CLICK_FRAMES).max() <= 1, onsets
    # Each beat lasts a few frames, then decays well before the next one.
    for f in onsets:
        assert env[f] > 0.9 and env[f + 1] > 0.3 and env[f + 10] < 0.2


@pytest.mark.parametrize("fps", [24.0, 29.97, 60.0])
def test_click_track_other_fps(click_wav: Path, fps: float) -> None:
    n = int(4.0 * fps)
    env = beat_envelope(click_wav, fps=fps, n_frames=n, mode="pad")
    _check_shape(env, n)
    expected = np.round(np.array(CLICK_TIMES) * fps)
    onsets = _onsets(env)
    assert len(onsets) == len(expected) and np.abs(onsets - expected).max() <= 1, onsets


def test_sample_rate_parameter(click_wav: Path) -> None:
    env = beat_envelope(click_wav, fps=30, n_frames=120, mode="pad", sample_rate=22050)
    _check_shape(env, 120)
    assert np.abs(_onsets(env) - CLICK_FRAMES).max() <= 1


def test_silence_gives_zero(tmp_path: Path) -> None:
    p = _write(tmp_path / "silence.wav", np.zeros(2 * SR, dtype=np.float32))
    env = beat_envelope(p, fps=30, n_frames=90)
    _check_shape(env, 90)
    assert env.max() < 0.01


def test_faint_hiss_stays_low(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 1e-4  # -80 dB
    env = beat_envelope(_write(tmp_path / "hiss.wav", x), fps=30, n_frames=60)
    assert env[2:].max() < 0.2


def test_pad_vs_loop_for_short_audio(tmp_path: Path) -> None:
    # 1.1 s of audio with one click at 0.5 s; 3.5 s of video at 30 fps.
    p = _write(tmp_path / "short.wav", _clicks(1.1, [0.5]))
    pad = beat_envelope(p, fps=30, n_frames=105, mode="pad")
    loop = beat_envelope(p, fps=30, n_frames=105, mode="loop")
    _check_shape(pad, 105)
    _check_shape(loop, 105)

    assert np.abs(_onsets(pad) - [15]).max() <= 1 and len(_onsets(pad)) == 1
    assert np.all(pad[35:] == 0.0)  # after the audio ends (frame 33) there is nothing

    # Looping happens in audio time: clicks at 0.5, 1.6, 2.7 s, so no drift per repeat.
    onsets = _onsets(loop)
    assert len(onsets) == 3 and np.abs(onsets - [15, 48, 81]).max() <= 1, onsets
    np.testing.assert_array_equal(loop[:33], pad[:33])


def test_audio_longer_than_video(click_wav: Path) -> None:
    full = beat_envelope(click_wav, fps=30, n_frames=120, mode="pad")
    for mode in ("loop", "pad"):
        part = beat_envelope(click_wav, fps=30, n_frames=40, mode=mode)
        np.testing.assert_array_equal(part, full[:40])


def test_deterministic(click_wav: Path) -> None:
    a = beat_envelope(click_wav, fps=25, n_frames=300)
    b = beat_envelope(click_wav, fps=25, n_frames=300)
    np.testing.assert_array_equal(a, b)


def test_zero_and_many_frames(click_wav: Path) -> None:
    assert beat_envelope(click_wav, fps=30, n_frames=0).shape == (0,)
    n = 24 * 3600 * 60  # 24 h at 60 fps from a 4 s loop
    start = time.process_time()  # CPU seconds: time spent waiting on a busy machine is not ours
    env = beat_envelope(click_wav, fps=60, n_frames=n)
    assert time.process_time() - start < 10
    _check_shape(env, n)
    # Exactly periodic: 4 s of audio is 240 frames.
    np.testing.assert_array_equal(env[240:480], env[n - 240 :])


@pytest.mark.parametrize(
    "codec,ext", [("libmp3lame", "mp3"), ("aac", "m4a"), ("libopus", "ogg"), ("flac", "flac")]
)
def test_compressed_formats(tmp_path: Path, codec: str, ext: str) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} encoder not available")
    rate = 48000 if codec == "libopus" else SR
    p = _write(tmp_path / f"clicks.{ext}", _clicks(4.0, CLICK_TIMES, rate), codec, rate)
    assert check_audio(p) == pytest.approx(4.0, abs=0.1)
    env = beat_envelope(p, fps=30, n_frames=120, mode="pad")
    _check_shape(env, 120)
    onsets = _onsets(env)
    assert len(onsets) == len(CLICK_FRAMES) and np.abs(onsets - CLICK_FRAMES).max() <= 1, onsets


def test_check_audio_is_quick_on_long_file(tmp_path: Path) -> None:
    p = tmp_path / "long.wav"
    with wave.open(str(p), "wb") as w:  # 20 min of 8 kHz silence, 19 MB, written in ~no time
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(2 * 8000 * 1200))
    start = time.process_time()
    assert check_audio(p) == pytest.approx(1200.0)
    assert time.process_time() - start < 0.5


# --- rejection -------------------------------------------------------------------------------


def _assert_one_line(exc: pytest.ExceptionInfo[InputError], path: Path, text: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and text in msg, msg


def test_text_file_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "song.mp3"
    p.write_text("definitely not audio\n" * 20)
    with pytest.raises(InputError) as exc:
        check_audio(p)
    _assert_one_line(exc, p, "audio is not a readable audio file")
    with pytest.raises(InputError):
        beat_envelope(p, fps=30, n_frames=10)


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "missing.wav"
    with pytest.raises(InputError) as exc:
        check_audio(p)
    _assert_one_line(exc, p, "audio not found")
    with pytest.raises(InputError):
        check_audio(tmp_path)


def test_video_without_audio_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "video.mp4"
    with av.open(str(p), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height = 32, 32
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    with pytest.raises(InputError) as exc:
        check_audio(p)
    _assert_one_line(exc, p, "no audio stream")


def test_playlists_are_not_followed(tmp_path: Path, click_wav: Path) -> None:
    # FFmpeg's concat demuxer would happily read other files named inside the input.
    p = tmp_path / "list.txt"
    p.write_text(f"ffconcat version 1.0\nfile '{click_wav}'\n")
    with pytest.raises(InputError) as exc:
        check_audio(p)
    _assert_one_line(exc, p, "audio is not a readable audio file")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fps": 0},
        {"fps": float("nan")},
        {"n_frames": -1},
        {"n_frames": 2.5},
        {"mode": "repeat"},
        {"sample_rate": 10},
    ],
)
def test_bad_arguments(click_wav: Path, kwargs: dict) -> None:
    args = {"fps": 30.0, "n_frames": 10, "mode": "loop", "sample_rate": 16000} | kwargs
    with pytest.raises(InputError):
        beat_envelope(click_wav, **args)
