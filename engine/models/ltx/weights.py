"""The weights folder: what `check()` looks for, and the optional lvp settings file in it.

Torch-free and cheap: the command line calls it before any work starts. The folder is a
diffusers pipeline folder as `huggingface-cli download Lightricks/LTX-Video` leaves it (or as
`LTXConditionPipeline.save_pretrained` writes it); lvp never downloads anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from engine.errors import InputError, one_line

# The components the sampler uses, and the file(s) each must hold (any one of a tuple).
COMPONENTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "transformer": (("config.json",), ("*.safetensors", "*.bin")),
    "vae": (("config.json",), ("*.safetensors", "*.bin")),
    "text_encoder": (("config.json",), ("*.safetensors", "*.bin")),
    "tokenizer": (("tokenizer.json", "spiece.model"),),
    "scheduler": (("scheduler_config.json",),),
}
SETTINGS_FILE = "lvp-ltx.json"


@dataclass(frozen=True)
class LtxSettings:
    """How lvp samples with these weights; `lvp-ltx.json` in the weights folder may change any
    of them (the test components use it for 2 steps at tiny sizes)."""

    steps: int = 30  # denoising steps per clip
    guidance: float = 3.0  # classifier-free guidance (1.0: the conditional pass only)
    keyframe_short_side: int = 256  # Stage 1's resolution (the keyframes shown are smaller)
    anchor_strength: float = 0.5  # the memory's anchor as a soft reference at the next keyframe
    cond_noise: float = 0.15  # noise on hard-conditioned latents while sampling (as LTX does)
    decode_timestep: float = 0.05  # for a VAE with timestep conditioning (LTX 0.9.1 and later)
    decode_noise: float = 0.025
    max_sequence_length: int = 128  # prompt tokens
    tile_above: int = 768 * 512  # pixels per frame above which the VAE decodes in tiles

    @classmethod
    def read(cls, folder: Path) -> LtxSettings:
        path = folder / SETTINGS_FILE
        if not path.is_file():
            return cls()
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            known = {f.name: f.type for f in fields(cls)}
            unknown = sorted(set(data) - set(known))
            if unknown:
                raise ValueError(f"unknown setting(s) {', '.join(unknown)}")
            values = {k: (int(v) if known[k] == "int" else float(v)) for k, v in data.items()}
            settings = cls(**values)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise InputError(one_line(f"ltx-video settings {path}: {exc}")) from None
        if settings.steps < 1 or settings.keyframe_short_side < 8 or settings.guidance < 1.0:
            raise InputError(f"ltx-video settings {path}: steps >= 1, keyframe_short_side >= 8, "
                             "guidance >= 1")
        return settings


def _has(folder: Path, pattern: str) -> bool:
    if "*" in pattern:
        return any(p.is_file() for p in folder.glob(pattern))
    return (folder / pattern).is_file()


def _missing_shards(folder: Path) -> str | None:
    """The first shard a sharded checkpoint's index names that is not on disk."""
    for index in sorted(folder.glob("*.index.json")):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return index.name
        for shard in sorted(shards):
            if not (folder / shard).is_file():
                return shard
    return None


def check_folder(weights: Path | None) -> LtxSettings:
    """Raise InputError naming the first thing missing; return the folder's settings."""
    if weights is None:
        raise InputError("the ltx-video model needs --weights FOLDER: a local copy of "
                         "Lightricks/LTX-Video (lvp never downloads weights)")
    folder = Path(weights)
    if not folder.is_dir():
        raise InputError(one_line(f"ltx-video weights folder not found: {folder}"))
    index = folder / "model_index.json"
    if not index.is_file():
        raise InputError(one_line(f"ltx-video weights folder {folder}: no model_index.json "
                                  "(not a diffusers pipeline folder)"))
    try:
        declared = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(one_line(f"ltx-video weights {index}: not JSON ({exc})")) from None
    for name, needs in COMPONENTS.items():
        if not isinstance(declared, dict) or not declared.get(name):
            raise InputError(one_line(f"ltx-video weights {index}: no {name} component"))
        part = folder / name
        if not part.is_dir():
            raise InputError(one_line(f"ltx-video weights folder {folder}: no {name}/ folder"))
        for options in needs:
            if not any(_has(part, p) for p in options):
                what = " or ".join(options)
                raise InputError(one_line(f"ltx-video weights folder {folder}: no {what} in {name}/"))
        shard = _missing_shards(part)
        if shard is not None:
            raise InputError(one_line(f"ltx-video weights folder {folder}: {name}/{shard} is "
                                      "missing or unreadable"))
    return LtxSettings.read(folder)
