"""The weights file every trainer writes (the tiny model's and the evaluation judge's):
safetensors in fp16 beside a JSON manifest. A leaf module: it imports no model."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file


def save_weights(model: torch.nn.Module, path: Path, manifest: dict, name: str = "lvp-tiny") -> dict:
    """safetensors (fp16) + manifest, both written atomically (a crash never leaves half a file);
    returns the manifest as written, with the file's hash and size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "model": name})
    os.replace(tmp, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {**manifest, "sha256": digest, "bytes": path.stat().st_size}
    meta = path.with_suffix(".json")
    meta.with_suffix(".tmp").write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(meta.with_suffix(".tmp"), meta)
    return manifest

