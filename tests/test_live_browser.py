"""hls.js in headless Chromium (Debian's chromium, playwright-core from npm) plays what lvp
serves: a live `lvp stream`, and an `lvp render --hls` folder served by `lvp stream --serve
DIR` while it is written. Set up with: apt-get install -y chromium; npm install --prefix
live/web; npm install --prefix tests/browser."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]
REPO = Path(__file__).resolve().parents[1]
BROWSER = REPO / "tests" / "browser"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(autouse=True)
def npm_packages() -> None:
    """Chromium is installed, so these tests must run: missing npm packages are a failure
    (when the tests are selected), not a skip."""
    for needed, how in ((BROWSER / "node_modules" / "playwright-core",
                         "npm install --prefix tests/browser"),
                        (REPO / "live" / "web" / "node_modules" / "hls.js",
                         "npm install --prefix live/web")):
        if not needed.exists():
            pytest.fail(f"{needed.name} is missing: run `{how}`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def play(url: str, seconds: int, end_timeout: int) -> dict:
    done = subprocess.run(["node", "play.mjs", url, str(seconds), str(end_timeout)], cwd=BROWSER,
                          capture_output=True, text=True, timeout=seconds + end_timeout + 120,
                          env={**os.environ, "CHROMIUM": CHROMIUM})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def wait_for_file(path: Path, seconds: float) -> None:
    end = time.time() + seconds
    while not path.exists():
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.2)


def advance_rate(samples: list) -> float:
    """currentTime gained per wall second once playing (after the first sample above 0)."""
    playing = [(w, t) for w, t in samples if t > 0]
    assert len(playing) >= 20, samples
    (w0, t0), (w1, t1) = playing[0], playing[-1]
    return (t1 - t0) / (w1 - w0)


def test_hlsjs_plays_a_live_stream_to_its_end(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "stream", "--model", "procedural", "--prompt",
         "a red circle orbiting on a night background", "--duration", "45",
         "--hls", str(tmp_path / "hls"), "--serve", f"127.0.0.1:{port}"],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        wait_for_file(tmp_path / "hls" / "stream.m3u8", 90)
        result = play(f"http://127.0.0.1:{port}/", seconds=32, end_timeout=60)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    assert proc.returncode == 0, out
    assert result["hls"] and result["fatal"] == [], result
    assert 0.85 <= advance_rate(result["samples"]) <= 1.15, result["samples"]
    assert result["stalls"] == 0, result  # no stall a viewer sees once playing
    assert result["ended"], result  # ENDLIST reached: the player played to the end
    assert result["final_time"] > 40


def test_hlsjs_plays_a_render_folder_served_while_written(tmp_path):
    port = free_port()
    hls = tmp_path / "render_hls"
    render = subprocess.Popen(
        [sys.executable, "-m", "cli", "render", "--model", "procedural", "--executor", "local",
         "--prompt", "a green square bouncing at sunset", "--duration", "40", "--hls", str(hls),
         "--quiet", "--metrics-linger", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_file(hls / "stream.m3u8", 90)
    server = subprocess.Popen([sys.executable, "-m", "cli", "stream", "--serve", str(hls),
                               "--listen", f"127.0.0.1:{port}"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2)
        result = play(f"http://127.0.0.1:{port}/", seconds=3, end_timeout=120)
        assert render.wait(120) == 0
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
        if render.poll() is None:
            render.kill()
    assert result["fatal"] == [], result
    assert result["ended"] and result["final_time"] > 39, result
