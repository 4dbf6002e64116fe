"""Train the tiny model on the procedural world (`lvp train`), then refit its pose model
on its own rollouts (`lvp train --refit-pose`).

One optimiser step updates every part on its own batch:
  canvas     flow matching on the 32x32 layered canvas (denoising loss)
  pose       flow matching on the next keyframe's subject pose (motion loss)
  trajectory regression of the in-between pose against the world's physics (motion loss)
  image      the image encoder's subject pose, and text-picture contrastive alignment
  upsampler  L1 of 32 -> 64 layers against the world drawn at 64
  probe      the evaluation classifier (color, shape) on world pictures
Weights are an exponential moving average of the trained ones, saved as safetensors with a
JSON manifest (hash, command, steps, losses) beside them.

The refit trains the pose model alone, everything else frozen, with half its samples first
drawing 1-8 keyframes themselves (tiny_data.py: POSE_ROLLOUT): Stage 1 feeds every pose back as
history, and teacher forcing alone leaves small errors free to compound.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.models.tiny.modules import (
    HISTORY,
    NUM_COLORS,
    POSE_TEMPERATURE,
    TRAJ_SPREAD,
    TinyConfig,
    TinyVideoModel,
    pose_base,
    pose_target,
    sample_pose,
)
from engine.models.tiny.trajectory import KEY_DIM
from training.law_fit import fitted_law
from training.tiny_data import HISTORY_NOISE_SHARE, BatchMaker
from training.weights import save_weights

CONTRASTIVE_TEMPERATURE = 0.1
# Per canvas channel (background RGB, sprite RGB, alpha): the background's texture is
# seed-random and unpredictable from the prompt; the sprite is what the prompt decides.
CANVAS_LOSS_WEIGHTS = (1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0)
# Auxiliary losses (naming the subject from the condition, text-picture alignment, the probe)
# shape the shared encoders or train a classifier beside the model: they weigh less than the
# losses of what a render draws.
ATTRIBUTES_LOSS_WEIGHT = 0.2
CONTRASTIVE_LOSS_WEIGHT = 0.1
PROBE_LOSS_WEIGHT = 0.2
IMAGE_POSE_SCALE = 5.0  # the image encoder's pose error, scaled up: fractions of the frame are small


@dataclass(frozen=True)
class TrainConfig:
    minutes: float = 45.0  # wall-clock budget; training stops at the first of minutes/steps
    steps: int = 1_000_000
    seed: int = 0
    lr: float = 1e-3
    ema: float = 0.999
    canvas_batch: int = 32
    pose_batch: int = 128
    trajectory_batch: int = 128
    picture_batch: int = 32
    upsample_batch: int = 16
    threads: int = 2
    checkpoint_minutes: float = 5.0
    noise_share: float = HISTORY_NOISE_SHARE  # perturbed pose histories (tiny_data.py)


def _t(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in batch.items()}


def flow_pair(x1: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rectified-flow training pair: x_tau on the straight line noise -> data, and its velocity."""
    x0 = torch.randn(x1.shape, generator=gen)
    # Logit-normal tau: more weight mid-way, where the picture takes shape.
    tau = torch.sigmoid(torch.randn(x1.shape[0], generator=gen))
    shape = (-1,) + (1,) * (x1.dim() - 1)
    xt = (1 - tau.view(shape)) * x0 + tau.view(shape) * x1
    return xt, tau, x1 - x0


def _as_is(batch: dict) -> dict:
    """The worker already makes whole batches (a module-level function: picklable under spawn)."""
    return batch


class WorldBatches(torch.utils.data.IterableDataset):
    """Endless training batches, made in a worker process while the main one computes."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def __iter__(self):
        cfg = self.cfg
        maker = BatchMaker(cfg.seed)
        while True:
            yield {
                "canvas": maker.canvas_batch(cfg.canvas_batch),
                "pose": maker.pose_batch(cfg.pose_batch, 0.0, cfg.noise_share),
                "trajectory": maker.trajectory_batch(cfg.trajectory_batch),
                "picture": maker.picture_batch(cfg.picture_batch, held_out=False),
                "probe": maker.picture_batch(cfg.picture_batch, held_out=None),
                "upsample": maker.upsample_batch(cfg.upsample_batch),
            }


def rollout(model: TinyVideoModel, cond: torch.Tensor, b: dict[str, torch.Tensor],
            gen: torch.Generator) -> torch.Tensor:
    """The history each pose sample is trained from: the world's, then `steps` keyframes the
    model draws itself, as at inference (narrowed noise once there is a history)."""
    history = b["history"].view(len(cond), HISTORY, -1)
    with torch.no_grad():
        for j in range(int(b["steps"].max())):
            temperature = torch.where(history[:, -1, -1] > 0, POSE_TEMPERATURE, 1.0)[:, None]
            noise = temperature * torch.randn((len(cond), KEY_DIM), generator=gen)
            pose = sample_pose(model, noise, cond, history.flatten(1), b["beats"][:, j], b["motion"])
            drawn = torch.cat([pose, torch.ones_like(pose[:, :1])], dim=-1)
            pushed = torch.cat([history[:, 1:], drawn[:, None]], dim=1)
            history = torch.where((b["steps"] > j)[:, None, None], pushed, history)
    return history.flatten(1)


def pose_loss(model: TinyVideoModel, b: dict[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    cond = model.condition(b["ids"], None, torch.zeros(len(b["ids"]), dtype=torch.bool), b["envelope"])
    history = rollout(model, cond.detach(), b, gen)
    rows = torch.arange(len(cond))
    target, beat = b["future"][rows, b["steps"]], b["beats"][rows, b["steps"]]
    base, gain = pose_base(model.law, history, b["motion"])
    xt, tau, velocity = flow_pair(pose_target(target, base, gain), gen)
    return F.mse_loss(model.pose(xt, tau, cond, history, beat, base), velocity)


def trajectory_loss(model: TinyVideoModel, b: dict[str, torch.Tensor]) -> torch.Tensor:
    cond = model.condition(b["ids"], None, torch.zeros(len(b["ids"]), dtype=torch.bool), b["envelope"])
    pred = model.trajectory(b["features"], cond)
    return F.mse_loss(pred, b["target"] * b["target"].new_tensor(TRAJ_SPREAD))


def losses(model: TinyVideoModel, batches: dict[str, dict[str, np.ndarray]],
           gen: torch.Generator) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}

    b = _t(batches["canvas"])
    has_image = b["flags"][:, 2] > 0.5
    cond, tokens, pad = model.condition_tokens(b["ids"], b["image"], has_image, b["envelope"])
    xt, tau, velocity = flow_pair(b["target"], gen)
    error = (model.canvas(xt, tau, cond, tokens, pad, b["context"], b["flags"]) - velocity) ** 2
    out["canvas"] = (error.mean((0, 2, 3)) * error.new_tensor(CANVAS_LOSS_WEIGHTS)).sum() / sum(
        CANVAS_LOSS_WEIGHTS)
    named = model.attributes(cond)
    out["attributes"] = ATTRIBUTES_LOSS_WEIGHT * (
        F.cross_entropy(named[:, :NUM_COLORS], b["attributes"][:, 0])
        + F.cross_entropy(named[:, NUM_COLORS:], b["attributes"][:, 1]))

    out["pose"] = pose_loss(model, _t(batches["pose"]), gen)

    out["trajectory"] = trajectory_loss(model, _t(batches["trajectory"]))

    b = _t(batches["picture"])
    _, _, pose = model.image(b["image"])
    out["image_pose"] = F.mse_loss(pose * IMAGE_POSE_SCALE, b["pose"] * IMAGE_POSE_SCALE)
    logits = model.alignment(b["ids"], b["image"]) / CONTRASTIVE_TEMPERATURE
    labels = torch.arange(len(logits))
    out["contrastive"] = CONTRASTIVE_LOSS_WEIGHT * (F.cross_entropy(logits, labels)
                                                    + F.cross_entropy(logits.T, labels))

    b = _t(batches["probe"])
    color, shape = model.probe(b["image"])
    out["probe"] = PROBE_LOSS_WEIGHT * (F.cross_entropy(color, b["color"])
                                        + F.cross_entropy(shape, b["shape"]))

    b = _t(batches["upsample"])
    out["upsampler"] = F.l1_loss(model.upsampler(b["low"]), b["high"])
    return out


@dataclass(frozen=True)
class RefitConfig:
    steps: int = 1000
    seed: int = 0
    lr: float = 3e-4  # a fine-tune: the base run trained the motion parts already
    ema: float = 0.999
    pose_batch: int = 128
    trajectory_batch: int = 128
    # Rollouts (tiny_data.py) are off by default: the law of motion keeps the motion going, and
    # a rollout's target (the world's key) is wrong wherever the model's phase drifted from it.
    rollout_share: float = 0.0
    noise_share: float = HISTORY_NOISE_SHARE  # perturbed histories (tiny_data.py)
    teacher_forcing: float = 0.0  # the first share of the steps learns from the world's histories only
    threads: int = 2


MOTION_PARTS = ("pose", "trajectory")  # what the refit trains; every other part keeps its weights
LAW = "law"  # the law of motion's fitted numbers: kept from the base, fitted where it has none


def law_values(model: TinyVideoModel) -> dict[str, list]:
    """The law of motion's numbers as the weights hold them (for the manifest)."""
    return {k: np.round(v.numpy().astype(np.float64), 5).tolist() for k, v in model.law.state_dict().items()}


def refit_pose(cfg: RefitConfig, base: Path, out: Path, command: str, log=print) -> dict:
    """Refit the motion parts of the weights in `base` (the pose model, on its own rollouts,
    and Stage 2's trajectory network); every other part keeps its weights. A part whose
    shapes changed since `base` was trained (an older design) starts from scratch. The
    manifest keeps the base's beside it."""
    from safetensors.torch import load_file

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    maker = BatchMaker(cfg.seed)
    model = TinyVideoModel(TinyConfig())
    own = model.state_dict()
    saved = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(base)).items()}
    fresh = sorted({k.split(".")[0] for k in own if k not in saved or saved[k].shape != own[k].shape})
    if any(part not in (*MOTION_PARTS, LAW) for part in fresh):
        raise ValueError(f"{base}: parts other than the motion's do not fit this model: {fresh}")
    model.load_state_dict({k: saved[k] if k.split(".")[0] not in fresh else v for k, v in own.items()})
    if fresh:
        log(f"refit: {', '.join(fresh)} start from scratch (shapes changed since {base.name})")
    if not bool(model.law.fitted.item()):
        model.law.load_fit(fitted_law(cfg.seed))
        log("refit: law of motion fitted (the base's has another layout or none)")
    model.requires_grad_(False)
    parts = [getattr(model, p) for p in MOTION_PARTS]
    params = [q for p in parts for q in p.parameters()]
    for p in parts:
        p.requires_grad_(True)
    ema = [copy.deepcopy(p) for p in parts]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    start, running = time.perf_counter(), {}
    for step in range(cfg.steps):
        for group in opt.param_groups:  # short warm-up, then cosine decay to a tenth
            group["lr"] = cfg.lr * min(1.0, (step + 1) / 100) * (
                0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
        share = cfg.rollout_share if step >= cfg.teacher_forcing * cfg.steps else 0.0
        batch = maker.pose_batch(cfg.pose_batch, share, cfg.noise_share)
        parts_loss = {"pose": pose_loss(model, _t(batch), gen),
                      "trajectory": trajectory_loss(model, _t(maker.trajectory_batch(cfg.trajectory_batch)))}
        loss = sum(parts_loss.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e_part, part in zip(ema, parts, strict=True):
                for e, p in zip(e_part.parameters(), part.parameters(), strict=True):
                    e.lerp_(p, 1 - decay)
        for k, v in parts_loss.items():
            value = float(v.detach())
            running[k] = value if k not in running else 0.98 * running[k] + 0.02 * value
        if (step + 1) % 100 == 0:
            log(f"refit step {step + 1} {(time.perf_counter() - start) / 60:.1f} min "
                + " ".join(f"{k} {v:.4f}" for k, v in running.items()))
    for name, e_part in zip(MOTION_PARTS, ema, strict=True):
        setattr(model, name, e_part)
    base_manifest = json.loads(Path(base).with_suffix(".json").read_text()) \
        if Path(base).with_suffix(".json").is_file() else {}
    return save_weights(model, out, {
        "command": command, "steps": cfg.steps, "seconds": round(time.perf_counter() - start, 1),
        "final": True, "config": cfg.__dict__, "from_scratch": fresh,
        "losses": {k: round(v, 5) for k, v in running.items()},
        "torch": torch.__version__, "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "parameters": sum(p.numel() for p in model.parameters()), "law": law_values(model),
        "base": base_manifest,
    })


def train(cfg: TrainConfig, out: Path, command: str, log=print) -> dict:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    stream = iter(torch.utils.data.DataLoader(WorldBatches(cfg), batch_size=None, num_workers=1,
                                              prefetch_factor=2, collate_fn=_as_is))
    model = TinyVideoModel()
    # The law of motion's numbers, fitted to the world's clips before the networks learn
    # their corrections to it (training/law_fit.py).
    fit_start = time.perf_counter()
    model.law.load_fit(fitted_law(cfg.seed))
    log(f"law of motion fitted in {time.perf_counter() - fit_start:.1f} s")
    ema = TinyVideoModel()
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    budget = cfg.minutes * 60.0 - (time.perf_counter() - fit_start)  # the fit counts too
    start = last_save = time.perf_counter()
    running: dict[str, float] = {}
    step = 0

    def manifest(final: bool) -> dict:
        return {
            "command": command, "steps": step, "seconds": round(time.perf_counter() - start, 1),
            "final": final, "config": cfg.__dict__, "losses": {k: round(v, 5) for k, v in running.items()},
            "torch": torch.__version__, "machine": f"{platform.machine()} {os.cpu_count()} cpus",
            "parameters": sum(p.numel() for p in model.parameters()), "law": law_values(model),
        }

    while step < cfg.steps:
        elapsed = time.perf_counter() - start
        if elapsed > budget:
            break
        # Warm up, then cosine-decay the learning rate over the time budget.
        progress = min(elapsed / budget, 1.0)
        lr = cfg.lr * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in opt.param_groups:
            group["lr"] = lr
        parts = losses(model, next(stream), gen)
        total = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
            for e, p in zip(ema.buffers(), model.buffers(), strict=True):
                e.copy_(p)
        for k, v in parts.items():
            value = float(v.detach())
            running[k] = 0.98 * running.get(k, value) + 0.02 * value
        step += 1
        if step % 50 == 0:
            log(f"step {step} {elapsed / 60:.1f} min lr {lr:.2e} "
                + " ".join(f"{k} {v:.4f}" for k, v in running.items()))
        if time.perf_counter() - last_save > cfg.checkpoint_minutes * 60:
            save_weights(ema, out, manifest(final=False))
            last_save = time.perf_counter()
    save_weights(ema, out, manifest(final=True))
    return manifest(final=True)

