"""The stream's HTTP server, with a real HTTP client: caching headers, what is served, and
who may steer."""

from __future__ import annotations

import os
import socket

import pytest
import requests

from engine.errors import InputError
from live.server import LiveServer
from stitcher.playlist import write_atomic

TOKEN = "t0ken-for-tests-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "hls"
    folder.mkdir()
    write_atomic(folder / "stream.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n")
    (folder / "live_abc123_000000.ts").write_bytes(b"\x47" * 188)
    (folder / "seg_00000.ts").write_bytes(b"\x47" * 188)
    (folder / ".stream.m3u8.1.abcd.tmp").write_text("half a playlist")
    (folder / "report.json").write_text('{"workdir": "/secret"}')
    (tmp_path / "outside.ts").write_bytes(b"secret")
    os.symlink(tmp_path / "outside.ts", folder / "seg_00001.ts")
    asked: list[str] = []

    def steer(text: str) -> list[str]:
        if not text.strip():
            raise InputError("the new prompt is empty")
        asked.append(text)
        return []

    server = LiveServer(folder, "127.0.0.1", free_port(), TOKEN, steer=steer,
                        status=lambda: {"live_lag_seconds": 0.0, "prompt": asked[-1] if asked else None})
    server.start()
    yield server, folder, asked
    server.stop()


def test_playlist_revalidates_by_content_never_by_time(served):
    server, folder, _ = served
    first = requests.get(server.url + "stream.m3u8", timeout=5)
    assert first.status_code == 200 and first.text.startswith("#EXTM3U")
    assert first.headers["Cache-Control"] == "no-cache"
    assert "Last-Modified" not in first.headers  # one-second resolution: the old stale-304 bug
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith('W/')  # strong
    assert first.headers["Access-Control-Allow-Origin"] == "*"
    same = requests.get(server.url + "stream.m3u8", headers={"If-None-Match": etag}, timeout=5)
    assert same.status_code == 304
    # Rewritten within the same second: the old validator no longer matches.
    write_atomic(folder / "stream.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-ENDLIST\n")
    fresh = requests.get(server.url + "stream.m3u8", headers={"If-None-Match": etag}, timeout=5)
    assert fresh.status_code == 200 and fresh.text.endswith("#EXT-X-ENDLIST\n")


def test_segments_are_immutable_and_only_stream_files_are_served(served):
    server, _, _ = served
    for name in ("live_abc123_000000.ts", "seg_00000.ts"):
        reply = requests.get(server.url + name, timeout=5)
        assert reply.status_code == 200 and reply.content == b"\x47" * 188
        assert "immutable" in reply.headers["Cache-Control"]
        assert reply.headers["Content-Type"] == "video/mp2t"
    for path in (".stream.m3u8.1.abcd.tmp", "report.json", "seg_00001.ts",  # symlink out
                 "../outside.ts", "%2e%2e/outside.ts", "..%2foutside.ts", "hls/stream.m3u8",
                 "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "nothing.ts"):
        reply = requests.get(server.url + path, timeout=5)
        assert reply.status_code == 404, path
        assert b"secret" not in reply.content
    with socket.create_connection(("127.0.0.1", server.port)) as raw:  # no client normalising
        raw.sendall(b"GET /../outside.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 404") and b"secret" not in answer


def test_page_plays_without_token_and_says_how_to_get_hlsjs(served, monkeypatch):
    server, _, _ = served
    page = requests.get(server.url, timeout=5)
    assert page.status_code == 200 and "stream.m3u8" in page.text and "npm install" in page.text
    monkeypatch.setenv("LVP_HLSJS", "/nonexistent/hls.min.js")
    monkeypatch.setattr("live.server.WEB", server.folder)  # no node_modules there
    missing = requests.get(server.url + "hls.min.js", timeout=5)
    assert missing.status_code == 404 and "npm install" in missing.text


def test_control_needs_the_token_and_bad_requests_get_4xx(served):
    server, _, asked = served
    url = server.url + "prompt"
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.post(url, json={"prompt": "a blue star"}, timeout=5).status_code == 401
    assert requests.post(url, json={"prompt": "a blue star"}, timeout=5,
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert requests.get(server.url + "status", timeout=5).status_code == 401
    assert asked == []
    assert requests.post(url, data=b"{not json", headers=good, timeout=5).status_code == 400
    assert requests.post(url, json=["a list"], headers=good, timeout=5).status_code == 400
    assert requests.post(url, json={"prompt": "   "}, headers=good, timeout=5).status_code == 422
    assert requests.post(url, json={"prompt": 7}, headers=good, timeout=5).status_code == 400
    huge = requests.post(url, json={"prompt": "x" * 100_000}, headers=good, timeout=5)
    assert huge.status_code == 413
    ok = requests.post(url, json={"prompt": "a blue star"}, headers=good, timeout=5)
    assert ok.status_code == 202 and ok.json()["accepted"] is True
    assert asked == ["a blue star"]
    status = requests.get(server.url + "status", headers=good, timeout=5)
    assert status.status_code == 200 and status.json()["prompt"] == "a blue star"


def test_steering_checks_prompts_like_the_command_line(tmp_path):
    from engine.live_prompts import LivePrompts
    from engine.schedule import PromptSchedule
    from live.steering import Steering

    prompts = LivePrompts(PromptSchedule.single("a red star"), tmp_path)
    steering = Steering(prompts, strict=False, say=lambda line: None)
    for bad in ("", "x" * 1001, "a red\x1b[2J star"):
        with pytest.raises(InputError):
            steering.change(bad)
    assert not prompts.has_pending()
    assert steering.change("  a blue star  ") == [] and steering.current == "a blue star"
    assert prompts.has_pending()


def test_serving_a_folder_has_no_steering(tmp_path):
    server = LiveServer(tmp_path, "127.0.0.1", free_port(), TOKEN)
    server.start()
    try:
        reply = requests.post(server.url + "prompt", json={"prompt": "a blue star"}, timeout=5,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert reply.status_code == 404
    finally:
        server.stop()


def test_server_binds_loopback_by_default_and_refuses_a_busy_port():
    from cli.stream import check_bindable, parse_address

    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address(":8080") == ("127.0.0.1", 8080)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    with pytest.raises(InputError):
        parse_address("localhost")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(InputError):
            check_bindable("127.0.0.1", busy.getsockname()[1])
