"""Interrupted renders resume to the video an uninterrupted run makes; faults do not change it.

Real processes killed with SIGKILL, real Ray actors killed mid-run, real MP4 files decoded again.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import psutil
import pytest

from memory.replay import ReplayMemory
from stitcher.audio_track import AudioInput
from stitcher.resume import committed_frames, complete_length, resume_backup
from stitcher.sinks import FragmentedMP4Sink
from tests.conftest import write_mono_wav

PROMPT = "a red circle orbiting on a night background"


@pytest.fixture(scope="module")
def beat_wav(tmp_path_factory) -> Path:
    t = np.arange(2 * 44100) / 44100
    return write_mono_wav(tmp_path_factory.mktemp("audio") / "tone.wav",
                          0.2 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 2 * t)), 44100)


def lvp(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", "render", "--model", "procedural", "--prompt", PROMPT,
            "--quiet", *args]


def job(out: Path, duration: int = 40, *extra: str) -> list[str]:
    return lvp("--duration", str(duration), "--fps", "10", "--size", "64x64", "--out", str(out),
               *extra)


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def report(out: Path) -> dict:
    return json.loads(out.with_suffix(".json").read_text())


def kill_when(proc: subprocess.Popen, path: Path, size: int, timeout: float = 240) -> None:
    """SIGKILL `proc` once `path` has grown past `size` bytes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.stat().st_size > size:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{path} never grew past {size} bytes before the render ended")


# The MP4 sink on its own --------------------------------------------------------------------

def _frames(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.integers(0, 24, (n, 48, 64, 3), dtype=np.uint8)
    return np.cumsum(steps, axis=0, dtype=np.uint8)


def test_mp4_continued_from_its_complete_fragments_is_the_uninterrupted_file(tmp_path, beat_wav):
    frames = _frames(95)
    audio = AudioInput(str(beat_wav), "loop")
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    with FragmentedMP4Sink(whole, 10, 64, 48, audio=audio, gop_seconds=1.0) as sink:
        sink.write(frames)
    with FragmentedMP4Sink(cut, 10, 64, 48, audio=audio, gop_seconds=1.0) as sink:
        sink.write(frames[:73])
    data = cut.read_bytes()
    cut.write_bytes(data[: complete_length(cut) - 100])  # killed in the middle of a fragment
    held = committed_frames(cut)
    assert held == 70
    with FragmentedMP4Sink(cut, 10, 64, 48, audio=audio, gop_seconds=1.0, continue_at=held) as sink:
        sink.write(frames[held:])
    assert cut.read_bytes() == whole.read_bytes()  # video and audio, byte for byte
    assert not resume_backup(cut).exists()


def test_a_resume_cut_short_itself_starts_again_from_the_first_file(tmp_path):
    frames = _frames(60, seed=1)
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    with FragmentedMP4Sink(whole, 10, 64, 48) as sink:
        sink.write(frames)
    with FragmentedMP4Sink(cut, 10, 64, 48) as sink:
        sink.write(frames[:45])
    held = committed_frames(cut) // 10 * 10
    # The resume sets the old file aside, copies it, and dies before finishing a fragment.
    os.replace(cut, resume_backup(cut))
    cut.write_bytes(b"\x00\x00\x00\x18ftypisom")
    assert committed_frames(resume_backup(cut)) // 10 * 10 == held == 40
    with FragmentedMP4Sink(cut, 10, 64, 48, continue_at=held) as sink:
        sink.write(frames[held:])
    assert cut.read_bytes() == whole.read_bytes()


# Whole renders -----------------------------------------------------------------------------

@pytest.mark.subprocess
def test_a_killed_render_resumes_to_the_same_video(tmp_path):
    ref, out = tmp_path / "ref.mp4", tmp_path / "out.mp4"
    assert run(job(ref, 40, "--executor", "local"), tmp_path).returncode == 0
    proc = subprocess.Popen(job(out, 40, "--executor", "local"), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, out, size=len(ref.read_bytes()) // 3)
    again = run(job(out, 40, "--executor", "local"), tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resuming this job at frame" in again.stderr
    first = report(out)
    assert first["status"] == "ok" and first["frames"] == 400
    assert 0 < first["resumed_from_frame"] < 400 and first["frames_this_run"] < 400
    assert out.read_bytes() == ref.read_bytes()
    assert np.array_equal(decode(out), decode(ref))
    # Once whole, the same command has nothing left to do.
    done = run(job(out, 40, "--executor", "local"), tmp_path)
    assert done.returncode == 0 and "nothing to do" in done.stderr
    # A run killed after its last fragment but before its report: the rerun writes one.
    out.with_suffix(".json").unlink()
    done = run(job(out, 40, "--executor", "local"), tmp_path)
    assert done.returncode == 0 and "nothing to do" in done.stderr
    assert report(out)["status"] == "ok" and report(out)["frames"] == 400
    assert report(out)["frames_this_run"] == 0


def written_segments(workdir: Path) -> int:
    """Segments the ledger records as written (it may lag the outputs, never lead them)."""
    with ReplayMemory(workdir, readonly=True) as store:
        done = store.finished_segments()
    return max(done, default=-1) + 1


@pytest.mark.subprocess
def test_a_resume_renders_again_only_what_was_in_flight(tmp_path):
    ref, out = tmp_path / "ref.mp4", tmp_path / "out.mp4"
    assert run(job(ref, 40, "--executor", "local"), tmp_path).returncode == 0
    size = len(ref.read_bytes())
    for fraction in (0.25, 0.45, 0.65):  # each leaves a few segments: never finished first
        proc = subprocess.Popen(job(out, 40, "--executor", "local"), cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill_when(proc, out, size=int(size * fraction))
        written = written_segments(tmp_path / "out.lvp")
        again = subprocess.Popen(job(out, 40, "--executor", "local"), cwd=tmp_path,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = again.stderr.readline()
        first = int(re.search(r"rendering from segment (\d+)", line).group(1))
        # Every segment the ledger has seen written is carried over: none is made again
        # (without the carry, the one holding the resume frame and the one before it were).
        assert first >= written > 0, line
        again.kill()
        again.wait()
    final = run(job(out, 40, "--executor", "local"), tmp_path)
    assert final.returncode == 0, final.stderr
    assert out.read_bytes() == ref.read_bytes()
    assert report(out)["segments_rendered"] < 8


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 600 KB tmpfs: a real full disk (ENOSPC), which a test can then make bigger."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.subprocess
def test_a_full_disk_is_one_line_and_the_job_resumes_once_there_is_room(tmp_path, small_disk):
    ref, out = tmp_path / "ref.mp4", small_disk / "out.mp4"
    assert run(job(ref, 40, "--executor", "local"), tmp_path).returncode == 0
    full = run(job(out, 40, "--executor", "local"), small_disk)
    assert full.returncode == 1
    assert full.stderr.count("\n") == 1 and "No space left on device" in full.stderr
    assert "Traceback" not in full.stderr
    assert not [p for p in small_disk.rglob("*") if p.name.endswith(".tmp")]
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    again = run(job(out, 40, "--executor", "local"), small_disk)
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == ref.read_bytes()


@pytest.mark.subprocess
def test_ctrl_c_twice_still_finishes_the_files_and_the_report(tmp_path):
    ref, out = tmp_path / "ref.mp4", tmp_path / "out.mp4"
    # Long enough that the render is still running when the signals come, on a slow machine.
    assert run(job(ref, 120, "--executor", "local"), tmp_path).returncode == 0
    # A shell runs background jobs with SIGINT ignored, and Python keeps an ignored SIGINT:
    # give the render the default disposition, as a terminal's foreground job has.
    proc = subprocess.Popen(job(out, 120, "--executor", "local"), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while not (out.exists() and out.stat().st_size > len(ref.read_bytes()) // 5):
        assert proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert report(out)["status"] == "interrupted" and "Traceback" not in err
    held = decode(out)
    whole = len(held) // 10 * 10  # the last GOP was cut short by the stop: encoded alone
    assert 0 < len(held) < 1200 and np.array_equal(held[:whole], decode(ref)[:whole])
    assert run(job(out, 120, "--executor", "local"), tmp_path).returncode == 0
    assert out.read_bytes() == ref.read_bytes()


@pytest.mark.subprocess
def test_another_job_or_a_foreign_file_is_never_overwritten(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the user's own video")
    refused = run(job(out, 5, "--executor", "local"), tmp_path)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"the user's own video"

    assert run(job(out, 5, "--executor", "local", "--overwrite"), tmp_path).returncode == 0
    other = run(job(out, 6, "--executor", "local"), tmp_path)  # another job, same outputs
    assert other.returncode == 2 and "holds another job" in other.stderr
    assert "duration" in other.stderr
    fresh = tmp_path / "fresh.mp4"
    nothing = run(job(fresh, 5, "--executor", "local", "--resume"), tmp_path)
    assert nothing.returncode == 2 and "no interrupted job" in nothing.stderr
    assert not fresh.exists()


@pytest.mark.subprocess
def test_one_render_per_workdir_at_a_time(tmp_path):
    out = tmp_path / "out.mp4"
    workdir = tmp_path / "out.lvp"
    workdir.mkdir()
    with open(workdir / "lvp.lock", "w") as held:
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = run(job(out, 5, "--executor", "local"), tmp_path)
    assert busy.returncode == 2 and "pid 4242" in busy.stderr and not out.exists()
    assert run(job(out, 5, "--executor", "local"), tmp_path).returncode == 0  # lock released


@pytest.mark.subprocess
def test_a_cluster_that_is_not_there_is_an_error_not_a_wait(tmp_path):
    start = time.monotonic()
    result = run(job(tmp_path / "out.mp4", 5, "--address", "127.0.0.1:9"), tmp_path, timeout=60)
    assert result.returncode == 2 and "no Ray cluster answers" in result.stderr
    assert time.monotonic() - start < 30


@pytest.mark.ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_gpus_the_cluster_lacks_are_an_error_not_a_wait(tmp_path):
    result = run(job(tmp_path / "out.mp4", 5, "--gpus-per-worker", "1"), tmp_path, timeout=120)
    assert result.returncode == 2 and "--gpus-per-worker" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # Ray's own token notice, then ours


def _kill_actor(proc: subprocess.Popen, name: str) -> bool:
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if child.cmdline() and name in child.cmdline()[0]:
                child.kill()
                return True
        except psutil.NoSuchProcess:
            continue
    return False


@pytest.mark.ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_killed_actors_and_a_killed_driver_leave_the_video_unchanged(tmp_path):
    """Kill the stitcher, the keyframe actor and a segment actor during one Ray render, then
    SIGKILL the driver of a second one and run it again: both videos equal the fault-free one."""
    args = ("--duration", "150", "--fps", "10", "--size", "96x96", "--workers", "2")
    ref, out, killed = tmp_path / "ref.mp4", tmp_path / "out.mp4", tmp_path / "killed.mp4"
    base = lvp(*args)
    assert run([*base, "--out", str(ref)], tmp_path).returncode == 0
    full = len(ref.read_bytes())

    proc = subprocess.Popen([*base, "--out", str(out)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    victims = ["ray::StitcherActor", "ray::KeyframeActor", "ray::SegmentActor"]
    while victims and proc.poll() is None:
        grown = out.exists() and out.stat().st_size > full * (4 - len(victims)) // 5
        if grown and _kill_actor(proc, victims[0]):
            victims.pop(0)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and not victims, err
    faults = report(out)["restarts"]
    assert {f["part"] for f in faults} == {"stitcher", "keyframe", "segment"}, faults
    assert sum("warning" in line for line in err.splitlines()) == 3
    assert out.read_bytes() == ref.read_bytes()

    proc = subprocess.Popen([*base, "--out", str(killed)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, killed, size=full // 2)
    again = run([*base, "--out", str(killed)], tmp_path)
    assert again.returncode == 0, again.stderr
    assert report(killed)["resumed_from_frame"] > 0
    assert killed.read_bytes() == ref.read_bytes()


@pytest.mark.subprocess
def test_a_killed_render_with_hls_resumes_both_outputs(tmp_path):
    """MP4 and HLS with audio: the resumed playlist lists the kept segments and continues them;
    both outputs end up as the uninterrupted run's, byte for byte."""
    wav = write_mono_wav(tmp_path / "tone.wav",
                         0.2 * np.sin(2 * np.pi * 440 * np.arange(3 * 44100) / 44100), 44100)

    def both(name: str) -> list[str]:
        return job(tmp_path / f"{name}.mp4", 40, "--executor", "local", "--hls",
                   str(tmp_path / f"{name}_hls"), "--audio", str(wav))

    assert run(both("ref"), tmp_path).returncode == 0
    proc = subprocess.Popen(both("out"), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    playlist = tmp_path / "out_hls" / "stream.m3u8"
    deadline = time.monotonic() + 120
    while not (playlist.exists() and playlist.read_text().count("#EXTINF") >= 5):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = run(both("out"), tmp_path)
    assert again.returncode == 0, again.stderr
    assert report(tmp_path / "out.mp4")["resumed_from_frame"] >= 100
    assert (tmp_path / "out.mp4").read_bytes() == (tmp_path / "ref.mp4").read_bytes()
    ref_hls, out_hls = tmp_path / "ref_hls", tmp_path / "out_hls"
    assert (out_hls / "stream.m3u8").read_text() == (ref_hls / "stream.m3u8").read_text()
    for segment in sorted(ref_hls.glob("*.ts")):
        assert (out_hls / segment.name).read_bytes() == segment.read_bytes(), segment.name
    assert sorted(p.name for p in out_hls.iterdir()) == sorted(p.name for p in ref_hls.iterdir())


@pytest.mark.subprocess
def test_a_full_replay_memory_is_one_line_and_resumes_with_a_larger_map(tmp_path):
    ref, out = tmp_path / "ref.mp4", tmp_path / "out.mp4"
    assert run(job(ref, 40, "--executor", "local"), tmp_path).returncode == 0
    small = {**os.environ, "LVP_MEMORY_GIB": "0.0001"}  # about 100 KB: full mid-job
    full = subprocess.run(job(out, 40, "--executor", "local"), cwd=tmp_path, env=small,
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 1 and full.stderr.count("\n") == 1, full.stderr
    assert "replay memory" in full.stderr and "LVP_MEMORY_GIB" in full.stderr
    again = subprocess.run(job(out, 40, "--executor", "local"), cwd=tmp_path,
                           env={**os.environ, "LVP_MEMORY_GIB": "1"},
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming this job" in again.stderr
    assert out.read_bytes() == ref.read_bytes()
