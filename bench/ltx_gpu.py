"""GPU check of the ltx-video backend: LTX-Video's real architecture at its real size, random weights.

    python -m bench.ltx_gpu                    # on a machine with GPUs: 1, 2 and 4 segment actors
    python -m bench.ltx_gpu --record           # also append the figures to bench/RESULTS.md
    python -m bench.ltx_gpu --tiny             # CPU, tiny test components: checks the script runs

Builds LTX-Video 0.9.5's components with random weights (nothing is downloaded): the 2B
transformer (diffusers' default LTXVideoTransformer3DModel config: 28 layers, 32 heads of 64,
128 latent channels), the 0.9.5 VAE (32x spatial and 8x temporal compression, timestep-
conditioned decoder; the config diffusers' convert_ltx_to_diffusers.py writes for 0.9.5) and a
T5 v1.1 XXL encoder (google/t5-v1_1-xxl's config: 24 layers, d_model 4096, gated GELU), saved in
bfloat16 as a diffusers pipeline folder on local disk (about 16 GB). The tokenizer is the test
suite's small T5 tokenizer built in code: prompts are padded to the real 128 tokens, so the
encoder's work is the real one. Random weights make noise, not video, but the compute per step,
the memory and the data moved are the real model's.

Then, for 1, 2 and 4 segment actors, it runs the real command line,
    lvp render --model ltx-video --weights FOLDER --workers N --gpus-per-worker G ...
and reads its run report: time to the first segment (from launch, model loading included),
frames per second per GPU, the real-time factor, and the peak GPU memory of each actor (the
report's `peak_memory`). Stage 1 of ltx-video runs on a GPU too, so N actors need N + 1 GPU
slots: with N + 1 GPUs visible each actor has a GPU to itself (G = 1); with exactly N, actors
take half a GPU (G = 0.5) and Stage 1 shares one; counts above the visible GPUs are skipped, and
the results say so. Writes the figures as JSON (in the work folder, and to
bench/ltx_gpu_results.json with --record) and prints a markdown table; --record appends it to
bench/RESULTS.md under a new section naming the machine (GPU, driver, date).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROMPT = "a red circle bouncing on a night background"
RESULTS_MD = REPO / "bench" / "RESULTS.md"
RESULTS_JSON = REPO / "bench" / "ltx_gpu_results.json"
GiB = 2**30

# LTX-Video 0.9.5 (2B), as diffusers builds it. The transformer is diffusers' default config.
TRANSFORMER: dict[str, Any] = {
    "in_channels": 128, "out_channels": 128, "patch_size": 1, "patch_size_t": 1,
    "num_attention_heads": 32, "attention_head_dim": 64, "cross_attention_dim": 2048,
    "num_layers": 28, "activation_fn": "gelu-approximate", "qk_norm": "rms_norm_across_heads",
    "norm_elementwise_affine": False, "norm_eps": 1e-6, "caption_channels": 4096,
    "attention_bias": True, "attention_out_bias": True,
}
VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 128,
    "block_out_channels": (128, 256, 512, 1024, 2048),
    "down_block_types": ("LTXVideo095DownBlock3D",) * 4,
    "decoder_block_out_channels": (256, 512, 1024),
    "layers_per_block": (4, 6, 6, 2, 2), "decoder_layers_per_block": (5, 5, 5, 5),
    "spatio_temporal_scaling": (True,) * 4, "decoder_spatio_temporal_scaling": (True,) * 3,
    "decoder_inject_noise": (False,) * 4,
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_residual": (True,) * 3, "upsample_factor": (2,) * 3, "timestep_conditioning": True,
    "patch_size": 4, "patch_size_t": 1, "resnet_norm_eps": 1e-6, "scaling_factor": 1.0,
    "encoder_causal": True, "decoder_causal": False, "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
}
T5_XXL: dict[str, Any] = {  # google/t5-v1_1-xxl, the encoder half
    "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24,
    "num_heads": 64, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
}
SCHEDULER: dict[str, Any] = {  # as in Lightricks' diffusers folders (our sampler keeps its own)
    "use_dynamic_shifting": True, "base_shift": 0.95, "max_shift": 2.05,
    "base_image_seq_len": 1024, "max_image_seq_len": 4096, "shift_terminal": 0.1,
}
MAX_TOKENS = 128  # LTX-Video's prompt length


def build_real_folder(folder: Path, steps: int | None = None) -> dict[str, int]:
    """Write (once) LTX-Video's components at real size with random bfloat16 weights to `folder`;
    returns the parameter count of each. Initialised on the GPU when there is one (minutes less
    than on CPU), saved from CPU memory."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    from engine.models.ltx.testing import tiny_tokenizer

    params_file = folder / "lvp-bench-params.json"
    if (folder / "model_index.json").is_file() and params_file.is_file():
        write_settings(folder, steps)
        return json.loads(params_file.read_text())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)

    def make(build):  # one at a time: fp32 on the device, then bf16 in CPU memory
        with torch.device(device):
            module = build()
        module = module.to(device="cpu", dtype=torch.bfloat16).eval()
        if device == "cuda":
            torch.cuda.empty_cache()
        return module

    parts = {
        "transformer": make(lambda: LTXVideoTransformer3DModel(**TRANSFORMER)),
        "vae": make(lambda: AutoencoderKLLTXVideo(**VAE)),
        "text_encoder": make(lambda: T5EncoderModel(T5Config(**T5_XXL))),
    }
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}
    pipe = LTXConditionPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER),
                                tokenizer=tiny_tokenizer(MAX_TOKENS), **parts)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    pipe.save_pretrained(str(partial), max_shard_size="5GB")
    params_file = partial / params_file.name
    params_file.write_text(json.dumps(params) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    write_settings(folder, steps)
    return params


def write_settings(folder: Path, steps: int | None) -> None:
    """lvp-ltx.json: the backend's defaults (30 steps, guidance 3) unless --steps is given."""
    from engine.models.ltx.weights import SETTINGS_FILE

    path = folder / SETTINGS_FILE
    if steps is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps({"steps": steps}) + "\n")


def build_tiny_folder(folder: Path) -> dict[str, int]:
    from diffusers import LTXConditionPipeline

    from engine.models.ltx.testing import save_tiny_pipeline

    save_tiny_pipeline(folder)
    pipe = LTXConditionPipeline.from_pretrained(str(folder))
    return {name: sum(p.numel() for p in getattr(pipe, name).parameters())
            for name in ("transformer", "vae", "text_encoder")}


def machine(tiny: bool) -> dict[str, Any]:
    """What ran it: GPU name and count, driver, CUDA, torch, CPUs, memory, date."""
    import psutil
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    driver = None
    if gpus and shutil.which("nvidia-smi"):
        found = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, check=False)
        driver = found.stdout.strip().splitlines()[0] if found.returncode == 0 and found.stdout else None
    return {
        "gpu": torch.cuda.get_device_name(0) if gpus else None,
        "gpus": gpus,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / GiB, 1) if gpus else None,
        "driver": driver,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GiB, 1),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
        "mode": "tiny components on CPU (a smoke run, not GPU figures)" if tiny else "real size",
    }


@dataclass(frozen=True)
class Plan:
    actors: int
    gpus_per_worker: float
    skipped: str | None = None  # why it was not run

    @property
    def gpus(self) -> float:
        """GPUs the job reserves: the segment actors' and Stage 1's (ltx-video runs it on one)."""
        return (self.actors + 1) * self.gpus_per_worker


def plan_runs(counts: list[int], visible: int, tiny: bool, executor: str,
              gpus_per_worker: float | None = None) -> list[Plan]:
    """Each actor count with its GPU share, or the reason it is skipped."""
    plans = []
    for n in counts:
        if executor == "local" and n > 1:
            plans.append(Plan(n, 0.0, "the local executor runs one worker"))
        elif tiny:
            plans.append(Plan(n, 0.0))  # CPU workers: no GPU reserved
        elif n > visible:
            plans.append(Plan(n, 0.0, f"{n} segment actors need {n} GPUs, {visible} visible"))
        elif gpus_per_worker is not None:
            plans.append(Plan(n, gpus_per_worker))
        else:  # Stage 1 needs a slot too: a GPU each when there is one spare, else halves
            plans.append(Plan(n, 1.0 if n + 1 <= visible else 0.5))
    return plans


def render(work: Path, weights: Path, plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    """One real `lvp render` subprocess; returns its run report."""
    name = f"actors{plan.actors}"
    out = work / f"{name}.mp4"
    cmd = [sys.executable, "-m", "cli", "render", "--model", "ltx-video", "--weights", str(weights),
           "--prompt", args.prompt, "--duration", str(args.duration), "--size", args.size,
           "--fps", str(args.fps), "--seed", "0", "--workers", str(plan.actors),
           "--gpus-per-worker", f"{plan.gpus_per_worker:g}", "--executor", args.executor,
           "--out", str(out), "--report", str(work / f"{name}.json"), "--quiet", "--overwrite"]
    # Each actor loads ~16 GB before it answers: more than lvp's default 60 s wait may pass.
    env = {**os.environ, "LVP_START_TIMEOUT": os.environ.get("LVP_START_TIMEOUT", "900")}
    started = time.time()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=args.timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: lvp render failed ({done.returncode}): "
                           f"{done.stderr.strip()[-800:]}")
    report = json.loads((work / f"{name}.json").read_text())
    report["outside_seconds"] = time.time() - started  # incl. the interpreter's own start
    return report


def figures(plan: Plan, report: dict[str, Any]) -> dict[str, Any]:
    """The run's figures from its report."""
    frames = report["frames_this_run"]
    loop = report.get("loop_seconds") or report["wall_seconds"]
    render_seconds = report["stage_seconds"]["render"]
    memory = report.get("peak_memory") or {}
    kinds = sorted({w["kind"] for w in memory.get("workers", [])})
    return {
        "actors": plan.actors,
        "gpus_per_worker": plan.gpus_per_worker,
        "gpus_reserved": plan.gpus,
        "frames": frames,
        "video_seconds": frames / report["fps"],
        "wall_seconds": report["wall_seconds"],
        "startup_seconds": report["startup_seconds"],
        "first_segment_seconds": report["first_segment_seconds"],
        "realtime_factor": report["realtime_factor"],
        "steady_realtime_factor": report["steady_realtime_factor"],
        # Output frames per second of the loop (models loaded), per GPU the job reserved.
        "fps_per_gpu": frames / loop / plan.gpus if plan.gpus else None,
        # One segment actor's own speed: output frames per second of its model's time.
        "fps_per_segment_actor": frames / render_seconds if render_seconds else None,
        "keyframe_seconds": report["stage_seconds"]["keyframe"],
        "render_seconds": render_seconds,
        "encode_seconds": report["stage_seconds"]["blend"] + report["stage_seconds"]["encode"],
        "peak_memory_kind": "/".join(kinds) or None,
        "peak_segment_actor_bytes": memory.get("segment_max_bytes"),
        "peak_keyframe_actor_bytes": memory.get("keyframe_max_bytes"),
        "peak_memory_workers": memory.get("workers", []),
    }


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / GiB:.2f}"


def markdown(results: dict[str, Any]) -> str:
    m, job = results["machine"], results["job"]
    gpu = f"{m['gpus']} x {m['gpu']} ({m['gpu_memory_gib']} GiB)" if m["gpus"] else "no GPU"
    title = (f"## LTX-Video on GPUs: `python -m bench.ltx_gpu`{' --tiny' if results['tiny'] else ''} "
             f"({m['gpu'] or 'CPU'}, {m['date']})")
    params = ", ".join(f"{k} {v / 1e9:.2f} B" if v > 1e8 else f"{k} {v / 1e3:.0f} k"
                       for k, v in results["params"].items())
    lines = [
        title, "",
        f"**Machine:** {gpu}, driver {m['driver'] or '-'}, CUDA {m['cuda'] or '-'}, torch {m['torch']}, "
        f"{m['cpus']} CPUs, {m['memory_gib']} GiB memory ({m['platform']}); {m['mode']}.",
        "",
        f"**Job:** {job['duration']:g} s of video at {job['size']}@{job['fps']}, "
        f"{job['steps']} steps, prompt \"{job['prompt']}\", executor {job['executor']}. "
        f"Model: {results['model']} with random weights ({params}); random weights make noise, so "
        "the encoder's share is larger than with real video.",
        "",
        "| segment actors | GPUs per actor (+ Stage 1) | time to first segment s | real-time factor "
        "(steady) | frames/s per GPU | frames/s per segment actor | peak memory per segment actor "
        "/ Stage 1, GiB | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['actors']} | {r['gpus_per_worker']:g} (+{r['gpus_per_worker']:g}) | "
            f"{_num(r['first_segment_seconds'], '.1f')} | {_num(r['realtime_factor'], '.3f')} "
            f"({_num(r['steady_realtime_factor'], '.3f')}) | {_num(r['fps_per_gpu'])} | "
            f"{_num(r['fps_per_segment_actor'])} | {_gib(r['peak_segment_actor_bytes'])} / "
            f"{_gib(r['peak_keyframe_actor_bytes'])} ({r['peak_memory_kind'] or '-'}) | "
            f"{r['wall_seconds']:.1f} |")
    for s in results["skipped"]:
        lines.append(f"| {s['actors']} | skipped: {s['reason']} | | | | | | |")
    lines += ["", "Time to first segment counts from the lvp process's launch (Ray's start and "
              "every actor's model load included). Frames/s per GPU: output frames over the loop's "
              "seconds (after the models loaded) over the GPUs the job reserved, Stage 1's "
              "included; per segment actor: output frames over Stage 2's model seconds. Peak "
              "memory: torch's peak allocated GPU memory of each actor process (gpu), or its peak "
              "RSS on CPU (rss).", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ltx_gpu", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true",
                   help="tiny random components on CPU (engine/models/ltx/testing.py): checks the "
                        "script runs; its figures say nothing about a GPU")
    p.add_argument("--actors", default=None,
                   help="segment actor counts, comma separated (default: 1,2,4; --tiny: 1)")
    p.add_argument("--duration", type=float, help="seconds of video (default: 20; --tiny: 6)")
    p.add_argument("--size", help="WxH (default: 768x512; --tiny: 64x64)")
    p.add_argument("--fps", type=int, help="frame rate (default: 24; --tiny: 8)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the backend's 30; "
                                             "--tiny: the tiny folder's 2)")
    p.add_argument("--gpus-per-worker", type=float,
                   help="GPU share of each actor (default: 1 when N + 1 GPUs are visible, else 0.5)")
    p.add_argument("--executor", choices=("ray", "local"), default="ray",
                   help="lvp's executor (default: ray; local runs one worker in one process)")
    p.add_argument("--prompt", default=PROMPT)
    p.add_argument("--workdir", type=Path,
                   help="weights and outputs (default: a new temporary folder, removed after)")
    p.add_argument("--weights", type=Path,
                   help="reuse a folder this script built (default: build one in the work folder)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per render (default: 3600)")
    p.add_argument("--record", action="store_true",
                   help="append the table to bench/RESULTS.md and write bench/ltx_gpu_results.json")
    p.add_argument("--results-md", type=Path, default=RESULTS_MD, help=argparse.SUPPRESS)
    p.add_argument("--results-json", type=Path, default=RESULTS_JSON, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = (6.0, "64x64", 8, "1") if args.tiny else (20.0, "768x512", 24, "1,2,4")
    args.duration = args.duration or defaults[0]
    args.size = args.size or defaults[1]
    args.fps = args.fps or defaults[2]
    args.actors = [int(n) for n in (args.actors or defaults[3]).split(",") if n.strip()]
    if not args.actors or min(args.actors) < 1:
        p.error("--actors: positive counts, e.g. 1,2,4")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import diffusers
        import torch
        import transformers
    except ImportError:
        print("bench.ltx_gpu needs the diffusers extra: pip install 'lvp[diffusers]'", file=sys.stderr)
        return 2
    diffusers.utils.logging.disable_progress_bar()  # the script's own lines only
    transformers.utils.logging.disable_progress_bar()
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not args.tiny and visible == 0:
        print("bench.ltx_gpu: no GPU visible (torch.cuda); --tiny checks the script on CPU",
              file=sys.stderr)
        return 2
    temporary = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="lvp-ltx-gpu-")) if temporary else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        weights = args.weights or work / ("ltx-tiny" if args.tiny else "ltx-video-random")
        start = time.perf_counter()
        if args.tiny:
            params = build_tiny_folder(weights)
            if args.steps is not None:
                settings = json.loads((weights / "lvp-ltx.json").read_text())
                (weights / "lvp-ltx.json").write_text(json.dumps({**settings, "steps": args.steps}))
        else:
            params = build_real_folder(weights, args.steps)
        print(f"weights: {weights} ({time.perf_counter() - start:.0f} s to build or check; "
              f"{', '.join(f'{k} {v:,}' for k, v in params.items())} parameters)", file=sys.stderr)
        from engine.models.ltx.weights import LtxSettings

        steps = LtxSettings.read(weights).steps  # what the backend will use
        results: dict[str, Any] = {
            "machine": machine(args.tiny), "tiny": args.tiny,
            "model": "tiny test components" if args.tiny else "LTX-Video 0.9.5 (2B) architecture",
            "params": params,
            "job": {"duration": args.duration, "size": args.size, "fps": args.fps, "steps": steps,
                    "prompt": args.prompt, "executor": args.executor},
            "runs": [], "skipped": [],
        }
        for plan in plan_runs(args.actors, visible, args.tiny, args.executor, args.gpus_per_worker):
            if plan.skipped:
                print(f"{plan.actors} segment actor(s): skipped, {plan.skipped}", file=sys.stderr)
                results["skipped"].append({"actors": plan.actors, "reason": plan.skipped})
                continue
            print(f"{plan.actors} segment actor(s), {plan.gpus_per_worker:g} GPU each ...",
                  file=sys.stderr)
            run = figures(plan, render(work, weights, plan, args))
            results["runs"].append(run)
            print(f"  first segment {_num(run['first_segment_seconds'], '.1f')} s, real-time factor "
                  f"{_num(run['realtime_factor'], '.3f')}, peak {_gib(run['peak_segment_actor_bytes'])} "
                  f"GiB per segment actor ({run['peak_memory_kind']})", file=sys.stderr)
        table = markdown(results)
        print(table)
        (work / "ltx_gpu_results.json").write_text(json.dumps(results, indent=2) + "\n")
        if args.record:
            args.results_json.write_text(json.dumps(results, indent=2) + "\n")
            with args.results_md.open("a") as md:
                md.write("\n" + table)
            print(f"recorded: {args.results_md}, {args.results_json}", file=sys.stderr)
        return 0
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

