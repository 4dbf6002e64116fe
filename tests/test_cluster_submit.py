"""`ray job submit` to a token-authenticated cluster that this test starts (and stops)."""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
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
    proc = subprocess.run(
        [RAY, "job", "submit", "--address", address, "--", lvp, "render", "--prompt",
         "a blue star orbiting in the ocean", "--duration", "12", "--fps", "10",
         "--size", "64x64", "--workers", "2", "--quiet", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 120

    # Without the token the cluster refuses the job.
    unauthenticated = {**env, "RAY_AUTH_TOKEN": "wrong"}
    refused = subprocess.run([RAY, "job", "list", "--address", address],
                             env=unauthenticated, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
