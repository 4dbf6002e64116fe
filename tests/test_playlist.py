import os
import stat

import pytest

from stitcher.playlist import MediaPlaylist, write_atomic


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
