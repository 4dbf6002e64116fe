"""`ray job submit` to a token-authenticated cluster that this test starts (and stops)."""

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import psutil
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.subprocess, pytest.mark.slow]

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env.pop("RAY_ADDRESS", None)
    gcs, dashboard = free_port(), free_port()
    temp_dir = Path("/tmp") / f"lvp-ray-{secrets.token_hex(3)}"  # short: unix socket paths
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--port", str(gcs), "--dashboard-port",
         str(dashboard), "--dashboard-host", "127.0.0.1", "--num-cpus", "3",
         # The job agent's own HTTP port: Ray's fixed default is taken by any other Ray
         # on the machine, and then no job can be submitted.
         "--dashboard-agent-listen-port", str(free_port()),
         "--memory", str(3 << 30), "--object-store-memory", str(400 << 20),
         "--temp-dir", str(temp_dir)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", dashboard)) == 0:
                    break
            time.sleep(1)
        else:
            pytest.fail("Ray head did not come up")
        yield env, f"http://127.0.0.1:{dashboard}"
    finally:
        # Only the processes this test started: the head and its process group.
        os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)


def test_job_submit_renders_on_the_cluster(cluster, tmp_path):
    env, address = cluster
    out = tmp_path / "star.mp4"
    lvp = str(Path(sys.executable).with_name("lvp"))
    for _ in range(36):  # the head's job agent may come up well after its dashboard port
        proc = subprocess.run(
            [RAY, "job", "submit", "--address", address, "--", lvp, "render", "--prompt",
             "a blue star orbiting in the ocean", "--duration", "12", "--fps", "10",
             "--size", "64x64", "--workers", "2", "--quiet", "--out", str(out)],
            env=env, capture_output=True, text=True, timeout=300)
        if "No available agent" not in proc.stderr + proc.stdout:
            break
        time.sleep(5)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 120

    # Without the token the cluster refuses the job.
    unauthenticated = {**env, "RAY_AUTH_TOKEN": "wrong"}
    refused = subprocess.run([RAY, "job", "list", "--address", address],
                             env=unauthenticated, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0


def _wait_port(port: int, host: str = "127.0.0.1", seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"nothing listens on {host}:{port}")


@pytest.mark.parametrize(("room", "idle"), [(True, False), (False, False), (False, True)],
                         ids=["room to restart", "no room", "no room, lost while idle"])
def test_losing_a_node_mid_job_leaves_the_video_unchanged(tmp_path, room, idle):
    """A 2-node cluster on this machine (the second node on 127.0.0.2, each with its own CPUs
    and memory); the second node is killed while it renders a segment actor's share. With room
    on the head its segment actor restarts there; without, the job goes on with one worker.
    `idle`: the stitcher is stopped first, so the node dies holding renders the stitcher has not
    read yet while no render is running; the job must still notice the loss."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env.pop("RAY_ADDRESS", None)
    gcs = free_port()
    temp_dir = Path("/tmp") / f"lvp-ray-{secrets.token_hex(3)}"
    common = ["--block", "--memory", str(2 << 30), "--object-store-memory", str(300 << 20)]
    started: list[subprocess.Popen] = []

    def start(args: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen([RAY, "start", *args], env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        return proc

    try:
        # The head has room for Stage 1, the stitcher, one segment actor (and with `room` one
        # more that the lost node's actor restarts as); the second node has room for one.
        start(["--head", "--port", str(gcs), "--node-ip-address", "127.0.0.1", "--num-cpus",
               "3" if room else "2", "--temp-dir", str(temp_dir), "--include-dashboard=false",
               *common])
        _wait_port(gcs)
        worker = start(["--address", f"127.0.0.1:{gcs}", "--node-ip-address", "127.0.0.2",
                        "--num-cpus", "1", *common])
        time.sleep(8)
        lvp = str(Path(sys.executable).with_name("lvp"))
        base = [lvp, "render", "--model", "procedural", "--prompt",
                "a blue star orbiting in the ocean", "--duration", "150", "--fps", "10",
                "--size", "96x96", "--workers", "2", "--quiet"]
        ref, out = tmp_path / "ref.mp4", tmp_path / "out.mp4"
        done = subprocess.run([*base, "--executor", "local", "--out", str(ref)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        job = subprocess.Popen([*base, "--address", f"127.0.0.1:{gcs}", "--out", str(out)],
                               cwd=tmp_path, env={**env, "LVP_WORKER_TIMEOUT": "15"},
                               stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while not (out.exists() and out.stat().st_size > len(ref.read_bytes()) // 4):
            assert job.poll() is None and time.monotonic() < deadline, job.stderr.read()
            time.sleep(0.05)
        on_second = [p for p in psutil.Process(worker.pid).children(recursive=True)
                     if "ray::SegmentActor" in " ".join(p.cmdline())]
        if not on_second:  # SPREAD is Ray's best effort, not a promise
            job.kill()
            pytest.skip("Ray placed no segment actor on the second node this time")
        stitcher = None
        if idle:  # the renders in flight finish and wait, unread, on both nodes
            stitcher = next(p for p in psutil.Process(started[0].pid).children(recursive=True)
                            if "ray::StitcherActor" in " ".join(p.cmdline()))
            stitcher.suspend()
            time.sleep(5)
        try:
            # The node is gone: raylet, workers, all (Ray's workers have process groups of
            # their own, so killing the node's group would leave its actors running).
            for proc in [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
        finally:
            if stitcher is not None:
                stitcher.resume()
        try:
            _, err = job.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            job.kill()
            _, err = job.communicate()
            pytest.fail(f"the job did not finish after the node was lost: {err[-3000:]}")
        assert job.returncode == 0, err
        restarts = json.loads(out.with_suffix(".json").read_text())["restarts"]
        # The lost node's segment actor restarted (reported by its next result, or at the
        # end if it had none), or with no room anywhere was given up; nothing else restarted.
        assert {r["part"] for r in restarts} == {"segment"}, (restarts, err[-3000:])
        if not room:  # given up on, by a render that waited for it or at the end
            assert any("lost" in r["what"] for r in restarts), restarts
        assert "lvp: warning:" in err
        assert out.read_bytes() == ref.read_bytes()
    finally:
        for proc in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
