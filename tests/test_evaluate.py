"""The evaluation's own yardsticks, checked on the procedural oracle (the world itself):
a metric that the ground truth fails is a broken metric."""

import hashlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from engine.models.base import create_backend
from evaluation.evaluate import (
    EvalConfig,
    adherence,
    beat_sync,
    long_horizon,
    motion_energy,
    seams_and_flicker,
)
from evaluation.judge import Judge, validation_pictures

QUICK = EvalConfig(quick=True)


@pytest.fixture(scope="module")
def judge() -> Judge:
    return Judge()


@pytest.mark.parametrize("blur", [0.0, 1.0])
def test_judge_reads_the_world(judge, blur):
    # Pictures the judge never trained on (another seed), at the sizes, angles and softness
    # generated frames have.
    pictures, truth = validation_pictures(180, 5)
    if blur:
        pictures = [cv2.GaussianBlur(p, (0, 0), blur) for p in pictures]
    colors, shapes = judge.classify(pictures)
    assert np.mean([c == t[0] for c, t in zip(colors, truth, strict=True)]) >= 0.95
    assert np.mean([s == t[1] for s, t in zip(shapes, truth, strict=True)]) >= 0.9


def test_oracle_meets_adherence(judge):
    result = adherence(create_backend("procedural"), judge, QUICK)
    assert result["color_adherence"] >= 0.95 and result["shape_adherence"] >= 0.9


def test_oracle_dances_to_the_beat_and_not_to_shuffled_audio():
    result = beat_sync(create_backend("procedural"), QUICK)
    assert result["beat_correlation"] >= 0.5
    assert result["beat_correlation_shuffled"] <= 0.2


def test_oracle_has_no_flicker_and_clean_seams():
    result = seams_and_flicker(create_backend("procedural"), QUICK)
    assert result["background_flicker"] < 0.5
    assert result["seam_ratio"] <= 1.3


def test_oracle_keeps_its_subject_and_its_scene_over_shots(judge):
    # The world draws a prompt's scene the same every time: each returning shot matches the
    # prompt's first one exactly, memory or not.
    result = long_horizon(create_backend("procedural"), judge, QUICK, print, seconds=60.0, shots=4)
    assert result["consistency_with_memory"] >= 0.95 and result["consistency_without_memory"] >= 0.95
    assert result["return_psnr_with_memory"] > 60 and result["return_psnr_without_memory"] > 60
    assert result["memory_return_gain_db"] is None  # the oracle never reads the memory


def test_motion_energy_sees_motion():
    still = np.zeros((5, 8, 8, 3), np.uint8)
    moving = still.copy()
    moving[3, 2:4, 2:4] = 255
    assert motion_energy(still).max() == 0
    assert motion_energy(moving)[3] > 0 and motion_energy(moving)[4] > 0


@pytest.mark.subprocess
@pytest.mark.slow
def test_train_cli_writes_weights_and_manifest(tmp_path):
    out = tmp_path / "w.safetensors"
    proc = subprocess.run([sys.executable, "-m", "cli", "train", "--steps", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.stat().st_size > 1_000_000
    assert '"steps": 2' in out.with_suffix(".json").read_text()


@pytest.mark.parametrize("args,expect", [(["--minutes", "0"], "--minutes"),
                                         (["--out", "/proc/x/w.safetensors"], "cannot be written")])
@pytest.mark.subprocess
def test_train_cli_bad_input(args, expect):
    proc = subprocess.run([sys.executable, "-m", "cli", "train", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and expect in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_judge_training_writes_loadable_weights_and_manifest(tmp_path):
    from evaluation.judge import train

    out = tmp_path / "judge.safetensors"
    manifest = train(steps=2, seed=0, out=out, batch=8, log=lambda line: None)
    assert manifest["command"] == "python -m evaluation.judge --steps 2 --seed 0"
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    # The file holds the trained weights: not the initial network (the same seed, no steps).
    import torch
    from safetensors.torch import load_file

    from evaluation.judge import make_judge

    torch.manual_seed(0)  # what train() starts from
    initial = make_judge().state_dict()
    trained = load_file(str(out))
    assert trained.keys() == initial.keys()
    assert any(not torch.equal(trained[k].float(), initial[k].float()) for k in initial)
    colors, shapes = Judge(out).classify(validation_pictures(4, 1)[0])
    assert len(colors) == len(shapes) == 4


@pytest.mark.subprocess
def test_judge_cli_rejects_zero_steps():
    proc = subprocess.run([sys.executable, "-m", "evaluation.judge", "--steps", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--steps" in proc.stderr
