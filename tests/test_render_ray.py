"""End to end with real Ray actors, a real LMDB file, real encodes decoded again."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import av
import numpy as np
import psutil
import pytest
import ray

from actors.cluster import ray_init_local
from cli.job import run_job
from cli.metrics import PrometheusLogger
from engine.audio_input import beat_envelope
from engine.timeline import BeatTrack
from memory.replay import ReplayMemory
from tests.conftest import make_spec, write_mono_wav

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    ray_init_local(workers=2, object_store_bytes=512 << 20)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def beat_wav(tmp_path_factory):
    """3 s of clicks at 2 Hz over a quiet tone, as a WAV file."""
    path = tmp_path_factory.mktemp("audio") / "beat.wav"
    rate = 44100
    t = np.arange(3 * rate) / rate
    signal_ = 0.05 * np.sin(2 * np.pi * 220 * t)
    for k in range(6):
        i = int(k * 0.5 * rate)
        signal_[i:i + 400] += np.hanning(800)[400:] * 0.8
    return write_mono_wav(path, signal_, rate)


def decode_video(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    return frames, rate


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_workers_1_and_2_give_identical_video_with_audio_hls_memory_and_metrics(
        local_ray, tmp_path, beat_wav):
    results = {}
    for workers in (1, 2):
        d = tmp_path / f"w{workers}"
        spec = make_spec(d, duration=12.0, fps=10, width=64, height=64, workers=workers,
                         prompt="a pink star dancing on the ocean", audio=beat_wav,
                         hls=d / "hls", hls_segment_seconds=2.0, out=d / "out.mp4",
                         workdir=d / "work")
        d.mkdir()
        beats = BeatTrack.from_envelope(
            beat_envelope(beat_wav, spec.fps, spec.total_frames, mode="loop"), spec.fps)
        metrics = PrometheusLogger(spec.fps)
        port = free_port()
        metrics.serve(port)
        try:
            report = run_job(spec, beats, loggers=[metrics])
            # A real HTTP scrape after the last segment: the metrics agree with the report.
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        finally:
            metrics.stop()
        text = body.decode()
        assert f"lvp_frames_total {float(report['frames'])}" in text
        assert report["frames"] == spec.total_frames
        assert "lvp_segments_total 3.0" in text
        assert "lvp_segments_in_flight 0.0" in text
        assert f"lvp_keyframes_total {float(len(report['keyframe_times']))}" in text
        assert report["keyframes_made"] == len(report["keyframe_times"]) == 13
        for stage in report["stage_seconds"]:  # the report's stage names, also in the metrics
            assert f'lvp_stage_seconds_count{{stage="{stage}"}} 3.0' in text
        # The workers encoded their segments and blended the two overlaps between them.
        assert report["stage_seconds"]["segment_blend"] > 0
        temporal = report["temporal"]
        assert "lvp_seam_ratio_count 2.0" in text and len(temporal["seams"]) == 2
        assert metric(text, "lvp_worst_seam_ratio") == pytest.approx(temporal["worst_seam_ratio"])
        assert metric(text, "lvp_keyframe_step_ratio") == pytest.approx(temporal["keyframe_step_ratio"])
        results[workers] = (spec, report)

    # The same loop in this process, without Ray (lvp render --executor local).
    d = tmp_path / "local"
    d.mkdir()
    local = replace(results[1][0], out=d / "out.mp4", hls=d / "hls", workdir=d / "work")
    local_report = run_job(local, beats, executor="local")
    assert local_report["status"] == "ok" and local_report["keyframes_made"] == 13

    spec, report = results[2]
    frames1, _ = decode_video(results[1][0].out)
    frames2, rate = decode_video(spec.out)
    assert frames2.shape == (120, 64, 64, 3) and rate == 10
    assert np.array_equal(frames1, frames2)
    assert np.array_equal(decode_video(local.out)[0], frames2)

    with av.open(str(spec.out)) as container:
        audio = container.streams.audio[0]
        audio_seconds = sum(f.samples for f in container.decode(audio)) / audio.rate
    assert audio_seconds == pytest.approx(12.0, abs=0.1)  # 3 s of audio looped to 12 s

    playlist = (spec.hls / "stream.m3u8").read_text()
    assert "#EXT-X-ENDLIST" in playlist and "#EXT-X-TARGETDURATION:2" in playlist
    hls_frames, _ = decode_video(spec.hls / "stream.m3u8")
    assert len(hls_frames) == 120

    on_disk = json.loads(spec.out.with_suffix(".json").read_text())
    assert on_disk["frames"] == 120 and on_disk["status"] == "ok"
    assert on_disk["keyframe_times"][:3] == [0.0, 1.0, 2.0] and on_disk["workers"] == 2
    assert [s["frame_start"] for s in on_disk["segments"]] == [0, 48, 98]
    assert set(on_disk["stage_seconds"]) == {"keyframe", "render", "blend", "encode",
                                             "segment_encode", "segment_blend"}

    with ReplayMemory(spec.workdir, readonly=True) as store:
        assert store.keyframe_times() == [0.0, 5.0, 10.0]
        assert sorted(store.finished_segments()) == [0, 1, 2]
        assert store.job()["seed"] == spec.seed


@pytest.mark.subprocess
@pytest.mark.slow
def test_memory_commands(local_ray, tmp_path):
    spec = make_spec(tmp_path, duration=11.0, workers=2)
    run_job(spec, BeatTrack.metronome(spec.total_frames, spec.fps))
    cli = [sys.executable, "-m", "cli", "memory"]
    ls = subprocess.run([*cli, "ls", str(spec.workdir)], capture_output=True, text=True)
    assert ls.returncode == 0 and "00:00:05" in ls.stdout and "3 keyframes" in ls.stdout
    show = subprocess.run([*cli, "show", str(spec.workdir), "--at", "00:00:07",
                           "--png", str(tmp_path / "k.png")], capture_output=True, text=True)
    assert show.returncode == 0 and json.loads(show.stdout.split("\nsaved")[0])["t"] == 5.0
    assert (tmp_path / "k.png").stat().st_size > 100
    export = subprocess.run([*cli, "export", str(spec.workdir), str(tmp_path / "png")],
                            capture_output=True, text=True)
    assert export.returncode == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 3
    missing = subprocess.run([*cli, "ls", str(tmp_path / "nothing")], capture_output=True,
                             text=True)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


@pytest.mark.subprocess
@pytest.mark.slow
def test_sigkill_half_way_leaves_a_playable_mp4(tmp_path):
    out = tmp_path / "killed.mp4"
    cmd = [sys.executable, "-m", "cli", "render", "--prompt",
           "a green triangle orbiting in a meadow", "--duration", "600", "--fps", "10",
           "--size", "64x64", "--workers", "1", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 60_000):
            time.sleep(0.5)
        assert out.exists() and out.stat().st_size >= 60_000, "render never got going"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
        proc.wait(30)
    frames, _ = decode_video(out)
    assert 20 <= len(frames) < 6000
    assert frames.std() > 5  # real pictures, not an empty decode


def scrape(port):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the scrape")


@pytest.mark.subprocess
@pytest.mark.slow
def test_report_and_metrics_agree_with_a_clock_outside_the_process(tmp_path):
    """Times in the report count from launch, as a user timing the command sees them, and the
    metrics endpoint outlives the job so a scraper reads the final values."""
    port = free_port()
    out, hls = tmp_path / "clock.mp4", tmp_path / "hls"
    cmd = [sys.executable, "-m", "cli", "render", "--prompt", "a red circle orbiting at night",
           "--model", "procedural", "--duration", "12", "--fps", "10", "--size", "64x64",
           "--workers", "1", "--quiet", "--out", str(out), "--hls", str(hls),
           "--metrics-port", str(port), "--metrics-linger", "20"]
    launched = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first_ts = report_seen = None
    try:
        deadline = launched + 180
        while time.monotonic() < deadline and report_seen is None:
            if first_ts is None and any(hls.glob("*.ts")):
                first_ts = time.monotonic() - launched
            if out.with_suffix(".json").exists():
                report_seen = time.monotonic() - launched
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        assert report_seen is not None, "no report"
        text = scrape(port)  # after the job: the linger keeps the endpoint up
    finally:
        proc.terminate()
        proc.wait(30)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["status"] == "ok" and report["frames"] == 120
    assert metric(text, "lvp_frames_total") == report["frames"]
    assert metric(text, "lvp_segments_in_flight") == 0
    assert metric(text, "lvp_keyframes_total") == len(report["keyframe_times"]) == 13
    # The report's clock starts at launch: its wall time is what the outside clock saw.
    assert 0.8 * report_seen - 1.0 <= report["wall_seconds"] <= report_seen + 0.5
    assert 0 < report["startup_seconds"] < report["first_segment_seconds"] < report["wall_seconds"]
    assert first_ts is not None
    assert abs(report["first_segment_seconds"] - first_ts) < max(2.0, 0.25 * first_ts)
    assert report["realtime_factor"] == pytest.approx(12.0 / report["wall_seconds"])


@pytest.mark.subprocess
def test_the_report_clock_starts_with_lvp_not_with_the_shell_that_execs_it(tmp_path):
    """`bash -c "setup && lvp render ..."` runs lvp by exec in the shell's own process, which
    has lived through the setup: those seconds are not lvp's."""
    out = tmp_path / "exec.mp4"
    render = shlex.join([sys.executable, "-m", "cli", "render", "--prompt", "a red circle at night",
                         "--model", "procedural", "--duration", "4", "--fps", "10", "--size",
                         "64x64", "--executor", "local", "--quiet", "--out", str(out)])
    began = time.monotonic()
    proc = subprocess.run(["bash", "-c", f"sleep 4 && exec {render}"], capture_output=True,
                          text=True, timeout=120)
    total = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert 0 < report["wall_seconds"] <= total - 4 + 0.2, (report["wall_seconds"], total)
    assert report["startup_seconds"] < report["wall_seconds"]


@pytest.mark.slow
def test_tiny_model_renders_the_same_frames_on_ray_and_in_process(local_ray, tmp_path):
    """Both executors run the same stage objects with the same thread count: same frames."""
    from engine.models.tiny import TinyBackend

    weights = TinyBackend.test_config(tmp_path).weights
    frames = {}
    for executor in ("ray", "local"):
        d = tmp_path / executor
        d.mkdir()
        spec = make_spec(d, model="tiny", weights=weights, duration=11.0, workers=2,
                         prompt="a pink star dancing on the ocean")
        report = run_job(spec, BeatTrack.metronome(spec.total_frames, spec.fps), executor=executor)
        assert report["status"] == "ok"
        frames[executor], _ = decode_video(spec.out)
    assert frames["ray"].shape == (110, 64, 64, 3)
    assert np.array_equal(frames["ray"], frames["local"])


def test_a_stitcher_killed_while_finishing_the_files_is_replaced(local_ray, tmp_path, monkeypatch):
    """The stitcher dies after the last segment, before the MP4's last fragment and the
    playlist's end are written: a new one reopens the outputs where whole, the loop makes the
    missing end again, and both outputs equal an uninterrupted run's."""
    import actors.ray_executor as ray_executor

    class KillsItsStitcherOnce(ray_executor.RayExecutor):
        def _close_outputs(self) -> int:
            if not kills:
                kills.append(self.stitcher)
                # A real death: SIGKILL to the actor's process, waited for.
                process = psutil.Process(ray.get(self.stitcher.__ray_call__.remote(
                    lambda _: os.getpid())))
                process.kill()
                process.wait(timeout=30)
            return super()._close_outputs()

    kills: list = []
    specs = {}
    for name in ("ref", "killed"):
        d = tmp_path / name
        d.mkdir()
        specs[name] = make_spec(d, duration=12.0, hls=d / "hls", hls_segment_seconds=2.0)
        if name == "killed":
            monkeypatch.setattr(ray_executor, "RayExecutor", KillsItsStitcherOnce)
        report = run_job(specs[name], BeatTrack.metronome(specs[name].total_frames, 10))
        assert report["status"] == "ok" and report["frames"] == 120
    assert len(kills) == 1
    restarts = report["restarts"]
    assert [r["part"] for r in restarts] == ["stitcher"], restarts
    assert "reopened" in restarts[0]["what"]
    ref, killed = specs["ref"], specs["killed"]
    assert killed.out.read_bytes() == ref.out.read_bytes()
    assert (killed.hls / "stream.m3u8").read_text() == (ref.hls / "stream.m3u8").read_text()
    assert "#EXT-X-ENDLIST" in (killed.hls / "stream.m3u8").read_text()
