"""Bad input: one line naming the problem, exit status 2, quickly, and no Ray started."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

PROMPT = ["--prompt", "a red circle bouncing on a night background"]


def run_lvp(*args, cwd=None, env=None):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "actors.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env)
    return proc, time.monotonic() - start


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "notes.txt").write_text("this is not audio\n" * 50)
    (d / "fake.png").write_text("not a png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "ok.png")
    good = (d / "ok.png").read_bytes()
    (d / "truncated.png").write_bytes(good[: len(good) // 2])
    Image.new("1", (20000, 20000)).save(d / "huge.png")
    return d


CASES = [
    ("missing image", ["--image", "{d}/nope.png"], "image not found"),
    ("corrupt image", ["--image", "{d}/fake.png"], "image"),
    ("truncated image", ["--image", "{d}/truncated.png"], "image"),
    ("huge image", ["--image", "{d}/huge.png"], "too large"),
    ("text as audio", ["--audio", "{d}/notes.txt"], "audio"),
    ("duration 0", ["--duration", "0"], "duration"),
    ("duration -5", ["--duration", "-5"], "duration"),
    ("duration abc", ["--duration", "abc"], "duration"),
    ("odd size", ["--size", "255x256"], "even"),
    ("huge size", ["--size", "8000x8000"], "out of range"),
    ("unknown model", ["--model", "sora-9000"], "unknown model"),
    # Tests may run as root, which ignores permission bits: use paths no one can create.
    ("output under a file", ["--out", "{d}/notes.txt/out.mp4"], "cannot be written"),
    ("output in /proc", ["--out", "/proc/lvp-test/out.mp4"], "cannot be written"),
    ("hls in /proc", ["--hls", "/proc/lvp-test/hls"], "cannot be written"),
    ("no subject", ["--prompt", "a lovely evening", "--model", "procedural"], "no subject"),
    ("missing tiny weights", ["--model", "tiny"], "weights not found"),
    ("fps", ["--fps", "0"], "--fps"),
    ("workers", ["--workers", "0"], "--workers"),
    ("no output", [], "nothing to write"),
]


@pytest.mark.parametrize("name,extra,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(inputs, tmp_path, name, extra, expect):
    args = ["render", *PROMPT, "--duration", "10", "--out", str(tmp_path / "o.mp4")]
    args += [a.format(d=inputs) for a in extra]
    if name == "no output":
        args = ["render", *PROMPT, "--duration", "10"]
    env = {**os.environ, "LVP_TINY_WEIGHTS": str(inputs / "nope.safetensors")} \
        if name == "missing tiny weights" else None
    proc, seconds = run_lvp(*args, cwd=tmp_path, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert expect.lower() in lines[0].lower()
    assert "Traceback" not in proc.stderr
    assert seconds < 10
    assert not (tmp_path / "o.mp4").exists()  # no work started


def test_help_teaches_the_vocabulary():
    proc, _ = run_lvp("render", "--help")
    assert proc.returncode == 0
    assert "bouncing" in proc.stdout and "MM:SS" in proc.stdout and "--workers" in proc.stdout


def test_unknown_words_warn_but_render_would_proceed(tmp_path):
    # Bad fps after a valid-but-odd prompt: the prompt passes, the fps fails.
    proc, _ = run_lvp("render", "--prompt", "a glittering red circle", "--duration", "5",
                      "--fps", "99", "--out", str(tmp_path / "o.mp4"))
    assert proc.returncode == 2 and "--fps" in proc.stderr


def test_the_bundled_model_is_the_default():
    from engine.models.base import DEFAULT_BACKEND
    from engine.spec import JobSpec

    assert DEFAULT_BACKEND == "tiny"
    assert JobSpec.__dataclass_fields__["model"].default == DEFAULT_BACKEND
    proc, _ = run_lvp("render", "--help")
    assert "default: tiny" in " ".join(proc.stdout.split())


def test_train_refit_from_missing_weights_is_one_line_and_exit_2(tmp_path):
    proc, seconds = run_lvp("train", "--refit-pose", str(tmp_path / "nope.safetensors"),
                            "--out", str(tmp_path / "w.safetensors"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "weights not found" in proc.stderr and seconds < 10
    assert not (tmp_path / "w.safetensors").exists()
