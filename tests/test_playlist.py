import os
import stat

import pytest

from stitcher.playlist import LivePublisher, MediaPlaylist, write_atomic


def test_render_event_playlist():
    playlist = MediaPlaylist()
    playlist.add_segment("seg_00000.ts", 2.0)
    playlist.add_segment("seg_00001.ts", 2.0)
    playlist.add_segment("seg_00002.ts", 0.7333333)

    assert playlist.render(ended=False).splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:EVENT",
        "#EXT-X-INDEPENDENT-SEGMENTS",  # every segment starts with an IDR frame
        "#EXTINF:2.000,",
        "seg_00000.ts",
        "#EXTINF:2.000,",
        "seg_00001.ts",
        "#EXTINF:0.733,",
        "seg_00002.ts",
    ]
    ended = playlist.render(ended=True)
    assert ended.endswith("seg_00002.ts\n#EXT-X-ENDLIST\n")


@pytest.mark.parametrize(
    ("durations", "target"),
    [
        ([2.0, 2.0], 2),
        ([2.0, 2.1], 3),  # ceil, not round: every EXTINF must fit in the target
        ([0.5], 1),
        ([1.0000000001], 1),  # float noise below the written precision does not add a second
    ],
)
def test_target_duration_is_ceil_of_longest(durations, target):
    playlist = MediaPlaylist()
    for i, d in enumerate(durations):
        playlist.add_segment(f"s{i}.ts", d)
    assert f"#EXT-X-TARGETDURATION:{target}\n" in playlist.render(ended=False)


def test_target_duration_floor_keeps_value_stable():
    # A live writer announces its nominal length up front so the value never changes.
    playlist = MediaPlaylist(target_duration=4)
    assert "#EXT-X-TARGETDURATION:4\n" in playlist.render(ended=False)
    playlist.add_segment("a.ts", 1.5)
    assert "#EXT-X-TARGETDURATION:4\n" in playlist.render(ended=False)
    playlist.add_segment("b.ts", 4.5)
    assert "#EXT-X-TARGETDURATION:5\n" in playlist.render(ended=True)


@pytest.mark.parametrize(("uri", "duration"), [("", 1.0), ("a\n.ts", 1.0), ("a.ts", 0.0)])
def test_add_segment_rejects_bad_input(uri, duration):
    with pytest.raises(ValueError):
        MediaPlaylist().add_segment(uri, duration)


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "stream.m3u8"
    write_atomic(path, "one\n")
    write_atomic(path, "two\n")
    assert path.read_text() == "two\n"
    assert os.listdir(tmp_path) == ["stream.m3u8"]
    # Readable like any file a web server should serve (mkstemp would leave 0600).
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_live_window_advances_media_and_discontinuity_sequence():
    playlist = MediaPlaylist(target_duration=1, window=6)
    removed = []
    for i in range(9):
        removed += playlist.add_segment(f"s{i}.ts", 1.0, discontinuity=i in (1, 7), date=1e9 + i)
    assert [s.uri for s in removed] == ["s0.ts", "s1.ts", "s2.ts"]
    text = playlist.render(ended=False)
    lines = text.splitlines()
    assert "#EXT-X-MEDIA-SEQUENCE:3" in lines
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in lines  # s1's tag left with it
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" not in lines  # a live window is no EVENT playlist
    assert lines.count("#EXT-X-DISCONTINUITY") == 1
    assert lines.index("#EXT-X-DISCONTINUITY") < lines.index("s7.ts")
    assert [ln for ln in lines if ln.endswith(".ts")] == [f"s{i}.ts" for i in range(3, 9)]
    assert "#EXT-X-PROGRAM-DATE-TIME:2001-09-09T01:46:43.000+00:00" in lines  # s3: 1e9 + 3
    assert playlist.render(ended=True).endswith("s8.ts\n#EXT-X-ENDLIST\n")


def test_live_window_has_a_floor():
    with pytest.raises(ValueError):
        MediaPlaylist(1, window=5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _listed(path):
    return [ln for ln in path.read_text().splitlines() if ln.endswith(".ts")]


def _wait_until(predicate, seconds=5.0):
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_publisher_paces_counts_late_and_deletes_after_a_playlist_duration(tmp_path):
    clock = FakeClock()
    playlist = tmp_path / "stream.m3u8"
    pub = LivePublisher(tmp_path, playlist, target_duration=1, window=6, ahead=100.0, clock=clock)
    for i in range(3):
        (tmp_path / f"s{i}.ts").write_bytes(b"x")
        pub.submit(f"s{i}.ts", 1.0)
    assert _wait_until(lambda: playlist.exists() and _listed(playlist) == ["s0.ts"])
    clock.now += 1.0  # s1 is due
    assert _wait_until(lambda: _listed(playlist) == ["s0.ts", "s1.ts"])
    assert pub.late == 0 and pub.lag() == 0.0
    clock.now += 1.0
    assert _wait_until(lambda: len(_listed(playlist)) == 3)
    clock.now += 3.0  # nothing queued; s3 was due 1 s after s2: 2 s overdue
    assert _wait_until(lambda: abs(pub.lag() - 2.0) < 1e-6)
    for i in range(3, 10):
        (tmp_path / f"s{i}.ts").write_bytes(b"x")
    pub.submit("s3.ts", 1.0)  # late: listed at once, schedule restarts from now
    assert _wait_until(lambda: len(_listed(playlist)) == 4)
    assert pub.late == 1 and pub.late_seconds == pytest.approx(2.0)
    for i in range(4, 10):
        clock.now += 1.0
        pub.submit(f"s{i}.ts", 1.0)
        assert _wait_until(lambda i=i: _listed(playlist)[-1] == f"s{i}.ts")
    assert _listed(playlist)[0] == "s4.ts"  # s0..s3 left the window
    assert (tmp_path / "s0.ts").exists()  # still fetchable right after leaving it
    clock.now += 6.0 + 1.0 + 0.5  # a playlist duration plus a target later
    assert _wait_until(lambda: not (tmp_path / "s3.ts").exists())
    assert (tmp_path / "s4.ts").exists()
    pub.close()
    assert playlist.read_text().endswith("#EXT-X-ENDLIST\n")


def test_publisher_blocks_the_writer_beyond_ahead_and_close_flushes(tmp_path):
    import threading

    clock = FakeClock()
    playlist = tmp_path / "stream.m3u8"
    pub = LivePublisher(tmp_path, playlist, target_duration=1, window=6, ahead=2.0, clock=clock)
    done = threading.Event()

    def writer():
        for i in range(5):
            pub.submit(f"s{i}.ts", 1.0)
        done.set()

    threading.Thread(target=writer, daemon=True).start()
    assert not done.wait(0.5)  # s0 listed, s1..s3 queued: 3 s > 2 s ahead, so it waits
    for listed in (2, 3):  # s1, then s2 listed on time: s3 and s4 (2 s) fit
        clock.now += 1.0
        assert _wait_until(lambda n=listed: pub.published == n)
    assert _wait_until(done.is_set)
    assert pub.late == 0
    pub.close()
    assert _listed(playlist) == [f"s{i}.ts" for i in range(5)]  # the rest listed at close
    assert playlist.read_text().endswith("#EXT-X-ENDLIST\n")
