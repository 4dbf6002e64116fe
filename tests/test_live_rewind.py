"""Taking back live video that is not listed yet (a prompt change lands in seconds): the HLS
sink withdraws unlisted segments and writes on from a GOP boundary exactly as if the video had
always been the new one, and the replay memory forgets what was made for the dropped video.
Real encoders, files and LMDB; the whole stream is in tests/test_live_stream.py."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from memory.replay import ReplayMemory
from stitcher.audio_track import AudioInput
from stitcher.playlist import LiveHLS
from stitcher.sinks import HLSSink
from tests.test_sinks import MAX_ERROR, H, W, gradient_frames, write_tone

FPS = 30


def decode(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data), format="mpegts") as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def live_sink(folder, audio=None) -> HLSSink:
    sink = HLSSink(folder, FPS, W, H, segment_seconds=1.0, preset="ultrafast", audio=audio,
                   live=LiveHLS(ahead=100.0, window=6, run_id="t"))
    sink.pace_in_sink = False
    return sink


@pytest.mark.parametrize("with_audio", [False, True])
def test_rewound_live_segments_are_the_bytes_of_the_new_video(tmp_path, with_audio):
    old = gradient_frames(0, 5 * FPS)
    new = gradient_frames(1000, 3 * FPS)  # other content from frame 2 s on
    audio = None
    if with_audio:  # the same audio under the new video, handed out again as it was
        tone = write_tone(tmp_path / "tone.wav", 1.7)
        audio = AudioInput(str(tone), "loop")
    sink = live_sink(tmp_path / "live", audio)
    sink.write(old)
    points = sink.rewind_points()
    # The first segment is listed at once; the later ones wait their turn, the one being
    # written (the last GOP, no next IDR yet) too.
    assert [frame for frame, _ in points] == [FPS, 2 * FPS, 3 * FPS, 4 * FPS]
    assert all(later > earlier for (_, earlier), (_, later) in zip(points, points[1:], strict=False))
    assert not sink.rewind(2 * FPS + 1)  # not a GOP boundary: nothing changes
    assert sink.rewind(2 * FPS)
    assert not (tmp_path / "live" / "live_t_000002.ts").exists()  # withdrawn, deleted
    assert [frame for frame, _ in sink.rewind_points()] == [FPS]
    sink.write(new)
    sink.close()  # lists everything queued, then ENDLIST

    reference = HLSSink(tmp_path / "ref", FPS, W, H, segment_seconds=1.0, preset="ultrafast",
                        audio=audio)
    reference.write(np.concatenate([old[:2 * FPS], new]))
    reference.close()
    playlist = (tmp_path / "live" / "stream.m3u8").read_text()
    listed = [line for line in playlist.splitlines() if line.endswith(".ts")]
    assert listed == [f"live_t_{i:06d}.ts" for i in range(5)]
    for i, name in enumerate(listed):
        live = (tmp_path / "live" / name).read_bytes()
        ref = (tmp_path / "ref" / f"seg_{i:05d}.ts").read_bytes()
        assert live == ref, name
    shown = decode((tmp_path / "live" / listed[2]).read_bytes())[0].astype(float)
    assert np.abs(shown - new[0]).mean() < MAX_ERROR < np.abs(shown - old[2 * FPS]).mean()


def test_a_listed_segment_is_never_taken_back(tmp_path):
    sink = live_sink(tmp_path)
    sink.write(gradient_frames(0, 3 * FPS))
    assert not sink.rewind(0)  # listed at once
    assert (tmp_path / "live_t_000000.ts").exists()
    sink.close()


def test_forget_after_drops_the_dropped_video_only(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    with ReplayMemory(tmp_path) as memory:
        for t in range(10):
            memory.put_keyframe(float(t), image, {"prompt": "p"})
        for k in range(6):
            memory.put_checkpoint(k, b"state %d" % k)
            memory.mark_segment_done(k, {"k": k})
        memory.forget_after(4.0, 3)
        assert memory.keyframe_times() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert [m["t"] for m in memory.metadata()] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert [k for k in range(6) if memory.get_checkpoint(k)] == [0, 1, 2, 3]
        assert sorted(memory.finished_segments()) == [0, 1, 2]
