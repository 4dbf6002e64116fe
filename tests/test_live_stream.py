"""`lvp stream` end to end, as its viewers and its steerer see it: a real HTTP client polls
the live playlist while the stream runs, decodes what it lists, changes the prompt and judges
the subject's colour in the decoded frames; then Ctrl-C."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import requests

from live.watch import parse_playlist

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]
REPO = Path(__file__).resolve().parents[1]
TOKEN = "stream-test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_stream(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "LVP_STREAM_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "stream", "--hls", str(tmp_path / "hls"),
         "--serve", f"127.0.0.1:{port}", *extra],
        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    return proc, f"http://127.0.0.1:{port}/"


def decode(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data), format="mpegts") as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def colour(frames: list[np.ndarray]) -> str:
    """Which saturated subject the frames show: 'red', 'blue' or '?'."""
    pixels = np.concatenate([f.reshape(-1, 3) for f in frames]).astype(int)
    r, g, b = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    red = np.mean((r > 150) & (g < 90) & (b < 90))
    blue = np.mean((b > 150) & (r < 90) & (g < 150))
    if max(red, blue) < 0.002:
        return "?"
    return "red" if red > blue else "blue"


class Poller:
    """GETs the playlist every 75 ms and checks every rule a player relies on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.errors: list[str] = []
        self.segments: dict[str, tuple[float, str]] = {}  # uri -> (video start, colour)
        self.video = 0.0
        self.sequence = -1
        self.target: int | None = None
        self.removed: dict[str, float] = {}  # uri -> wall time it left the playlist
        self.refetched: set[str] = set()
        self.ended = False
        self.listed_at: dict[str, float] = {}
        self.data: dict[str, bytes] = {}  # every listed segment as fetched
        self._listed: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.075):
            with contextlib.suppress(requests.RequestException):  # not up yet / gone
                self.poll()

    def poll(self) -> None:
        reply = requests.get(self.url + "stream.m3u8", timeout=5)
        if reply.status_code == 404:
            return
        text = reply.text
        listing = parse_playlist(text)
        target = int(next(ln for ln in text.splitlines() if ln.startswith("#EXT-X-TARGETDURATION:"))
                     .split(":")[1])
        if self.target is None:
            self.target = target
        if target != self.target:
            self.errors.append(f"TARGETDURATION changed {self.target} -> {target}")
        if listing.media_sequence < self.sequence:
            self.errors.append(f"MEDIA-SEQUENCE went back {self.sequence} -> {listing.media_sequence}")
        self.sequence = listing.media_sequence
        uris = [u for u, _, _ in listing.segments]
        for uri, duration, _ in listing.segments:
            if duration > target:
                self.errors.append(f"{uri}: EXTINF {duration} over TARGETDURATION {target}")
            if uri.startswith(".") or uri.endswith(".tmp") or "/" in uri:
                self.errors.append(f"listed a non-segment {uri}")
            if uri not in self.segments:
                got = requests.get(self.url + uri, timeout=5)
                if got.status_code != 200:
                    self.errors.append(f"{uri}: HTTP {got.status_code}")
                    continue
                try:
                    frames = decode(got.content)
                except av.error.FFmpegError as exc:
                    self.errors.append(f"{uri} ({len(got.content)} bytes) does not decode: {exc}")
                    frames = []
                if not frames:
                    self.errors.append(f"{uri}: no frames")
                self.data[uri] = got.content
                self.listed_at[uri] = time.time()  # before `segments`, which the test watches
                self.segments[uri] = (self.video, colour(frames))
                self.video += duration
        now = time.time()
        for uri in self._listed:
            if uri not in uris:
                self.removed.setdefault(uri, now)
        self._listed = uris
        playlist_seconds = sum(d for _, d, _ in listing.segments)
        for uri, when in self.removed.items():
            # A removed segment stays fetchable for a playlist duration after it left.
            if uri not in self.refetched and now - when > 0.9 * playlist_seconds:
                if requests.get(self.url + uri, timeout=5).status_code != 200:
                    self.errors.append(f"{uri} gone {now - when:.1f} s after leaving the playlist")
                self.refetched.add(uri)
        self.ended = listing.ended

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


def wait_for(predicate, seconds: float) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_live_stream_polled_steered_and_stopped(tmp_path):
    proc, url = start_stream(tmp_path, "--model", "procedural", "--prompt",
                             "a red square resting on a night background", "--ahead", "1",
                             "--window", "6")
    poller = Poller(url)
    poller.thread.start()
    try:
        assert wait_for(lambda: len(poller.segments) >= 3, 90), "no segments listed"
        # Who may steer, and what may be fetched.
        assert requests.post(url + "prompt", json={"prompt": "a blue square"}, timeout=5).status_code == 401
        for path in ("../hls.lvp/live_prompts.json", "%2e%2e/hls.json", ".stream.m3u8.tmp"):
            assert requests.get(url + path, timeout=5).status_code == 404
        assert all(c == "red" for _, c in poller.segments.values())
        edge = poller.video  # published video when the change is asked
        asked = time.time()
        reply = requests.post(url + "prompt", timeout=5, headers={"Authorization": f"Bearer {TOKEN}"},
                              json={"prompt": "a blue square resting on a night background"})
        assert reply.status_code == 202
        assert wait_for(lambda: any(c == "blue" for _, c in poller.segments.values()), 60)
        first_blue = min(start for start, c in poller.segments.values() if c == "blue")
        blue_uri = next(u for u, (start, _) in poller.segments.items() if start == first_blue)
        # It lands within the look-ahead: --ahead, the segments in flight, Stage 1's context.
        assert first_blue - edge <= 10.0, (edge, first_blue)
        print(f"prompt change: {poller.listed_at[blue_uri] - asked:.1f} s to the playlist")
        # No jump back: every segment after the first blue one is blue (resting subject).
        assert all(c == "blue" for start, c in poller.segments.values() if start > first_blue)
        # Long enough for segments to leave the window and be fetched again.
        assert wait_for(lambda: len(poller.refetched) >= 2, 60)
        status = requests.get(url + "status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert status.json()["prompt"] == "a blue square resting on a night background"
        metrics = requests.get(url + "metrics", timeout=5).text
        for name in ("lvp_live_lag_seconds", "lvp_live_segments_published_total",
                     "lvp_live_late_segments_total", "lvp_live_prompt_change_latency_seconds_count"):
            assert name in metrics
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        poller.stop()
    assert proc.returncode == 130, out
    final = (tmp_path / "hls" / "stream.m3u8").read_text()  # the server is gone with lvp
    assert parse_playlist(final).ended  # ENDLIST after Ctrl-C
    assert poller.errors == []
    report = json.loads((tmp_path / "hls.json").read_text())
    assert report["status"] == "interrupted"
    # The report lists the segments the stream made, not the day its timeline could run.
    made = report["frames"] / (2 * report["fps"])
    assert abs(len(report["segments"]) - made) <= 2, (len(report["segments"]), made)
    assert report["keyframe_times"][-1] <= report["segments"][-1]["t1"]
    change = report["live"]["prompt_changes"][0]
    assert change["text"] == "a blue square resting on a night background"
    assert change["video_time"] == int(change["video_time"])  # at a keyframe
    assert report["live"]["prompt_change_latencies"][0]["latency_seconds"] > 0
    schedule = (tmp_path / "hls.lvp" / "live_prompts.txt").read_text().splitlines()
    assert schedule[1].endswith(" a blue square resting on a night background")
    # The HLS folder publishes only the stream.
    names = os.listdir(tmp_path / "hls")
    assert all(n == "stream.m3u8" or (n.startswith("live_") and n.endswith(".ts")) for n in names)

    # The record replays the session: lvp render --prompts of it makes the same frames (the
    # segments still on disk; the last one was cut short by Ctrl-C).
    replay = tmp_path / "replay"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "render", "--model", "procedural", "--executor", "local",
         "--prompts", str(tmp_path / "hls.lvp" / "live_prompts.txt"), "--preset", "live",
         "--segment-seconds", "2", "--duration", str(int(report["live"]["video_seconds_published"])),
         "--hls", str(replay), "--quiet", "--metrics-linger", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    kept = sorted(n for n in names if n.endswith(".ts"))[:-1]
    assert len(kept) >= 4
    for name in kept:
        index = int(name.rsplit("_", 1)[1].split(".")[0])
        live = decode((tmp_path / "hls" / name).read_bytes())
        rendered = decode((replay / f"seg_{index:05d}.ts").read_bytes())
        assert len(live) == len(rendered) and all(
            np.array_equal(a, b) for a, b in zip(live, rendered, strict=True)), name


RED = "a red square resting on a night background"
BLUE = "a blue square resting on a night background"


def made_seconds(folder: Path) -> int:
    """Video in complete segment files (listed or waiting their turn): 1 s segments."""
    names = os.listdir(folder) if folder.is_dir() else []
    indices = [int(n.rsplit("_", 1)[1].split(".")[0]) for n in names
               if n.startswith("live_") and n.endswith(".ts")]
    return max(indices, default=-1) + 1


@pytest.mark.parametrize("with_audio", [False, True])
def test_a_prompt_change_takes_back_unlisted_video_and_replays_exactly(tmp_path, with_audio):
    """With 10 s held back, a prompt change lands inside video that was already made when it
    was asked: segments not listed yet are dropped and made again. (Before, it could land
    only after all of it, plus the look-ahead keyframes.) What viewers got is still exactly
    what `lvp render --prompts` of the record makes, and so is the replay memory; with an
    audio track too (its packets are muxed again as they were)."""
    audio = []
    if with_audio:
        from tests.test_sinks import write_tone

        audio = ["--audio", str(write_tone(tmp_path / "tone.wav", 7.3))]
    proc, url = start_stream(tmp_path, "--model", "procedural", "--prompt", RED, "--ahead", "10",
                             "--window", "16", "--duration", "30", *audio)  # the end lists 10 s
    hls = tmp_path / "hls"
    poller = Poller(url)
    poller.thread.start()
    made_when_asked = []
    try:
        for text, want in ((BLUE, "blue"), (RED, "red")):
            assert wait_for(lambda: made_seconds(hls) - poller.video >= 9, 60), "no look-ahead"
            made_when_asked.append(made_seconds(hls))
            listed = len(poller.segments)
            proc.stdin.write(text + "\n")
            proc.stdin.flush()
            def shown(want=want, listed=listed) -> bool:
                return any(c == want for _, c in list(poller.segments.values())[listed:])

            assert wait_for(shown, 60), f"{want} never listed"
        assert wait_for(lambda: poller.ended, 90), "no ENDLIST"
        proc.send_signal(signal.SIGINT)  # ends the linger
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        poller.stop()
    assert proc.returncode == 0, out
    assert poller.errors == []
    report = json.loads((tmp_path / "hls.json").read_text())
    assert report["status"] == "ok" and report["frames"] == 30 * 30
    changes = [c for c in report["live"]["prompt_changes"] if not c["superseded"]]
    assert [c["text"] for c in changes] == [BLUE, RED]
    for change, made in zip(changes, made_when_asked, strict=True):
        assert change["video_time"] < made, (change, made)
    # The colours follow the record (1 s segments: the one before a change may be mixed).
    starts = [c["video_time"] for c in changes]
    for start, shown in poller.segments.values():
        expect = "blue" if starts[0] + 1 <= start < starts[1] - 1 else \
            "red" if start < starts[0] - 1 or start >= starts[1] + 1 else None
        assert expect in (None, shown), (start, shown, starts)

    replay = tmp_path / "replay"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "render", "--model", "procedural", "--executor", "local",
         "--prompts", str(tmp_path / "hls.lvp" / "live_prompts.txt"), "--preset", "live",
         "--segment-seconds", "2", "--duration", "30", "--hls", str(replay), "--quiet",
         "--metrics-linger", "0", *audio], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(poller.data) == 30
    for name, data in poller.data.items():
        index = int(name.rsplit("_", 1)[1].split(".")[0])
        assert data == (replay / f"seg_{index:05d}.ts").read_bytes(), name
    from memory.replay import ReplayMemory

    with ReplayMemory(tmp_path / "hls.lvp", readonly=True) as live, \
            ReplayMemory(tmp_path / "replay.lvp", readonly=True) as rendered:
        assert live.keyframe_times() == rendered.keyframe_times()
        assert list(live.metadata()) == list(rendered.metadata())
        for t in live.keyframe_times():
            assert np.array_equal(live.get_keyframe(t).image, rendered.get_keyframe(t).image), t


def test_stream_input_errors_are_one_line_and_exit_2(tmp_path):
    for args in (["--prompt", ""], ["--prompt", "a red star", "--serve", "1.2.3.4:99999"],
                 ["--serve", str(tmp_path / "missing")], ["--prompt", "a red star", "--window", "3"],
                 ["--prompt", "a red star", "--duration", "-5"]):
        done = subprocess.run([sys.executable, "-m", "cli", "stream", "--hls", str(tmp_path / "h"),
                               *args], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
