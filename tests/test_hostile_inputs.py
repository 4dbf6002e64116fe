"""Hostile inputs to `lvp render`: one line, exit 2, no traceback, no hang, no file changed.

Each case runs in-process through `cli.main.main`, like tests/test_cli_errors.py. The
validation must refuse every case: a case that gets past `spec_from_args` fails at once
(nothing renders, Ray never starts). A SIGALRM guard turns a hang (a FIFO opened, /dev/zero
read) into a failure, and every file that existed before the case (in the test folder and
the bundled weights) is byte-identical afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli.render_args
from cli.main import build_parser, main
from cli.render_args import spec_from_args
from engine.models.tiny import WEIGHTS
from engine.schedule import MAX_PROMPT_CHARS, MAX_SCHEDULE_BYTES, MAX_SCHEDULE_PROMPTS
from tests.conftest import write_mono_wav

HANG_SECONDS = 20
PROMPT = "a red circle bouncing on a night background"
SCHEDULE = "00:00 a red circle bouncing\n00:05 a blue star spinning\n"
# Characters that must never reach the terminal raw.
RAW_CONTROLS = set("\x00\x07\x08\x1b\r\x7f\x85\x9b\u2028\u202e\udcff")


class ValidationPassed(BaseException):
    """Raised when spec_from_args accepts a hostile input (BaseException: nothing catches it)."""


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Made once: a valid image and audio file (copied per test) and the big schedules."""
    folder = tmp_path_factory.mktemp("media")
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(folder / "ok.png")
    t = np.arange(8000) / 8000
    write_mono_wav(folder / "beat.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 8000)
    (folder / "huge.txt").write_text("# padding\n" * (MAX_SCHEDULE_BYTES // 10 + 1) + SCHEDULE)
    (folder / "many.txt").write_text(
        "".join(f"{k // 3600:02d}:{k // 60 % 60:02d}:{k % 60:02d} a red circle\n"
                for k in range(MAX_SCHEDULE_PROMPTS + 1)))
    return folder


@pytest.fixture
def d(tmp_path, monkeypatch, media):
    """A folder of a user's files: valid inputs, links to them, special files."""
    monkeypatch.delenv("LVP_TINY_WEIGHTS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(cli.render_args, "local_cores", lambda: 2)
    for name in ("ok.png", "beat.wav", "huge.txt", "many.txt"):
        (tmp_path / name).symlink_to(media / name)  # an input through a symlink
    (tmp_path / "story.txt").write_text(SCHEDULE)
    (tmp_path / "story.json").write_text(SCHEDULE)
    (tmp_path / "r.json.tmp").write_text(SCHEDULE)
    (tmp_path / "w.safetensors").write_bytes(b"not really weights")
    (tmp_path / "old.mp4").write_bytes(b"a video the user rendered last week")
    os.link(tmp_path / "story.txt", tmp_path / "link.txt")
    os.link(tmp_path / "old.mp4", tmp_path / "old-link.json")
    (tmp_path / "sym.txt").symlink_to(tmp_path / "story.txt")
    (tmp_path / "alias").symlink_to(tmp_path)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "sub").mkdir()
    hls = tmp_path / "hls"
    hls.mkdir()
    (hls / "stream.m3u8").write_text(SCHEDULE)  # an input that carries an HLS name
    (hls / "seg_00000.ts").write_text(SCHEDULE)
    (tmp_path / "o.lvp" / "memory.lmdb").mkdir(parents=True)
    (tmp_path / "o.lvp" / "memory.lmdb" / "story.txt").write_text(SCHEDULE)
    (tmp_path / "mine" / "memory.lmdb").mkdir(parents=True)
    (tmp_path / "mine" / "memory.lmdb" / "notes.txt").write_text("my notes")
    (tmp_path / "mine2").mkdir()
    (tmp_path / "mine2" / "memory.lmdb").write_text("a file, not a store")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "fifo-link").symlink_to(tmp_path / "fifo")
    schedules = {
        "long.txt": f"00:00 a red circle {'x' * MAX_PROMPT_CHARS}\n",
        "esc.txt": "00:00 a red circle \x1b[2J\x1b]0;pwned\x07 bouncing\n",
        "nul.txt": "00:00 a red\x00 circle\n",
        "bidi.txt": "00:00 a red circle \u202e gninnips\n",
        "blank.txt": "00:00     \n",
        "invisible.txt": "00:00 \u200b\u200b\n",
        "comments.txt": "# only a comment\n\n",
        "hours.txt": "99999999999999999999:00:00 a red circle\n",
        "minutes.txt": "00:75 a red circle\n",
    }
    for name, text in schedules.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "latin1.txt").write_bytes(b"00:00 a red \xff circle\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every regular file under the roots (special files are never opened)."""
    hashes = {}
    for root in roots:
        paths = [root] if root.is_file() else [Path(dirpath) / name
                                                for dirpath, _, names in os.walk(root)
                                                for name in names]
        for path in paths:
            if stat.S_ISREG(os.lstat(path).st_mode):
                hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _alarm(signum, frame):
    raise TimeoutError(f"lvp hung for more than {HANG_SECONDS} s")


def run_guarded(args: list[str], capsys, monkeypatch) -> tuple[int, list[str], str]:
    """`lvp ARGS` in-process under a hang guard: (exit status, stderr lines, stderr)."""
    real = cli.render_args.spec_from_args

    def refuse_to_start(ns):
        spec = real(ns)
        raise ValidationPassed(f"validation accepted a hostile input: {spec.warnings}")

    monkeypatch.setattr(cli.render_args, "spec_from_args", refuse_to_start)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err
    return code, err.strip().splitlines(), err


def render(*extra: str, out: str | None = "{d}/out.mp4", prompt: bool = True) -> list[str]:
    args = ["render", "--duration", "10"]
    if prompt and "--prompts" not in extra and "--prompt" not in extra:
        args += ["--prompt", PROMPT]
    if out is not None and "--out" not in extra:
        args += ["--out", out]
    return args + list(extra)


WEIGHTS_ENV = "LVP_TINY_WEIGHTS={d}/w.safetensors"  # a case's environment, not an argument

# (name, lvp arguments, a word the one-line message must hold)
CASES = [
    # --- an output is an input
    ("out is --audio", render("--audio", "{d}/beat.wav", "--out", "{d}/beat.wav"), "--audio"),
    ("out is --image", render("--image", "{d}/ok.png", "--out", "{d}/ok.png"), "--image"),
    ("out is --prompts", render("--prompts", "{d}/story.txt", "--out", "{d}/story.txt"),
     "--prompts"),
    ("out is --weights", render("--weights", "{d}/w.safetensors", "--out", "{d}/w.safetensors"),
     "--weights"),
    ("out is $LVP_TINY_WEIGHTS", [WEIGHTS_ENV, *render("--out", "{d}/w.safetensors")],
     "LVP_TINY_WEIGHTS"),
    ("out is the bundled weights", render("--out", str(WEIGHTS)), "bundled"),
    ("report is --prompts", render("--prompts", "{d}/story.txt", "--report", "{d}/story.txt"),
     "--report"),
    ("default report is --prompts", render("--prompts", "{d}/story.json", "--out",
                                           "{d}/story.mp4"), "run report"),
    ("report's temp file is --prompts", render("--prompts", "{d}/r.json.tmp", "--report",
                                               "{d}/r.json"), "temporary"),
    ("workdir is --prompts", render("--prompts", "{d}/story.txt", "--workdir", "{d}/story.txt"),
     "--workdir"),
    ("hls is --prompts", render("--prompts", "{d}/story.txt", "--hls", "{d}/story.txt"),
     "--hls"),
    ("out is a hard link of --prompts", render("--prompts", "{d}/story.txt", "--out",
                                               "{d}/link.txt"), "input"),
    ("out is a symlink to --prompts", render("--prompts", "{d}/story.txt", "--out",
                                             "{d}/sym.txt"), "input"),
    ("out through a symlinked folder", render("--prompts", "{d}/story.txt", "--out",
                                              "{d}/alias/story.txt"), "input"),
    ("out relative, input absolute", render("--prompts", "{d}/story.txt", "--out",
                                            "story.txt"), "input"),
    ("out with ..", render("--audio", "beat.wav", "--out", "{d}/sub/../beat.wav"), "input"),
    ("input inside the replay memory", render("--prompts", "{d}/o.lvp/memory.lmdb/story.txt",
                                              "--out", "{d}/o.mp4"), "clears"),
    ("input with an HLS name in --hls", render("--prompts", "{d}/hls/stream.m3u8", "--hls",
                                               "{d}/hls"), "HLS"),
    ("input segment name in --hls", render("--prompts", "hls/seg_00000.ts", "--hls", "hls",
                                           out=None), "HLS"),
    # --- outputs collide with each other
    ("out video.json is its report", render("--out", "{d}/video.json"), "same path"),
    ("report is out", render("--report", "{d}/out.mp4"), "same path"),
    ("out x.lvp is its workdir", render("--out", "{d}/x.lvp"), "same path"),
    ("out is the hls folder", render("--out", "{d}/new", "--hls", "{d}/new"), "same path"),
    ("report is the workdir", render("--report", "{d}/wd", "--workdir", "{d}/wd"), "same path"),
    ("report hard-linked to out", render("--out", "{d}/old.mp4", "--report",
                                         "{d}/old-link.json"), "same path"),
    ("out is the playlist", render("--hls", "{d}/hls", "--out", "{d}/hls/stream.m3u8"), "HLS"),
    ("out is a segment", render("--hls", "{d}/hls", "--out", "./hls/seg_00003.ts"), "HLS"),
    ("report is the playlist", render("--hls", "hls", "--report", "hls/stream.m3u8"), "HLS"),
    ("report is an HLS temp file", render("--hls", "hls", "--report", "hls/.x.tmp"), "HLS"),
    ("workdir inside hls", render("--hls", "{d}/hls", "--workdir", "{d}/hls/work"), "inside"),
    ("workdir is hls", render("--hls", "{d}/alias/hls", "--workdir", "{d}/hls"), "hls"),
    ("default workdir inside hls", render("--hls", "{d}/hls", "--out", "{d}/hls/v.mp4"),
     "inside"),
    ("out inside the replay memory", render("--workdir", "{d}/wd", "--out",
                                            "{d}/wd/memory.lmdb/x.mp4"), "clears"),
    ("a user folder named memory.lmdb", render("--workdir", "{d}/mine"), "not a replay memory"),
    ("memory.lmdb is a file", render("--workdir", "{d}/mine2"), "not a replay memory"),
    # --- inputs that are not regular files: refused without being opened
    ("prompts FIFO", render("--prompts", "{d}/fifo"), "FIFO"),
    ("prompts symlink to a FIFO", render("--prompts", "{d}/fifo-link"), "FIFO"),
    ("prompts /dev/zero", render("--prompts", "/dev/zero"), "device"),
    ("prompts /dev/null", render("--prompts", "/dev/null"), "device"),
    ("prompts folder", render("--prompts", "{d}/sub"), "folder"),
    ("prompts symlink loop", render("--prompts", "{d}/loop"), "cannot be read"),
    ("image FIFO", render("--image", "{d}/fifo"), "FIFO"),
    ("image /dev/zero", render("--image", "/dev/zero"), "device"),
    ("image folder", render("--image", "{d}/sub"), "folder"),
    ("audio FIFO", render("--audio", "{d}/fifo"), "FIFO"),
    ("audio /dev/zero", render("--audio", "/dev/zero"), "device"),
    ("audio /dev/null", render("--audio", "/dev/null"), "device"),
    ("audio folder", render("--audio", "{d}/sub"), "folder"),
    ("weights FIFO", render("--weights", "{d}/fifo"), "FIFO"),
    ("weights /dev/zero", render("--weights", "/dev/zero"), "device"),
    ("out is a FIFO", render("--out", "{d}/fifo"), "FIFO"),
    ("out /dev/null", render("--out", "/dev/null"), "device"),
    ("report is a FIFO", render("--report", "{d}/fifo-link"), "FIFO"),
    # --- bounded input
    ("schedule over 1 MiB", render("--prompts", "{d}/huge.txt"), "MiB"),
    ("too many prompts", render("--prompts", "{d}/many.txt"), f"{MAX_SCHEDULE_PROMPTS:,}"),
    ("long --prompt", render("--prompt", "a red circle " + "x" * MAX_PROMPT_CHARS), "limit"),
    ("long scheduled prompt", render("--prompts", "{d}/long.txt"), "limit"),
    ("hours past every limit", render("--prompts", "{d}/hours.txt"), "24 hour"),
    ("minutes over 59", render("--prompts", "{d}/minutes.txt"), "below 60"),
    # --- control characters: refused, and never echoed raw
    ("ESC in --prompt", render("--prompt", "a red circle \x1b[2J\x1b]0;pwned\x07"), "control"),
    ("CR in --prompt", render("--prompt", "a red circle\roverwritten"), "control"),
    ("newline in --prompt", render("--prompt", "a red circle\nlvp: fake line"), "control"),
    ("C1 CSI in --prompt", render("--prompt", "a red circle \x9b2J"), "control"),
    ("DEL in --prompt", render("--prompt", "a red circle\x7f"), "control"),
    ("bidi override in --prompt", render("--prompt", "a red circle \u202e"), "control"),
    ("line separator in --prompt", render("--prompt", "a red\u2028circle"), "control"),
    ("undecodable byte in --prompt", render("--prompt", "a red circle \udcff"), "undecodable"),
    ("ESC in a schedule", render("--prompts", "{d}/esc.txt"), "esc.txt:1"),
    ("NUL in a schedule", render("--prompts", "{d}/nul.txt"), "control"),
    ("bidi in a schedule", render("--prompts", "{d}/bidi.txt"), "control"),
    ("ESC in a missing path", render("--prompts", "{d}/\x1b[2Jnope.txt"), "not found"),
    ("ESC in an output path", render("--out", "{d}/\x1b]0;x\x07.mp4", "--report",
                                     "{d}/\x1b]0;x\x07.mp4"), "same path"),
    # --- empty, blank, undecodable
    ("empty --prompt", render("--prompt", ""), "empty"),
    ("blank --prompt", render("--prompt", "  \t "), "empty"),
    ("invisible --prompt", render("--prompt", "\u200b\ufeff"), "empty"),
    ("blank scheduled prompt", render("--prompts", "{d}/blank.txt"), "expected"),
    ("invisible scheduled prompt", render("--prompts", "{d}/invisible.txt"), "empty"),
    ("schedule of comments", render("--prompts", "{d}/comments.txt"), "no prompts"),
    ("schedule not UTF-8", render("--prompts", "{d}/latin1.txt"), "UTF-8"),
    # --- numbers: huge, negative, NaN, infinite
    ("seed with 400 digits", render("--seed", "1" + "0" * 400), "--seed"),
    ("negative seed", render("--seed", "-1"), "--seed"),
    ("fps 10**30", render("--fps", "1" + "0" * 30), "--fps"),
    ("fps nan", render("--fps", "nan"), "--fps"),
    ("duration 1e400", render("--duration", "1e400"), "duration"),
    ("duration nan", render("--duration", "nan"), "duration"),
    ("duration inf", render("--duration", "inf"), "duration"),
    ("duration -inf", render("--duration=-inf"), "duration"),
    ("duration with a huge clock", render("--duration", "99999999999:00:00"), "duration"),
    ("size of 20 digits", render("--size", "99999999999999999998x2"), "out of range"),
    ("negative workers", render("--workers", "-1"), "--workers"),
    ("workers 10**30", render("--workers", "1" + "0" * 30), "--workers"),
    ("workers beyond a local run", render("--workers", "1000"), "--workers"),
    ("negative overlap", render("--overlap", "-1"), "--overlap"),
    ("hls segment nan", render("--hls", "{d}/h2", "--hls-segment-seconds", "nan"),
     "--hls-segment-seconds"),
    ("hls segment inf", render("--hls", "{d}/h2", "--hls-segment-seconds", "inf"),
     "--hls-segment-seconds"),
    ("gpus nan", render("--gpus-per-worker", "nan"), "--gpus-per-worker"),
    ("gpus inf", render("--gpus-per-worker", "inf"), "--gpus-per-worker"),
    ("linger nan", render("--metrics-linger", "nan"), "--metrics-linger"),
    ("linger inf", render("--metrics-linger", "inf"), "--metrics-linger"),
    ("metrics port huge", render("--metrics-port", "99999999999"), "port"),
]


@pytest.mark.parametrize("name,argv,expect", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_exit_2_and_changes_nothing(d, media, capsys, monkeypatch,
                                                              name, argv, expect):
    args = [a.replace("{d}", str(d)) for a in argv]
    if args[0].startswith("LVP_TINY_WEIGHTS="):
        monkeypatch.setenv("LVP_TINY_WEIGHTS", args.pop(0).split("=", 1)[1])
    before = snapshot(d, media, WEIGHTS)
    code, lines, err = run_guarded(args, capsys, monkeypatch)
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("lvp"), err
    assert expect.lower() in lines[0].lower(), err
    assert not RAW_CONTROLS & set(err), repr(err)
    after = snapshot(d, media, WEIGHTS)
    assert {path: after.get(path) for path in before} == before, "a user file changed"


def test_every_class_of_the_table_is_covered():
    """The table grows by class; keep each class present."""
    names = " ".join(c[0] for c in CASES)
    for word in ("out is --audio", "hard link", "symlink", "relative", "FIFO", "/dev/zero",
                 "folder", "1 MiB", "ESC", "empty", "nan", "inf", "negative", "hls"):
        assert word in names, word


def spec_for(*argv: str):
    return spec_from_args(build_parser().parse_args(["render", "--duration", "10", *argv]))


def test_unicode_prompts_and_schedules_are_accepted(tmp_path):
    spec = spec_for("--prompt", "a red circle bouncing über café 🌙 日本語\t", "--out",
                    str(tmp_path / "o.mp4"))
    assert "🌙" in spec.schedule.texts[0]
    story = tmp_path / "story.txt"
    story.write_bytes("\ufeff# BOM and CRLF\r\n00:00 a red circle ünïcödé\r\n"
                      "00:05 a blue star 👩‍🚀\r\n".encode())
    spec = spec_for("--prompts", str(story), "--out", str(tmp_path / "o.mp4"))
    assert spec.schedule.texts == ("a red circle ünïcödé", "a blue star 👩‍🚀")
    assert len(spec_for("--prompt", "x" * MAX_PROMPT_CHARS, "--out",
                        str(tmp_path / "o.mp4")).schedule.texts[0]) == MAX_PROMPT_CHARS


def test_separate_outputs_and_an_hls_only_run_are_accepted(tmp_path):
    spec = spec_for("--prompt", PROMPT, "--out", str(tmp_path / "v.mp4"), "--hls",
                    str(tmp_path / "hls"), "--report", str(tmp_path / "hls" / "report.json"))
    assert spec.workdir == tmp_path / "v.lvp"
    spec = spec_for("--prompt", PROMPT, "--hls", str(tmp_path / "live"))
    assert spec.workdir == tmp_path / "live.lvp" and spec.report is None


def test_a_previous_replay_memory_is_reused_quietly(tmp_path):
    store = tmp_path / "v.lvp" / "memory.lmdb"
    store.mkdir(parents=True)
    (store / "data.mdb").write_bytes(b"")
    (store / "lock.mdb").write_bytes(b"")
    spec_for("--prompt", PROMPT, "--out", str(tmp_path / "v.mp4"))


def test_more_workers_than_cores_warns(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(cli.render_args, "local_cores", lambda: 2)
    spec = spec_for("--prompt", PROMPT, "--workers", "3", "--out", str(tmp_path / "o.mp4"))
    assert any("--workers 3" in w and "2 CPU" in w for w in spec.warnings), spec.warnings
    spec = spec_for("--prompt", PROMPT, "--workers", "2", "--out", str(tmp_path / "o.mp4"))
    assert not any("--workers" in w for w in spec.warnings)
    # A cluster's size is not known before joining it; the local executor has no actors.
    for extra in (["--address", "10.0.0.1:6379"], ["--executor", "local"]):
        spec = spec_for("--prompt", PROMPT, "--workers", "64", *extra, "--out",
                        str(tmp_path / "o.mp4"))
        assert not any("--workers" in w for w in spec.warnings)


def _loopback(ip: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


@pytest.mark.ray
@pytest.mark.slow
def test_a_local_ray_listens_on_loopback_only():
    """Every LISTEN socket of the Ray that a local run starts (GCS, raylet, object manager,
    workers, agents, metrics servers) is on 127.0.0.1 or ::1, never on 0.0.0.0 or a LAN IP."""
    import time

    import psutil
    import ray

    from actors.cluster import ray_init_local

    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process")
    me = psutil.Process()
    ray_init_local(1, 512 << 20)
    try:
        @ray.remote
        class Echo:
            def pid(self) -> int:
                return os.getpid()

        actor = Echo.remote()  # a worker process with its own gRPC server
        actor_pid = ray.get(actor.pid.remote(), timeout=120)
        names: set[str] = set()
        checked = 0
        deadline = time.monotonic() + 8  # agents and metrics servers start late: keep looking
        while time.monotonic() < deadline:
            pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
            assert actor_pid in pids
            for conn in psutil.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
                    checked += 1
                    with contextlib.suppress(psutil.Error):
                        names.add(psutil.Process(conn.pid).name())
                    assert _loopback(conn.laddr.ip), (conn, names)
            time.sleep(0.5)
        assert {"gcs_server", "raylet"} <= names, names  # the check saw Ray's own servers
        assert checked
    finally:
        ray.shutdown()
