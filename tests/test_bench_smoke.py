"""The benchmarks run (tiny inputs); how fast is the benchmark's business, not a test's."""

import json
import subprocess
import sys

import pytest


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.ray
def test_bench_smoke(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "bench.bench", "--smoke", "--only", "schedule",
                           "--only", "blend", "--only", "seams", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["schedule"]["parallel"]["frames"] == results["schedule"]["chain"]["frames"] > 0
    assert set(results["seams"]) == {"as_rendered", "disagreeing_1_px", "disagreeing_3_px"}
    for rows in results["seams"].values():
        assert set(rows) == {"flow", "crossfade", "cut"}
    # Segments that agree are passed through untouched by every blend: the same figures.
    agree = results["seams"]["as_rendered"]
    assert agree["flow"] == agree["crossfade"] == agree["cut"]
    # Disagreeing segments: a hard cut keeps a visible step at the seam, the flow blend
    # spreads it out (the seam figure measures exactly that).
    three = results["seams"]["disagreeing_3_px"]
    assert three["flow"]["seam_ratio"] < three["cut"]["seam_ratio"]
    assert "Seams" in proc.stdout and "Schedule" in proc.stdout
