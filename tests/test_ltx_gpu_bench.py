"""bench/ltx_gpu.py, the GPU check of the ltx-video backend, on CPU: its plan of runs, the real
architecture's size (built on the meta device: no memory, no download), and a --tiny run end to
end through the real command line."""

from __future__ import annotations

import json

import pytest

from bench.ltx_gpu import Plan, plan_runs

pytest.importorskip("diffusers", reason="bench.ltx_gpu needs pip install 'lvp[diffusers]'")
pytest.importorskip("transformers", reason="bench.ltx_gpu needs pip install 'lvp[diffusers]'")


def test_actor_counts_above_the_visible_gpus_are_skipped_and_stage1_gets_a_slot():
    plans = plan_runs([1, 2, 4], visible=2, tiny=False, executor="ray")
    assert plans[0] == Plan(1, 1.0)  # 2 GPUs: one for the worker, one for Stage 1
    assert plans[1] == Plan(2, 0.5)  # no spare GPU: halves, Stage 1 shares one
    assert plans[1].gpus == 1.5
    assert plans[2].skipped == "4 segment actors need 4 GPUs, 2 visible"
    assert plan_runs([1], visible=1, tiny=False, executor="ray") == [Plan(1, 0.5)]
    assert plan_runs([1, 2], visible=0, tiny=True, executor="ray") == [Plan(1, 0.0), Plan(2, 0.0)]
    assert plan_runs([2], visible=8, tiny=False, executor="local")[0].skipped


def test_the_real_architecture_is_ltx_video_at_its_real_size():
    import torch
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from bench.ltx_gpu import T5_XXL, TRANSFORMER, VAE

    with torch.device("meta"):
        transformer = LTXVideoTransformer3DModel(**TRANSFORMER)
        vae = AutoencoderKLLTXVideo(**VAE)
        encoder = T5EncoderModel(T5Config(**T5_XXL))

    def billions(module: torch.nn.Module) -> float:
        return sum(p.numel() for p in module.parameters()) / 1e9

    assert 1.9 < billions(transformer) < 2.0  # "LTX-Video 2B"
    assert 1.2 < billions(vae) < 1.3
    assert 4.7 < billions(encoder) < 4.8  # T5 v1.1 XXL's encoder
    assert (vae.spatial_compression_ratio, vae.temporal_compression_ratio) == (32, 8)
    assert vae.config.timestep_conditioning and transformer.config.in_channels == 128


def test_tiny_run_writes_json_and_appends_a_section(tmp_path, capsys):
    from bench.ltx_gpu import main

    md = tmp_path / "RESULTS.md"
    md.write_text("# Benchmark results\n")
    out = tmp_path / "results.json"
    assert main(["--tiny", "--executor", "local", "--duration", "6", "--workdir", str(tmp_path / "w"),
                 "--record", "--results-md", str(md), "--results-json", str(out)]) == 0
    results = json.loads(out.read_text())
    (run,) = results["runs"]
    assert run["actors"] == 1 and run["frames"] == 48 and run["gpus_reserved"] == 0
    assert run["first_segment_seconds"] > 0 and run["realtime_factor"] > 0
    assert run["peak_memory_kind"] == "rss" and run["peak_segment_actor_bytes"] > 10 << 20
    assert results["machine"]["gpus"] == 0 and results["machine"]["date"]
    text = md.read_text()
    assert text.startswith("# Benchmark results\n")  # appended, never rewritten
    assert "## LTX-Video on GPUs: `python -m bench.ltx_gpu` --tiny (CPU," in text
    assert "| 1 | 0 (+0) |" in text and "| 1 | 0 (+0) |" in capsys.readouterr().out


@pytest.mark.slow
def test_tiny_run_on_ray_actors_reports_each_workers_memory(tmp_path):
    from bench.ltx_gpu import main

    out = tmp_path / "results.json"
    assert main(["--tiny", "--actors", "1,2", "--workdir", str(tmp_path / "w"), "--record",
                 "--results-md", str(tmp_path / "R.md"), "--results-json", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert [r["actors"] for r in runs] == [1, 2]
    for r in runs:
        workers = r["peak_memory_workers"]
        # One entry per worker process that rendered (the loop may give one worker them all).
        assert 1 <= len({w["worker"] for w in workers if w["stage"] == "segment"}) <= r["actors"]
        assert [w["stage"] for w in workers].count("keyframe") == 1
