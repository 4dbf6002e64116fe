"""Bad input: one line naming the problem, exit status 2, before any work (and no Ray).

The cases run in-process through `cli.main.main`; one subprocess test proves that a bad
input never even imports Ray.
"""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cli.main import build_parser, main
from cli.render_args import spec_from_args

PROMPT = ["--prompt", "a red circle bouncing on a night background"]


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


def run_main(args, capsys):
    """`lvp ARGS` in this process: (exit status, stderr lines)."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


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
    ("unknown executor", ["--executor", "dask"], "--executor"),
    # Tests may run as root, which ignores permission bits: use paths no one can create.
    ("output under a file", ["--out", "{d}/notes.txt/out.mp4"], "cannot be written"),
    ("output in /proc", ["--out", "/proc/lvp-test/out.mp4"], "cannot be written"),
    ("hls in /proc", ["--hls", "/proc/lvp-test/hls"], "cannot be written"),
    ("no subject", ["--prompt", "a lovely evening", "--model", "procedural"], "no subject"),
    ("missing tiny weights", ["--model", "tiny", "--weights", "{d}/nope.safetensors"],
     "weights not found"),
    ("fps", ["--fps", "0"], "--fps"),
    ("workers", ["--workers", "0"], "--workers"),
    ("negative linger", ["--metrics-linger", "-1"], "--metrics-linger"),
    ("no output", [], "nothing to write"),
]


@pytest.mark.parametrize("name,extra,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(inputs, tmp_path, capsys, name, extra, expect):
    args = ["render", *PROMPT, "--duration", "10", "--out", str(tmp_path / "o.mp4")]
    if name == "no output":
        args = ["render", *PROMPT, "--duration", "10"]
    args += [a.format(d=inputs) for a in extra]
    code, lines = run_main(args, capsys)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert expect.lower() in lines[0].lower()
    assert not (tmp_path / "o.mp4").exists()  # no work started


def test_missing_tiny_weights_from_the_environment(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LVP_TINY_WEIGHTS", str(inputs / "nope.safetensors"))
    code, lines = run_main(["render", *PROMPT, "--duration", "10", "--out",
                            str(tmp_path / "o.mp4")], capsys)
    assert code == 2 and len(lines) == 1 and "nope.safetensors" in lines[0]


@pytest.mark.subprocess
def test_a_bad_input_in_a_fresh_process_never_imports_ray(inputs, tmp_path):
    code = ("import sys; from cli.main import main; rc = main(sys.argv[1:]); "
            "print('ray' in sys.modules, 'torch' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "render", *PROMPT, "--duration", "10",
                           "--image", str(inputs / "fake.png"), "--out", str(tmp_path / "o.mp4")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.split() == ["False", "False"]
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_help_teaches_the_vocabulary(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["render", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "bouncing" in out and "MM:SS" in out and "--workers" in out and "--executor" in out
    assert "default: tiny" in " ".join(out.split())


def test_unknown_words_warn_and_the_render_would_proceed(tmp_path):
    args = build_parser().parse_args(["render", "--prompt", "a glittering red circle",
                                      "--duration", "5", "--out", str(tmp_path / "o.mp4")])
    spec = spec_from_args(args)
    assert any("glittering" in w for w in spec.warnings), spec.warnings
    assert spec.schedule.texts == ("a glittering red circle",)


def test_weights_for_a_model_without_weights_warn(tmp_path):
    args = build_parser().parse_args(["render", *PROMPT, "--model", "procedural", "--duration",
                                      "5", "--weights", str(tmp_path / "w"), "--out",
                                      str(tmp_path / "o.mp4")])
    assert any("--weights is ignored" in w for w in spec_from_args(args).warnings)


def test_the_bundled_model_is_the_default():
    from engine.models.base import DEFAULT_BACKEND
    from engine.spec import JobSpec

    assert DEFAULT_BACKEND == "tiny"
    assert JobSpec.__dataclass_fields__["model"].default == DEFAULT_BACKEND


def test_train_refit_from_missing_weights_is_one_line_and_exit_2(tmp_path, capsys):
    code, lines = run_main(["train", "--refit-pose", str(tmp_path / "nope.safetensors"),
                            "--out", str(tmp_path / "w.safetensors")], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert "weights not found" in lines[0]
    assert not (tmp_path / "w.safetensors").exists()
