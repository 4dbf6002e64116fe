"""The live soak benchmark runs (`python -m bench.live_soak --smoke`: 75 s of `lvp stream`
played by hls.js in headless Chromium). Whether its targets are met is the benchmark's
business; this checks that it measures: samples from both the player and lvp, a player that
played, and no fatal error. Set up as tests/test_live_browser.py: apt-get install -y
chromium; npm install --prefix live/web; npm install --prefix tests/browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.subprocess, pytest.mark.shipped_model]
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


def test_live_soak_smoke(tmp_path: Path) -> None:
    # Chromium is installed, so this must run: missing npm packages fail, not skip.
    for needed, how in ((REPO / "tests" / "browser" / "node_modules" / "playwright-core",
                         "npm install --prefix tests/browser"),
                        (REPO / "live" / "web" / "node_modules" / "hls.js",
                         "npm install --prefix live/web")):
        if not needed.exists():
            pytest.fail(f"{needed.name} is missing: run `{how}`")
    out = tmp_path / "live_soak.json"
    proc = subprocess.run([sys.executable, "-m", "bench.live_soak", "--smoke", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "CHROMIUM": CHROMIUM})
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    result = json.loads(out.read_text())
    summary = result["summary"]
    # Samples from lvp's side: /metrics read, the folder measured, memory sampled.
    assert len(result["lvp_samples"]) >= 30, summary
    assert any("lvp_live_lag_seconds" in s for s in result["lvp_samples"]), result["lvp_samples"][-1]
    assert max(s["files"] for s in result["lvp_samples"]) > 0
    assert len(result["memory_samples"]) >= 10
    assert result["segments"], "the playlist was never read"
    # ... and from the player's.
    player = result["player_samples"]
    assert len(player) >= 10, result["player_end"]
    assert result["player_end"] is not None, result["player_log_tail"]
    playing = [s["ct"] for s in player if s["ct"] > 0]
    assert playing and playing[-1] - playing[0] > 30, player  # currentTime advanced
    assert summary["player"]["fatal"] == [], summary["player"]
    assert all(s["fatal"] == [] for s in player), player[-1]
    assert summary["lvp_exit_status"] == 0, result["lvp_log_tail"]
    # Every target is judged, met or not, and the printed summary says so.
    assert len(summary["targets"]) == 4
    assert proc.stdout.count("target ") == 4 and "Live soak:" in proc.stdout
