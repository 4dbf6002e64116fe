"""`lvp memory` on damaged stores and odd arguments: one line, exit 2, no traceback, no hang.
Text from the store reaches the terminal with its control characters escaped."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest

from cli.main import main
from memory.replay import STORE_NAME, ReplayMemory

HANG_SECONDS = 20
EVIL = "a red circle \x1b]0;pwned\x07\x1b[2J\rfake line\x9b31m\u202e\x00 end"
RAW_CONTROLS = set("\x00\x07\x1b\r\x9b\u202e")


def make_store(workdir: Path, n: int = 3, prompt: str = EVIL) -> Path:
    rng = np.random.default_rng(0)
    with ReplayMemory(workdir) as store:
        for k in range(n):
            store.put_keyframe(5.0 * k, rng.integers(0, 256, (16, 24, 3), dtype=np.uint8),
                               {"prompt": prompt, "seed": "7\x1b[8m", "model": "tiny\x1b[31m"})
        store.mark_segment_done(0, {"frame_start": 0})
        store.put_job({"prompt": prompt})
    return workdir


def put_raw(workdir: Path, key: bytes, value: bytes) -> None:
    env = lmdb.open(str(workdir / STORE_NAME), map_size=1 << 24, subdir=True)
    with env.begin(write=True) as txn:
        txn.put(key, value)
    env.close()


def _alarm(signum, frame):
    raise TimeoutError(f"lvp memory hung for more than {HANG_SECONDS} s")


def run_memory(args: list[str], capsys) -> tuple[int, str, str]:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        try:
            code = main(["memory", *args])
        except SystemExit as exc:
            code = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


@pytest.fixture
def good(tmp_path):
    return make_store(tmp_path / "job")


def test_ls_escapes_control_characters_in_the_table(good, capsys):
    code, out, err = run_memory(["ls", str(good)], capsys)
    assert code == 0, err
    assert not RAW_CONTROLS & set(out + err), repr(out)
    assert "\\x1b]0;pwned\\x07" in out and "\\u202e" in out
    assert len(out.splitlines()) == 1 + 3 + 1  # header, 3 keyframes, summary


def test_ls_json_stays_valid_json_with_the_prompt_intact(good, capsys):
    code, out, err = run_memory(["ls", str(good), "--json"], capsys)
    assert code == 0, err
    assert not RAW_CONTROLS & set(out)
    data = json.loads(out)
    assert [k["prompt"] for k in data["keyframes"]] == [EVIL] * 3
    assert data["job"]["prompt"] == EVIL and data["finished_segments"] == [0]


def test_show_and_export_print_nothing_raw(good, tmp_path, capsys):
    code, out, err = run_memory(["show", str(good), "--at", "7", "--png",
                                 str(tmp_path / "k.png")], capsys)
    assert code == 0, err
    assert not RAW_CONTROLS & set(out + err)
    assert json.loads(out[: out.rindex("}") + 1])["t"] == 5.0
    assert (tmp_path / "k.png").read_bytes().startswith(b"\x89PNG")
    code, out, err = run_memory(["export", str(good), str(tmp_path / "frames")], capsys)
    assert code == 0, err
    assert len(list((tmp_path / "frames").glob("keyframe_*.png"))) == 3
    assert json.loads((tmp_path / "frames" / "keyframes.json").read_text())[0]["prompt"] == EVIL


def test_the_store_itself_may_be_named(good, capsys):
    code, out, err = run_memory(["ls", str(good / STORE_NAME)], capsys)
    assert code == 0 and "3 keyframes" in out, err


def _garbage(store: Path) -> None:
    data = store / STORE_NAME / "data.mdb"
    data.write_bytes(np.random.default_rng(1).bytes(data.stat().st_size))


def _truncate_half(store: Path) -> None:
    data = store / STORE_NAME / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)  # LMDB would die of SIGBUS reading past it


def _truncate_empty(store: Path) -> None:
    os.truncate(store / STORE_NAME / "data.mdb", 0)


def _overwrite_pages(store: Path) -> None:
    data = store / STORE_NAME / "data.mdb"
    with open(data, "r+b") as f:
        f.seek(2 * 4096)
        f.write(b"\xff" * (data.stat().st_size - 2 * 4096))


def _fifo_data(store: Path) -> None:
    (store / STORE_NAME / "data.mdb").unlink()
    os.mkfifo(store / STORE_NAME / "data.mdb")


def _zero_data(store: Path) -> None:
    (store / STORE_NAME / "data.mdb").unlink()
    (store / STORE_NAME / "data.mdb").symlink_to("/dev/zero")


def _no_data(store: Path) -> None:
    for f in (store / STORE_NAME).iterdir():
        f.unlink()


def _store_is_a_file(store: Path) -> None:
    for f in (store / STORE_NAME).iterdir():
        f.unlink()
    (store / STORE_NAME).rmdir()
    (store / STORE_NAME).write_text("not a store")


def _raw(key: bytes, value: bytes):
    return lambda store: put_raw(store, key, value)


DAMAGED = [
    ("garbage data.mdb", _garbage, ["ls"]),
    ("truncated data.mdb", _truncate_half, ["ls"]),
    ("truncated export", _truncate_half, ["export", "{out}"]),
    ("empty data.mdb", _truncate_empty, ["ls"]),
    ("overwritten pages", _overwrite_pages, ["ls"]),
    ("data.mdb is a FIFO", _fifo_data, ["ls"]),
    ("data.mdb is /dev/zero", _zero_data, ["ls"]),
    ("store without data.mdb", _no_data, ["ls"]),
    ("memory.lmdb is a file", _store_is_a_file, ["ls"]),
    ("bad JSON metadata", _raw(b"km/000000000000", b"{not json"), ["ls"]),
    ("metadata is a list", _raw(b"km/000000000000", b"[1, 2]"), ["ls"]),
    ("metadata time is text", _raw(b"km/000000000000", b'{"t": "soon"}'), ["ls"]),
    ("metadata time is NaN", _raw(b"km/000000000000", b'{"t": NaN}'), ["ls"]),
    ("metadata time is huge", _raw(b"km/000000000000", b'{"t": 1e308}'), ["ls"]),
    ("metadata nested too deep", _raw(b"km/000000000000", b"[" * 100_000 + b"]" * 100_000),
     ["ls"]),
    ("metadata not UTF-8", _raw(b"km/000000000000", b'{"t": 0, "prompt": "\xff"}'), ["ls"]),
    ("bad JSON job", _raw(b"job", b"{"), ["ls", "--json"]),
    ("bad ledger key", _raw(b"seg/abc", b"{}"), ["ls"]),
    ("bad keyframe key", _raw(b"km/abc", b'{"t": 0}'), ["show", "--at", "9"]),
    ("bad PNG in show", _raw(b"kf/000000000000", b"\x89PNG garbage"), ["show", "--at", "0"]),
    ("bad PNG in export", _raw(b"kf/000000005000", b"not a png"), ["export", "{out}"]),
    ("image missing", lambda s: _delete(s, b"kf/000000005000"), ["export", "{out}"]),
]


def _delete(store: Path, key: bytes) -> None:
    env = lmdb.open(str(store / STORE_NAME), map_size=1 << 24, subdir=True)
    with env.begin(write=True) as txn:
        txn.delete(key)
    env.close()


@pytest.mark.parametrize("name,damage,command", DAMAGED, ids=[c[0] for c in DAMAGED])
def test_a_damaged_store_is_one_line_and_exit_2(tmp_path, capsys, name, damage, command):
    store = make_store(tmp_path / "job")
    damage(store)
    before = digest(store)
    args = [command[0], str(store), *[a.format(out=tmp_path / "out") for a in command[1:]]]
    code, out, err = run_memory(args, capsys)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("lvp: error: ") and "replay memory" in err
    assert not RAW_CONTROLS & set(out + err)
    assert digest(store) == before  # a reader never changes the store


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


ODD = [
    ("at is text", ["show", "{job}", "--at", "soon"], "--at"),
    ("at is empty", ["show", "{job}", "--at", ""], "--at"),
    ("at is nan", ["show", "{job}", "--at", "nan"], "--at"),
    ("at is inf", ["show", "{job}", "--at", "inf"], "--at"),
    ("at is 1e400", ["show", "{job}", "--at", "1e400"], "--at"),
    ("at is negative", ["show", "{job}", "--at=-5"], "--at"),
    ("at has four fields", ["show", "{job}", "--at", "1:2:3:4"], "--at"),
    ("at has an escape", ["show", "{job}", "--at", "\x1b[2J"], "--at"),
    ("at before any keyframe", ["show", "{empty}", "--at", "3"], "no keyframe"),
    ("png into the store", ["show", "{job}", "--at", "0", "--png", "{job}/memory.lmdb/x.png"],
     "inside the replay memory"),
    ("png over data.mdb", ["show", "{job}", "--at", "0", "--png", "{job}/memory.lmdb/data.mdb"],
     "inside the replay memory"),
    ("png hard-linked to data.mdb", ["show", "{job}", "--at", "0", "--png", "{link}"],
     "inside the replay memory"),
    ("png is a FIFO", ["show", "{job}", "--at", "0", "--png", "{fifo}"], "FIFO"),
    ("png is /dev/null", ["show", "{job}", "--at", "0", "--png", "/dev/null"], "regular file"),
    ("png in a missing folder", ["show", "{job}", "--at", "0", "--png", "{tmp}/no/k.png"],
     "cannot write"),
    ("export into a file", ["export", "{job}", "{tmp}/file.txt"], "cannot create"),
    ("export into the store", ["export", "{job}", "{job}/memory.lmdb"], "inside"),
    ("ls of a missing folder", ["ls", "{tmp}/nope"], "no replay memory"),
    ("ls of a folder that is no store", ["ls", "{tmp}"], "no replay memory"),
    ("ls of a file", ["ls", "{tmp}/file.txt"], "no replay memory"),
    ("ls of a FIFO", ["ls", "{fifo}"], "no replay memory"),
    ("ls of /dev/zero", ["ls", "/dev/zero"], "no replay memory"),
    ("ls of an escape path", ["ls", "{tmp}/\x1b]0;x\x07"], "no replay memory"),
    ("ls without a folder", ["ls"], "required"),
    ("unknown subcommand", ["rm", "{job}"], "invalid choice"),
    ("show without --at", ["show", "{job}"], "--at"),
]


@pytest.mark.parametrize("name,argv,expect", ODD, ids=[c[0] for c in ODD])
def test_odd_arguments_are_one_line_and_exit_2(tmp_path, capsys, name, argv, expect):
    job = make_store(tmp_path / "job", prompt="a red circle")
    with ReplayMemory(tmp_path / "empty"):
        pass
    (tmp_path / "file.txt").write_text("just a file")
    fifo = _fifo(tmp_path / "fifo")
    os.link(job / STORE_NAME / "data.mdb", tmp_path / "link.png")
    before = digest(job)
    names = {"job": job, "empty": tmp_path / "empty", "tmp": tmp_path, "fifo": fifo,
             "link": tmp_path / "link.png"}
    code, out, err = run_memory([a.format(**names) for a in argv], capsys)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert expect.lower() in err.lower(), err
    assert not RAW_CONTROLS & set(err)
    assert digest(job) == before


@pytest.mark.subprocess
def test_a_closed_pipe_ends_quietly(tmp_path):
    """`lvp memory ls JOB | head -1`: no traceback when the reader goes away."""
    job = make_store(tmp_path / "job", n=1)
    env = lmdb.open(str(job / STORE_NAME), map_size=1 << 26, subdir=True)
    with env.begin(write=True) as txn:  # the table needs no images: metadata only
        for k in range(1, 1000):  # about 230 kB of table, far more than a pipe holds
            txn.put(b"km/%012d" % (k * 5000), json.dumps(
                {"t": k * 5.0, "width": 24, "height": 16, "prompt": "x" * 200}).encode())
    env.close()
    proc = subprocess.Popen([sys.executable, "-m", "cli", "memory", "ls", str(job)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
