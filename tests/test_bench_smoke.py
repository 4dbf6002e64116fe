"""The benchmarks run (tiny inputs); how fast is the benchmark's business, not a test's."""

import json
import subprocess
import sys

import pytest


@pytest.mark.ray
def test_bench_smoke(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "bench.bench", "--smoke", "--only", "schedule",
                           "--only", "blend", "--only", "seams", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["schedule"]["parallel"]["frames"] == results["schedule"]["chain"]["frames"] > 0
    assert set(results["seams"]) == {"as_rendered", "disagreeing"}
    assert set(results["seams"]["disagreeing"]) == {"flow", "crossfade", "cut"}
    assert "Seams" in proc.stdout and "Schedule" in proc.stdout
