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


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.ray
def test_soak_smoke(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "-m", "bench.soak", "--smoke", "--model", "procedural",
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["frames"] == 3600 and results["samples"] >= 5
    # The tree held Ray's processes too, and every sample summed them.
    assert results["max_processes"] > 3
    # PSS and USS both within RSS (PSS can fall a little under USS: the kernel rounds it per mapping)
    assert all(s["rss"] >= s["pss"] > 0 and s["rss"] >= s["uss"] > 0 for s in results["trace"])
    assert results["lmdb_bytes_on_disk"] > 0
    assert results["listening"] and not results["listening_not_loopback"]
    assert "growth under 50 MB" in proc.stdout


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.ray
def test_faults_smoke(tmp_path):
    out = tmp_path / "faults.json"
    proc = subprocess.run([sys.executable, "-m", "bench.faults", "--smoke", "--model",
                           "procedural", "--json", str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    (run,) = results["actors"]["runs"]
    assert run["returncode"] == 0 and run["frames_equal"]
    assert any(f["pid"] for f in run["faults"] if f["actor"] == "SegmentActor")
    # (A keyframe actor killed after Stage 1's last call restarts unseen: nothing is retried.)
    assert {r["part"] for r in run["restarts"]} >= {"stitcher"}
    driver = results["driver"]
    assert driver["frames_equal"] and 1 <= len(driver["rows"]) <= 2
    assert all(row["descendants"] > 3 for row in driver["rows"])
    assert "Actor faults" in proc.stdout and "Driver SIGKILL" in proc.stdout
