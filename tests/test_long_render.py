"""The issue's headline command, as a user runs it: 10 minutes at 30 fps with audio."""

import subprocess
import sys

import av
import numpy as np
import pytest

from tests.conftest import write_mono_wav

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.subprocess]


def write_beat(path, seconds=20, rate=22050):
    t = np.arange(seconds * rate) / rate
    samples = 0.1 * np.sin(2 * np.pi * 110 * t)
    for k in range(seconds * 2):
        i = int(k * 0.5 * rate)
        samples[i:i + 1000] += 0.8 * np.exp(-np.arange(1000) / 150)
    write_mono_wav(path, samples, rate)


def test_ten_minute_render_with_audio_mp4_and_hls(tmp_path):
    write_beat(tmp_path / "beat.wav")
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "render", "--prompt",
         "a red circle bouncing on a night background", "--audio", "beat.wav",
         "--duration", "600", "--out", "out.mp4", "--hls", "out_hls/", "--workers", "2",
         "--model", "procedural", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]

    with av.open(str(tmp_path / "out.mp4")) as container:
        video = container.streams.video[0]
        assert video.average_rate == 30 and video.codec_context.width == 256
        count, last = 0, None
        for frame in container.decode(video):
            count, last = count + 1, frame
        assert count == 18_000
        assert last.to_ndarray(format="rgb24").shape == (256, 256, 3)
    with av.open(str(tmp_path / "out.mp4")) as container:
        audio = container.streams.audio[0]
        seconds = sum(f.samples for f in container.decode(audio)) / audio.rate
        assert seconds == pytest.approx(600, abs=0.1)

    playlist = (tmp_path / "out_hls" / "stream.m3u8").read_text().splitlines()
    assert playlist[0] == "#EXTM3U" and playlist[-1] == "#EXT-X-ENDLIST"
    target = int(next(x for x in playlist if x.startswith("#EXT-X-TARGETDURATION:")).split(":")[1])
    durations = [float(x[8:].rstrip(",")) for x in playlist if x.startswith("#EXTINF:")]
    assert "#EXT-X-MEDIA-SEQUENCE:0" in playlist
    assert all(d <= target for d in durations) and sum(durations) == pytest.approx(600)
    with av.open(str(tmp_path / "out_hls" / "stream.m3u8")) as hls:
        assert sum(1 for _ in hls.decode(video=0)) == 18_000
