"""The ltx-video keyframe state (numpy only: the registry imports it without torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.models.base import KeyframeState


@dataclass(frozen=True)
class LtxState(KeyframeState):
    """The keyframe as the model sees it: its VAE latent at Stage 1's resolution."""

    width: int  # pixels of the picture the latent decodes to (Stage 1's resolution)
    height: int
    # [C, 1, height / s, width / s] float16, normalised by the VAE's latent mean and std
    # (what the transformer reads; s is the VAE's spatial compression).
    latent: np.ndarray
