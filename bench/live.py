"""Live-mode benchmark: time to the first listed segment, and prompt-change latency.

    python -m bench.live                      # bundled model, live preset, 10 changes
    python -m bench.live --preset hq --changes 0 --seconds 40   # the too-slow policy

It runs `lvp stream` as a user would and watches it as a player would: a client polls the
playlist every 50 ms from the moment the command is launched. For each prompt change (POST
/prompt, alternating a red and a blue subject) it records when the playlist first lists a
segment whose decoded frames show the new colour ("to the playlist"); a viewer sees it
later by the player's distance from the live edge (hls.js: 3 segments, printed). The
stream's own figure (/status: request to the listing of the segment holding the change's
keyframe) is printed beside it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import requests

from live.watch import parse_playlist

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-live-token-0123456789"
PROMPTS = {"red": "a red star spinning on a night background",
           "blue": "a blue star spinning on a night background"}
HLSJS_LIVE_SYNC_SEGMENTS = 3  # live/web/index.html: liveSyncDurationCount


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def colour_of(data: bytes) -> str:
    with av.open(io.BytesIO(data), format="mpegts") as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    pixels = np.concatenate([f.reshape(-1, 3) for f in frames]).astype(int)
    r, g, b = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    red = np.mean((r > 140) & (g < 100) & (b < 100))
    blue = np.mean((b > 140) & (r < 100) & (g < 160))
    if max(red, blue) < 0.001:
        return "?"
    return "red" if red > blue else "blue"


class Client:
    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[str, tuple[float, str]] = {}  # uri -> (listed at, colour)
        self.order: list[str] = []

    def poll(self) -> None:
        try:
            reply = requests.get(self.url + "stream.m3u8", timeout=5)
        except requests.RequestException:
            return
        if reply.status_code != 200:
            return
        now = time.time()
        for uri, _, _ in parse_playlist(reply.text).segments:
            if uri not in self.seen:
                data = requests.get(self.url + uri, timeout=5).content
                self.seen[uri] = (now, colour_of(data))
                self.order.append(uri)

    def first_listed(self) -> float | None:
        return min((t for t, _ in self.seen.values()), default=None)

    def listed_showing(self, colour: str, after: float) -> float | None:
        for uri in self.order:
            listed, seen = self.seen[uri]
            if listed >= after and seen == colour:
                return listed
        return None


def run(args: argparse.Namespace) -> dict:
    port = free_port()
    folder = Path(args.folder)
    env = {**os.environ, "LVP_STREAM_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "cli", "stream", "--prompt", PROMPTS["red"], "--hls", str(folder),
           "--serve", f"127.0.0.1:{port}", "--preset", args.preset, "--ahead", str(args.ahead),
           "--segment-seconds", str(args.segment_seconds), "--executor", args.executor]
    launched = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = Client(f"http://127.0.0.1:{port}/")
    changes: list[dict] = []
    try:
        while client.first_listed() is None:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.time() - launched < 120, "no segment in 120 s"
            client.poll()
            time.sleep(0.05)
        ttfs = client.first_listed() - launched
        want = "red"
        end = time.time() + args.seconds
        jitter = random.Random(0)
        for _ in range(args.changes):
            time.sleep(args.settle + jitter.uniform(0.0, args.settle_jitter))
            want = "blue" if want == "red" else "red"
            asked = time.time()
            reply = requests.post(client.url + "prompt", json={"prompt": PROMPTS[want]},
                                  headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
            assert reply.status_code == 202, reply.text
            shown = None
            while shown is None and time.time() - asked < 60:
                client.poll()
                shown = client.listed_showing(want, asked)
                time.sleep(0.05)
            changes.append({"to": want, "latency_to_playlist": None if shown is None else shown - asked})
            print(f"  change to {want}: {changes[-1]['latency_to_playlist']}", file=sys.stderr)
        while time.time() < end:
            client.poll()
            time.sleep(0.05)
        status = requests.get(client.url + "status", headers={"Authorization": f"Bearer {TOKEN}"},
                              timeout=5).json()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    report = json.loads(folder.with_name(folder.name + ".json").read_text())
    judged = [c["latency_to_playlist"] for c in changes if c["latency_to_playlist"] is not None]
    own = [c["latency_seconds"] for c in status.get("prompt_change_latencies", [])]
    segment = report["live"]["video_seconds_published"] / max(report["live"]["segments_published"], 1)
    return {
        "command": " ".join(cmd[2:]),
        "time_to_first_segment_seconds": round(ttfs, 2),
        "report_first_segment_listed_seconds": report["live"]["first_segment_listed_seconds"],
        "startup_seconds": report.get("startup_seconds"),
        "changes": len(changes), "changes_seen": len(judged),
        "median_change_to_playlist_seconds": statistics.median(judged) if judged else None,
        "median_change_to_keyframe_listed_seconds": statistics.median(own) if own else None,
        "player_distance_seconds": HLSJS_LIVE_SYNC_SEGMENTS * segment,
        "late_segments": report["live"]["late_segments"],
        "segments_published": report["live"]["segments_published"],
        "speed": report["live"]["speed"],
        "exit": proc.returncode,
        "stderr_tail": out.strip().splitlines()[-3:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="live")
    parser.add_argument("--executor", default="local")
    parser.add_argument("--ahead", type=float, default=2.0)
    parser.add_argument("--segment-seconds", type=int, default=2)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds between a change showing and the next one")
    parser.add_argument("--settle-jitter", type=float, default=0.0, metavar="SECONDS",
                        help="add a random 0..SECONDS to each settle (seeded): requests at any "
                             "phase of the segment cycle; with a fixed settle every request "
                             "comes at the same phase")
    parser.add_argument("--seconds", type=float, default=0.0, help="stream at least this long")
    parser.add_argument("--folder", default="/tmp/lvp-bench-live/hls")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    Path(args.folder).parent.mkdir(parents=True, exist_ok=True)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
