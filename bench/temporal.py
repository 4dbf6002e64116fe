"""Temporal stability of the encoded video: does the picture jump at IDR frames or keyframes?

    python -m bench.temporal             # 30-60 minutes on 2 cores; writes bench/temporal_results.json
    python -m bench.temporal --smoke     # tiny inputs (seconds): checks that it runs, not the figures
    python -m bench.temporal --no-renders --presets default,hq --models procedural

Per preset (the `lvp render` default and --preset draft / live / hq: their size, fps, crf and
x264 preset) and per model (procedural, tiny), calm prompts (resting, spinning, pulsing,
orbiting) are rendered once in this process, through the render loop as `lvp render
--executor local` runs it (evaluation.evaluate.Run.stitched), then encoded with every
candidate x264 setting through the real FragmentedMP4Sink and decoded with PyAV. Each clip
starts half a second into its render, so IDR frames fall halfway between model keyframes and
the encoder's pulse and the model's are measured apart. On the decoded frames
(stitcher.quality):
- step at IDR frames, at model keyframes (one per second) and elsewhere (mean absolute change
  onto a frame, 0-255 levels), and the ratios (step + STEP_FLOOR) / (elsewhere + STEP_FLOOR);
- the same IDR ratio at 64 pixels short side (what the stitcher's probe sees);
- flicker: mean frame-to-frame change on the static background (the pixels the source never
  changes by more than 12 levels) and VBench's temporal flickering score of it;
- error against the source, bit rate, and encode speed: the same frames through the sink
  alone (frames per CPU second of this process, x264's threads included, and per wall second;
  the median of --repeat runs for the current and the previous setting).
Per preset and model, a last table sets the previous x264 setting beside the current one per
motion. Then real `lvp render --preset P` runs (own Ray, the shipped default model) with the
previous and the current setting, interleaved, compare the real-time factor of the render
loop (video seconds / loop_seconds of the run report; the report's realtime_factor also
counts start-up). The previous setting reaches the render's processes through a
sitecustomize hook on PYTHONPATH that replaces stitcher.sinks._x264_options; the options
x264 wrote into each output are read back to prove which setting ran.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

import stitcher.sinks as sinks
from stitcher.encoder import GopEncoder
from stitcher.quality import (
    STEP_FLOOR,
    background_flicker,
    every,
    flicker_score,
    frame_steps,
    static_mask,
    step_means,
)

REPO = Path(__file__).resolve().parent.parent
PROMPTS = {
    "resting": "a green circle resting on an ocean background",
    "spinning": "a blue star spinning on a night background",
    "pulsing": "a red square pulsing on a meadow background",
    "orbiting": "a white triangle orbiting on a day background",
}
PRESETS = ("default", "draft", "live", "hq")  # "default": `lvp render` without --preset
PROBE_SIDE = 64

# x264 settings as option templates ({crf}, {preset}, {keyint} filled in per encode). None
# stands for the code's own stitcher.sinks._x264_options; {"current-": params} for it less
# those params, {"current with": keywords} for it called with those keyword arguments.
# The x264 options before issue 18 (mbtree=0 keeps encodes deterministic, stitcher.sinks).
PREVIOUS = {"preset": "{preset}", "crf": "{crf}", "x264-params": "keyint={keyint}:scenecut=0:mbtree=0"}


def _with(params: str) -> dict[str, str]:
    return {**PREVIOUS, "x264-params": PREVIOUS["x264-params"] + ":" + params}


CANDIDATES: dict[str, dict[str, Any] | None] = {
    "previous": PREVIOUS,
    "ipratio 1.0": _with("ipratio=1.0"),  # I at the P quantiser: "same quality level"
    "ipratio 3": _with("ipratio=3"),
    "ipratio 6": _with("ipratio=6"),
    # qcomp: how far CRF lets the quantiser follow complexity (lower: finer P frames on calm
    # pictures). It helped while one encoder ran through the video; not with one per GOP.
    "ipratio 3 + qcomp 0": _with("ipratio=3:qcomp=0"),
    # The setting before the catch-up frames at the end of each GOP (stitcher.sinks).
    "ipratio 10": _with("ipratio=10"),
    # The settings before finer chroma and 4x4 transforms only (stitcher.sinks).
    "catch-up 8x8": {"current-": ":chroma-qp-offset=-6:8x8dct=0"},
    # The settings before the I frame at q0 (stitcher.sinks): I at crf - 20, catch-up at q4.
    "I at crf-20": {"current with": {"i_frame_at_q0": False, "no_deadzones": False,
                                     "catch_up_qp_below": 19}},
    "current": None,
    # Reference only: no IDR after the first, so MP4 fragments and HLS segments could not
    # start at one; shows what spreading the intra refresh over the GOP does.
    "intra refresh": _with("intra-refresh=1"),
}
TIMED = ("previous", "current")  # encode speed: median of --repeat runs for these


# --- frames ---------------------------------------------------------------------------


def preset_format(preset: str) -> dict:
    from engine.presets import resolve
    from engine.spec import parse_size

    fmt = resolve(None if preset == "default" else preset, {})
    width, height = parse_size(fmt["size"])
    return {**fmt, "width": width, "height": height}


def render_frames(model: str, preset: str, prompt: str, seconds: float, backends: dict) -> np.ndarray:
    """The stitched frames of one clip, made in this process (no encode)."""
    from engine.models.base import create_backend
    from engine.schedule import PromptSchedule
    from engine.spec import JobSpec
    from evaluation.evaluate import Run

    fmt = preset_format(preset)
    segment_seconds = 5
    spec = JobSpec(schedule=PromptSchedule.single(prompt), duration=seconds, fps=fmt["fps"],
                   width=fmt["width"], height=fmt["height"], seed=0, model=model,
                   segment_seconds=segment_seconds,
                   overlap=min(fmt["overlap"], segment_seconds * fmt["fps"] // 2))
    if model not in backends:
        backends[model] = create_backend(model)
    run = Run(spec, backends[model])
    try:
        return run.stitched()
    finally:
        run.close()


# --- encode and decode -----------------------------------------------------------------


def options_function(template: dict[str, Any] | None) -> Callable[..., dict[str, str]]:
    if template is None:
        return CURRENT_OPTIONS
    if "current with" in template:  # the code's own options, with other keyword values
        keywords = template["current with"]
        return lambda crf, preset, keyint, gop_frames=None: CURRENT_OPTIONS(
            crf, preset, keyint, gop_frames, **keywords)
    if "current-" in template:  # the code's own options less some x264 params
        def reduced(crf: int, preset: str, keyint: int, gop_frames: int | None = None) -> dict[str, str]:
            options = CURRENT_OPTIONS(crf, preset, keyint, gop_frames)
            if template["current-"] not in options["x264-params"]:
                raise ValueError(f"{template['current-']!r} is not in the current x264 params")
            return {**options, "x264-params": options["x264-params"].replace(template["current-"], "")}
        return reduced
    return lambda crf, preset, keyint, gop_frames=None: {
        k: v.format(crf=crf, preset=preset, keyint=keyint) for k, v in template.items()}


CURRENT_OPTIONS = sinks._x264_options


@contextlib.contextmanager
def x264_setting(template: dict[str, str] | None) -> Iterator[None]:
    sinks._x264_options = options_function(template)
    try:
        yield
    finally:
        sinks._x264_options = CURRENT_OPTIONS


def encode(frames: np.ndarray, path: Path, fmt: dict, gop_seconds: float,
           template: dict[str, str] | None) -> dict:
    """The frames through FragmentedMP4Sink with one setting; times exclude nothing but
    opening the file (the sink's own conversion to YUV is part of encoding)."""
    with x264_setting(template):
        cpu, wall = time.process_time(), time.perf_counter()
        with sinks.FragmentedMP4Sink(path, fmt["fps"], fmt["width"], fmt["height"], crf=fmt["crf"],
                                     preset=fmt["encoder_preset"], gop_seconds=gop_seconds) as sink:
            sink.write(frames)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_s": cpu, "wall_s": wall, "bytes": path.stat().st_size}


def decode(path: Path) -> tuple[np.ndarray, list[bool]]:
    """Decoded RGB frames, and whether each is a key (IDR) frame."""
    frames, keys = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            keys.append(bool(frame.key_frame))
    return np.stack(frames), keys


def x264_settings_in(path: Path) -> dict[str, str]:
    """The options x264 wrote into its SEI (e.g. mbtree, ip_ratio), read from the file."""
    data = path.read_bytes()
    start = data.find(b"options: ")
    if start < 0:
        return {}
    text = data[start + 9:data.find(b"\x00", start)].decode("ascii", "replace")
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


def paired_cost(frames: np.ndarray, fmt: dict, templates: dict[str, dict | None]) -> dict[str, float]:
    """CPU seconds each setting's encoder spends on the same frames, measured side by side:
    single-threaded encoders per setting, a fresh one per GOP as in the sinks (x264 then does
    all its work inside encode(), on this thread), fed frame by frame in turn, each call
    timed with this thread's CPU clock. A busy spell on the machine slows every setting
    alike, which separate runs cannot promise.
    "control" is a second encoder with the first setting: its cost against that setting's
    is the measurement's own spread."""
    first = next(iter(templates))
    templates = {**templates, "control": templates[first]}

    def gop_context(template: dict[str, str] | None, gop_frames: int) -> av.VideoCodecContext:
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = fmt["width"], fmt["height"], "yuv420p"
        encoder.time_base, encoder.framerate = Fraction(1, fmt["fps"]), Fraction(fmt["fps"])
        encoder.thread_count = 1
        encoder.options = options_function(template)(fmt["crf"], fmt["encoder_preset"],
                                                     fmt["fps"], gop_frames)
        return encoder

    # A fresh encoder per GOP, as the sinks run them (stitcher.encoder.GopEncoder).
    encoders = {name: GopEncoder(partial(gop_context, template), fmt["fps"])
                for name, template in templates.items()}
    cpu = dict.fromkeys(templates, 0.0)
    names = list(encoders)
    for i, rgb in enumerate([*frames, None]):
        frame = None if rgb is None else sinks._rgb_frame(rgb, i, Fraction(1, fmt["fps"]))
        # The first encoder to read a new frame pays for bringing it into the cache (about
        # 6%): every setting takes that turn equally often.
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.thread_time()
            encoders[name].encode(frame)
            cpu[name] += time.thread_time() - start
    return cpu


# --- measures --------------------------------------------------------------------------


def downscaled(frames: np.ndarray, side: int = PROBE_SIDE) -> np.ndarray:
    height, width = frames.shape[1:3]
    scale = side / min(height, width)
    if scale >= 1.0:
        return frames
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def ratio(at: float, elsewhere: float) -> float:
    return (at + STEP_FLOOR) / (elsewhere + STEP_FLOOR)


def model_keyframes(fps: int, count: int, offset: int) -> list[int]:
    """Positions of the model's keyframes (one a second) in a clip that starts `offset`
    frames into the render."""
    return [k - offset for k in every(fps, count + offset) if k > offset]


def temporal_measures(frames: np.ndarray, fps: int, keyint: int, mask: np.ndarray,
                      source: np.ndarray | None = None, key_offset: int = 0) -> dict:
    """Steps at IDR frames (every keyint), at model keyframes (every fps, shifted by
    key_offset) and elsewhere (at neither); their ratios; flicker on the source's static
    background; error vs the source."""
    n = len(frames)
    idr, keys = every(keyint, n), model_keyframes(fps, n, key_offset)
    steps = frame_steps(frames)
    idr_step, elsewhere = step_means(steps, idr, exclude=keys)
    key_step, _ = step_means(steps, keys, exclude=idr)
    small_steps = frame_steps(downscaled(frames))
    idr_small, elsewhere_small = step_means(small_steps, idr, exclude=keys)
    # Rate control settles over the first IDR frames (x264 derives an I frame's quantiser
    # from the P frames before it; the first frame has none): the IDRs from the third on.
    settled, _ = step_means(steps, idr[2:], exclude=keys) if len(idr) > 2 else (idr_step, None)
    # The mean step onto each position of the GOP, the worst over the median: a setting that
    # only moved the jump off the IDR (onto the frame before) would show here.
    usable = len(steps) // keyint * keyint
    by_position = steps[:usable].reshape(-1, keyint)[1:].mean(axis=0) if usable > keyint \
        else np.zeros(1)
    out = {"idr_step": idr_step, "keyframe_step": key_step, "elsewhere_step": elsewhere,
           "idr_ratio": ratio(idr_step, elsewhere), "keyframe_ratio": ratio(key_step, elsewhere),
           "idr_ratio_settled": ratio(settled, elsewhere),
           "gop_worst_ratio": ratio(float(by_position.max()), float(np.median(by_position))),
           "idr_ratio_64px": ratio(idr_small, elsewhere_small),
           "background_flicker": background_flicker(frames, mask),
           "flicker_score": flicker_score(frames, mask)}
    if source is not None:
        out["error_vs_source"] = float(np.mean([np.abs(a.astype(np.int16) - b).mean()
                                                for a, b in zip(frames, source, strict=True)]))
    return out


# --- per preset: encode comparison -------------------------------------------------------


def gop_variants(preset: str, names: list[str]) -> list[tuple[str, dict | None, float]]:
    """(row name, template, gop seconds): every candidate at today's MP4 GOP (1 s) and the
    current setting with MP4 fragments as long as the preset's HLS segments, if that differs."""
    rows = [(name, CANDIDATES[name], 1.0) for name in names]
    segment = float(preset_format(preset)["hls_segment_seconds"])
    if "current" in names and segment != 1.0:
        rows.append((f"current @ {segment:g} s GOP", None, segment))
    return rows


def measure_preset(preset: str, models: list[str], prompts: list[str], names: list[str],
                   seconds: float, repeat: int, tmp: Path, backends: dict) -> dict:
    fmt = preset_format(preset)
    fps = fmt["fps"]
    rows = gop_variants(preset, names)
    out: dict = {"format": {k: fmt[k] for k in ("fps", "width", "height", "crf", "encoder_preset",
                                                "hls_segment_seconds")}, "models": {}}
    for model in models:
        per_model: dict = {}
        for prompt in prompts:
            start = time.perf_counter()
            # The encoded clip starts half a second into the render: its IDR frames fall
            # halfway between model keyframes, so the two pulses are measured apart.
            offset = fps // 2
            source = render_frames(model, preset, PROMPTS[prompt], seconds + offset / fps,
                                   backends)[offset:]
            render_s = time.perf_counter() - start
            mask = static_mask(source)
            clip = {"frames": len(source), "render_s": render_s, "key_offset": offset,
                    "static_share": float(mask.mean()),
                    "source": temporal_measures(source, fps, fps, mask, key_offset=offset)}
            timings: dict[str, list[dict]] = {name: [] for name, _, _ in rows}
            for rep in range(repeat):
                for name, template, gop in rows:
                    if rep and name not in TIMED:
                        continue
                    path = tmp / f"{preset}_{model}_{prompt}_{len(timings[name])}.mp4"
                    timings[name].append(encode(source, path, fmt, gop, template))
                    if rep == 0:
                        decoded, types = decode(path)
                        keyint = max(1, round(gop * fps))
                        idr_at = [i for i, key in enumerate(types) if key]
                        refresh = "intra-refresh" in (template or {}).get("x264-params", "")
                        if not refresh and idr_at != [0, *every(keyint, len(types))]:
                            raise RuntimeError(f"{name}: IDR frames at {idr_at[:8]}..., "
                                               f"expected every {keyint}")
                        clip[name] = {**temporal_measures(decoded, fps, keyint, mask, source,
                                                          key_offset=offset),
                                      "bytes": path.stat().st_size,
                                      "kbit_s": path.stat().st_size * 8 / 1000 / (len(source) / fps),
                                      "x264": {k: v for k, v in x264_settings_in(path).items()
                                               if k in ("mbtree", "ip_ratio", "aq", "deblock",
                                                        "keyint", "intra_refresh", "qcomp")}}
                    path.unlink()
            # Paired CPU cost at the MP4 GOP of 1 s (the GOP variant costs what its setting does).
            paired = paired_cost(source, fmt, {name: template for name, template, gop in rows
                                               if gop == 1.0})
            for name, _, gop in rows:
                if gop == 1.0:
                    clip[name]["encode_cpu_paired_s"] = paired[name]
            clip["paired_control"] = {"encode_cpu_paired_s": paired["control"],
                                      "of": next(iter(paired))}
            for name, runs in timings.items():
                cpu = float(np.median([r["cpu_s"] for r in runs]))
                wall = float(np.median([r["wall_s"] for r in runs]))
                clip[name].update({"encode_fps_cpu": len(source) / cpu,
                                   "encode_fps_wall": len(source) / wall})
            per_model[prompt] = clip
            print(f"  {preset} {model} {prompt}: rendered in {render_s:.1f} s, "
                  f"{len(rows)} settings encoded", flush=True)
        out["models"][model] = per_model
        print_table(preset, model, per_model, [name for name, _, _ in rows])
        if "previous" in names and "current" in names:
            print_before_after(preset, model, per_model)
    return out


def summary(per_model: dict, name: str) -> dict:
    clips = [c[name] for c in per_model.values()]
    total = sum(c["frames"] for c in per_model.values())
    mean = {k: float(np.mean([c[k] for c in clips])) for k in
            ("idr_step", "keyframe_step", "elsewhere_step", "idr_ratio", "keyframe_ratio",
             "idr_ratio_settled", "gop_worst_ratio", "idr_ratio_64px", "background_flicker",
             "flicker_score")}
    mean["idr_ratio_max"] = float(max(c["idr_ratio"] for c in clips))
    if "kbit_s" in clips[0]:
        mean["kbit_s"] = float(np.mean([c["kbit_s"] for c in clips]))
        mean["error_vs_source"] = float(np.mean([c["error_vs_source"] for c in clips]))
        # Frames over seconds summed over the clips: each clip weighs by its length.
        mean["encode_fps_cpu"] = total / sum(per_model[p]["frames"] / c["encode_fps_cpu"]
                                             for p, c in zip(per_model, clips, strict=True))
        mean["encode_fps_wall"] = total / sum(per_model[p]["frames"] / c["encode_fps_wall"]
                                              for p, c in zip(per_model, clips, strict=True))
        if "encode_cpu_paired_s" in clips[0] and "previous" in next(iter(per_model.values())):
            mean["encode_cost_vs_previous"] = (
                sum(c["encode_cpu_paired_s"] for c in clips)
                / sum(c["previous"]["encode_cpu_paired_s"] for c in per_model.values()))
    return mean


def control_spread(per_model: dict) -> float | None:
    """The paired cost of a second encoder with the same setting as the first, over it."""
    clips = list(per_model.values())
    if "paired_control" not in clips[0]:
        return None
    of = clips[0]["paired_control"]["of"]
    return (sum(c["paired_control"]["encode_cpu_paired_s"] for c in clips)
            / sum(c[of]["encode_cpu_paired_s"] for c in clips))


def print_table(preset: str, model: str, per_model: dict, names: list[str]) -> None:
    prompts = list(per_model)
    print(f"\n{preset} / {model}: IDR step ratio per prompt ({', '.join(prompts)}), then means "
          f"over the prompts (steps in 0-255 levels)")
    head = (f"{'setting':<24}" + "".join(f"{p[:8]:>9}" for p in prompts)
            + f"{'max':>7}{'key':>7}{'settled':>8}{'worst':>7}{'64px':>7}{'IDR':>7}{'else':>7}"
            f"{'flick':>7}"
            f"{'err':>6}{'kbit/s':>8}{'fps cpu':>9}{'fps wall':>9}{'cost':>7}")
    print(head)
    for name in ["source", *names]:
        s = summary(per_model, name)
        row = (f"{name:<24}" + "".join(f"{per_model[p][name]['idr_ratio']:>9.2f}" for p in prompts)
               + f"{s['idr_ratio_max']:>7.2f}{s['keyframe_ratio']:>7.2f}"
               f"{s['idr_ratio_settled']:>8.2f}{s['gop_worst_ratio']:>7.2f}{s['idr_ratio_64px']:>7.2f}"
               f"{s['idr_step']:>7.3f}{s['elsewhere_step']:>7.3f}{s['background_flicker']:>7.3f}")
        if "kbit_s" in s:
            row += (f"{s['error_vs_source']:>6.2f}{s['kbit_s']:>8.0f}{s['encode_fps_cpu']:>9.0f}"
                    f"{s['encode_fps_wall']:>9.0f}")
            if "encode_cost_vs_previous" in s:
                row += f"{s['encode_cost_vs_previous']:>7.2f}"
        print(row)
    spread = control_spread(per_model)
    if spread is not None:
        print(f"(cost of a second encoder with the first setting, same run: {spread:.3f})")


def print_before_after(preset: str, model: str, per_model: dict) -> None:
    """Per calm motion, the previous x264 setting against the current one, measured in this
    run: IDR step ratio (all IDRs; settled: from the third on), keyframe step ratio,
    background flicker, encode frames per CPU second
    (side by side: single-threaded encoders fed in turn) and file size."""
    print(f"\n{preset} / {model}: previous -> current x264 setting, per motion")
    print(f"{'motion':<10}{'IDR ratio':>17}{'IDR, settled':>17}{'key ratio':>17}{'flicker':>17}"
          f"{'encode fps':>17}{'kB':>17}{'fps change':>12}")
    for prompt, clip in per_model.items():
        before, after = clip["previous"], clip["current"]
        fps_before = clip["frames"] / before["encode_cpu_paired_s"]
        fps_after = clip["frames"] / after["encode_cpu_paired_s"]
        pairs = [(before["idr_ratio"], after["idr_ratio"], ".2f"),
                 (before["idr_ratio_settled"], after["idr_ratio_settled"], ".2f"),
                 (before["keyframe_ratio"], after["keyframe_ratio"], ".2f"),
                 (before["background_flicker"], after["background_flicker"], ".3f"),
                 (fps_before, fps_after, ".0f"),
                 (before["bytes"] / 1000, after["bytes"] / 1000, ".0f")]
        print(f"{prompt:<10}" + "".join(f"{a:>8{f}} ->{b:>7{f}}" for a, b, f in pairs)
              + f"{fps_after / fps_before - 1:>+12.1%}")


# --- full renders ----------------------------------------------------------------------

HOOK = '''\
"""Written by bench.temporal: replaces stitcher.sinks._x264_options in every process."""
import importlib.abc
import importlib.util
import json
import os
import sys

_TEMPLATE = json.loads(os.environ["LVP_BENCH_X264"])


def _options(crf, preset, keyint, gop_frames=None):
    return {k: v.format(crf=crf, preset=preset, keyint=keyint) for k, v in _TEMPLATE.items()}


class _Patch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "stitcher.sinks":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            module._x264_options = _options

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Patch())
'''


def full_render(preset: str, model: str, seconds: float, template: dict | None, out: Path,
                hook_dir: Path, executor: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        ([str(hook_dir)] if template is not None else []) + [str(REPO)]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if template is not None:
        env["LVP_BENCH_X264"] = json.dumps(template)
    else:
        env.pop("LVP_BENCH_X264", None)
    cmd = [sys.executable, "-m", "cli", "render", "--prompt", PROMPTS["resting"], "--duration",
           str(seconds), "--out", str(out), "--quiet", "--model", model, "--executor", executor,
           "--overwrite"]  # every setting renders afresh (a finished job would be kept)
    if preset != "default":
        cmd += ["--preset", preset]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"lvp render failed: {proc.stderr.strip()[-800:]}")
    report = json.loads(out.with_suffix(".json").read_text())
    x264 = x264_settings_in(out)
    return {"loop_seconds": report["loop_seconds"], "wall_seconds": report["wall_seconds"],
            "realtime_factor": report["realtime_factor"],
            "loop_realtime_factor": seconds / report["loop_seconds"],
            "encode_seconds": report["stage_seconds"]["encode"],
            "x264": {k: x264.get(k) for k in ("mbtree", "ip_ratio")}}


def expected_x264(template: dict | None, fmt: dict) -> dict:
    """mbtree and ip_ratio as x264 will report them for this setting (read from a short encode
    here, so the render's file can be checked against it)."""
    with tempfile.TemporaryDirectory(prefix="lvp-temporal-") as folder:
        path = Path(folder) / "probe.mp4"
        frames = np.zeros((4, 64, 64, 3), np.uint8)
        encode(frames, path, {**fmt, "width": 64, "height": 64}, 1.0, template)
        x264 = x264_settings_in(path)
    return {k: x264.get(k) for k in ("mbtree", "ip_ratio")}


def measure_renders(presets: list[str], model: str, seconds: float, repeat: int, tmp: Path,
                    executor: str) -> dict:
    hook_dir = tmp / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(HOOK)
    settings = {"previous": PREVIOUS, "current": None}
    runs: dict = {p: {s: [] for s in settings} for p in presets}
    for i in range(repeat):
        for preset in presets:
            # Alternate which setting goes first, so a slow spell does not always hit one.
            for name, template in list(settings.items())[::1 if i % 2 == 0 else -1]:
                out = tmp / f"render_{preset}_{name}_{i}.mp4"
                r = full_render(preset, model, seconds, template, out, hook_dir, executor)
                want = expected_x264(template, preset_format(preset))
                if r["x264"] != want:
                    raise RuntimeError(f"{preset} {name}: the render used x264 {r['x264']}, "
                                       f"expected {want}")
                runs[preset][name].append(r)
                print(f"  render {preset} {name} #{i + 1}: loop {r['loop_seconds']:.2f} s, "
                      f"x264 {r['x264']}", flush=True)
    out = {}
    print(f"\nFull renders ({model}, {seconds:g} s, median of {repeat} by loop seconds): "
          f"real-time factor of the render loop (and of the whole run)")
    print(f"{'preset':<9}{'previous':>12}{'current':>12}{'change':>9}{'whole run':>22}"
          f"{'encode s':>16}")
    for preset in presets:
        med = {}
        for name, rs in runs[preset].items():
            ordered = sorted(rs, key=lambda r: r["loop_seconds"])
            med[name] = {**ordered[len(ordered) // 2],
                         "loop_seconds_all": [r["loop_seconds"] for r in rs]}
        change = med["current"]["loop_realtime_factor"] / med["previous"]["loop_realtime_factor"] - 1
        out[preset] = {**med, "loop_rtf_change": change}
        print(f"{preset:<9}{med['previous']['loop_realtime_factor']:>12.2f}"
              f"{med['current']['loop_realtime_factor']:>12.2f}{change:>+9.1%}"
              f"{med['previous']['realtime_factor']:>11.2f} /{med['current']['realtime_factor']:>5.2f}"
              f"{med['previous']['encode_seconds']:>9.2f} /{med['current']['encode_seconds']:>5.2f}")
    return out


# --- main ------------------------------------------------------------------------------


def _list(text: str, allowed: tuple[str, ...] | list[str]) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(allowed)}")
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny inputs (4 s clips, procedural, one prompt, two settings, one "
                             "local render): checks that it runs")
    parser.add_argument("--presets", default=",".join(PRESETS), help="default: all")
    parser.add_argument("--models", default="procedural,tiny", help="default: procedural,tiny")
    parser.add_argument("--prompts", default=",".join(PROMPTS), help="default: all four")
    parser.add_argument("--settings", default=",".join(CANDIDATES),
                        help=f"x264 settings to compare (default: all of {', '.join(CANDIDATES)})")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default: 10)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each timed encode and of each full render (default: 3)")
    parser.add_argument("--render-seconds", type=float, default=60.0,
                        help="video length of the full renders (default: 60)")
    parser.add_argument("--render-model", default="tiny", help="model of the full renders")
    parser.add_argument("--no-renders", action="store_true", help="skip the full renders")
    parser.add_argument("--json", type=Path,
                        help="where to write the results (default: bench/temporal_results.json; "
                             "with --smoke, nowhere unless given)")
    args = parser.parse_args()
    try:
        presets = _list(args.presets, PRESETS)
        models = _list(args.models, ["procedural", "tiny"])
        prompts = _list(args.prompts, list(PROMPTS))
        names = _list(args.settings, list(CANDIDATES))
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if not 4 <= args.seconds <= 3600:
        parser.error("--seconds must be between 4 and 3600 (the measures need three IDR frames)")
    executor = "ray"
    render_presets = presets
    if args.smoke:
        presets, models, prompts = ["draft", "live"], ["procedural"], ["resting"]
        names = ["previous", "current"]
        args.seconds, args.repeat, args.render_seconds = 4.0, 1, 2.0
        args.render_model, executor, render_presets = "procedural", "local", ["draft"]

    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # one process renders the clips here
    results: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "options": {"seconds": args.seconds, "repeat": args.repeat, "smoke": args.smoke},
        "step_floor": STEP_FLOOR,
        # "current": its options for crf 23, veryfast and a GOP of 30 frames
        "settings": {name: CANDIDATES[name] or CURRENT_OPTIONS(23, "veryfast", 30, 30)
                     for name in names},
        "presets": {},
    }
    print(f"machine: {results['machine']}; current x264 options (crf 23, veryfast, keyint 30): "
          f"{CURRENT_OPTIONS(23, 'veryfast', 30)}")
    print("Tables: the IDR step ratio of each prompt and its max; key: the ratio at model "
          "keyframes; settled: at IDRs from the third on; 64px: at 64 pixels short side; IDR / "
          "else: mean steps (levels); flick: background flicker (levels); err: mean absolute "
          "error vs the source; encode frames per CPU second and per wall second (separate "
          "runs, median of --repeat); cost: encode CPU time against the previous setting, "
          "measured side by side (single-threaded encoders fed in turn).")
    backends: dict = {}
    with tempfile.TemporaryDirectory(prefix="lvp-temporal-") as folder:
        tmp = Path(folder)
        for preset in presets:
            print(f"\n== preset {preset}", flush=True)
            data = measure_preset(preset, models, prompts, names, args.seconds, args.repeat, tmp,
                                  backends)
            rows = ["source", *[name for name, _, _ in gop_variants(preset, names)]]
            data["summary"] = {m: {name: summary(data["models"][m], name) for name in rows}
                               for m in models}
            for m in models:
                data["summary"][m]["paired_control_cost"] = control_spread(data["models"][m])
            results["presets"][preset] = data
        if not args.no_renders and render_presets:
            results["renders"] = {"model": args.render_model, "seconds": args.render_seconds,
                                  "executor": executor,
                                  "presets": measure_renders(render_presets, args.render_model,
                                                             args.render_seconds, args.repeat,
                                                             tmp, executor)}
    path = args.json or (None if args.smoke else Path(__file__).with_name("temporal_results.json"))
    if path is not None:
        path.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
