"""The scaling benchmark and its GPU-like backend run end to end (tiny inputs; not a measurement)."""

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.subprocess]


def test_scaling_benchmark_smoke(tmp_path):
    out = tmp_path / "scaling.json"
    done = subprocess.run([sys.executable, "-m", "bench.scaling", "--smoke", "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["runs"]) == {"1", "2"} and results["chain"]["workers"] == 2
    for row in results["runs"].values():
        assert row["throughput"] > 0 and 0 < row["efficiency"] <= 1.5


def test_the_gpu_like_backend_is_a_plug_in_not_a_listed_model():
    from cli.main import build_parser
    from engine.models.base import available_backends

    assert available_backends()["gpu-like"] == "bench.gpu_like:GpuLikeBackend"
    help_text = build_parser().format_help() + " ".join(
        a.help or "" for a in build_parser()._subparsers._group_actions[0].choices["render"]._actions)
    assert "gpu-like" not in help_text
