"""What each worker holds: peak memory per worker in the stats, the report and the metrics, and
the GPU arithmetic of a Ray job (segment workers plus Stage 1 for a backend that runs its
keyframes on a GPU). No GPU needed: CUDA is faked where its path is checked."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from actors.cluster import check_gpus, gpu_slots, keyframe_gpus
from cli.job import run_job
from cli.metrics import PrometheusLogger
from engine import peak_memory as peak_module
from engine.errors import InputError
from engine.peak_memory import GPU, RSS, PeakMemory, peak_memory
from engine.stats import RunTotals, SegmentRendered
from engine.timeline import BeatTrack
from tests.conftest import make_spec


def test_peak_memory_is_rss_without_cuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # a process that never imported torch
    peak = peak_memory()
    assert peak.kind == RSS and peak.bytes > 10 << 20  # this Python process holds > 10 MiB
    assert peak.process.endswith(f":{__import__('os').getpid()}")


def test_peak_memory_is_gpu_memory_once_cuda_is_initialised(monkeypatch):
    cuda = SimpleNamespace(is_initialized=lambda: True, device_count=lambda: 2,
                           max_memory_allocated=lambda i: (i + 1) << 30)
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    assert peak_memory() == PeakMemory(3 << 30, GPU, peak_module.process_name())
    # Imported but never used: no GPU memory to speak of, the RSS is what the worker holds.
    cuda.is_initialized = lambda: False
    assert peak_memory().kind == RSS


def rendered(index: int, segment: PeakMemory | None, keyframe: PeakMemory | None = None):
    return SegmentRendered(index, 10, 0.1, 0.1, 1, memory=segment, keyframe_memory=keyframe)


def test_run_totals_keep_each_workers_peak():
    totals = RunTotals(fps=10)
    a, b, stage1 = "node:1", "node:2", "node:3"
    totals.rendered(rendered(0, PeakMemory(500, GPU, a), PeakMemory(300, GPU, stage1)))
    totals.rendered(rendered(1, PeakMemory(700, GPU, b), PeakMemory(350, GPU, stage1)))
    totals.rendered(rendered(2, PeakMemory(400, GPU, a)))  # arrived late: an older, lower peak
    totals.rendered(rendered(3, None))  # a result without a figure changes nothing
    report = totals.peak_memory()
    assert report["segment_max_bytes"] == 700 and report["keyframe_max_bytes"] == 350
    assert report["workers"] == [
        {"stage": "keyframe", "worker": stage1, "kind": GPU, "bytes": 350},
        {"stage": "segment", "worker": a, "kind": GPU, "bytes": 500},
        {"stage": "segment", "worker": b, "kind": GPU, "bytes": 700},
    ]
    assert RunTotals(fps=10).peak_memory() == {"segment_max_bytes": None,
                                               "keyframe_max_bytes": None, "workers": []}


def test_report_and_metrics_show_peak_memory_per_worker(tmp_path):
    spec = make_spec(tmp_path, duration=6.0, workers=1)
    metrics = PrometheusLogger(spec.fps)
    report = run_job(spec, BeatTrack.metronome(spec.total_frames, spec.fps), executor="local",
                     loggers=[metrics])
    assert report["status"] == "ok"
    memory = report["peak_memory"]
    stages = {w["stage"] for w in memory["workers"]}
    assert stages == {"segment", "keyframe"}  # one process here: both stages in it
    assert all(w["kind"] == RSS and w["bytes"] > 10 << 20 for w in memory["workers"])
    assert memory["segment_max_bytes"] == max(w["bytes"] for w in memory["workers"]
                                              if w["stage"] == "segment")
    worker = memory["workers"][0]["worker"]
    value = metrics.registry.get_sample_value(
        "lvp_peak_memory_bytes", {"stage": "segment", "worker": worker, "kind": RSS})
    assert value == memory["segment_max_bytes"]


def test_gpu_slots_follow_rays_packing():
    assert gpu_slots(1, 1) == 1 and gpu_slots(4, 1) == 4 and gpu_slots(0, 1) == 0
    assert gpu_slots(1, 0.5) == 2 and gpu_slots(2, 0.3) == 6  # a share never spans two GPUs
    assert gpu_slots(8, 2) == 4 and gpu_slots(3, 2) == 1


def test_stage1_takes_a_gpu_only_for_backends_that_run_keyframes_on_one():
    assert keyframe_gpus("ltx-video", 1.0) == 1.0
    assert keyframe_gpus("ltx-video", 0.0) == 0.0  # no GPUs asked for: Stage 1 on CPU as before
    assert keyframe_gpus("tiny", 1.0) == 0.0 and keyframe_gpus("procedural", 0.5) == 0.0


def test_a_cluster_without_gpus_for_workers_and_stage1_is_one_line():
    check_gpus(4, 1.0, 1.0, [4.0, 4.0], driver_gpus=4.0)  # 5 of 8: fits
    check_gpus(2, 0.0, 0.0, [], driver_gpus=0.0)  # a CPU job asks nothing
    check_gpus(1, 0.5, 0.5, [1.0], driver_gpus=1.0)  # one GPU: Stage 1 and one worker share it
    check_gpus(4, 1.0, 0.0, [4.0], driver_gpus=4.0)  # no GPU for Stage 1: four workers fit
    with pytest.raises(InputError) as caught:
        check_gpus(4, 1.0, 1.0, [4.0], driver_gpus=4.0)
    message = str(caught.value)
    assert "\n" not in message
    assert "needs 5 actors of 1 GPU (4 segment worker(s) + 1 for Stage 1, 5 GPUs)" in message
    assert "the cluster has 4 GPUs (room for 4)" in message
    with pytest.raises(InputError, match="Stage 1 of this model runs on a GPU .* has 0 GPU"):
        check_gpus(1, 1.0, 1.0, [0.0, 8.0], driver_gpus=0.0)
    with pytest.raises(InputError, match="no node of the cluster has that many GPUs"):
        check_gpus(1, 2.0, 0.0, [1.0, 1.0], driver_gpus=1.0)
    with pytest.raises(InputError, match="room for 2"):
        check_gpus(2, 0.5, 0.5, [1.0], driver_gpus=1.0)  # three halves on one GPU
