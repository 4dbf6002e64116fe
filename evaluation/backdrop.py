"""Which backdrop a picture shows: day, night, sunset, meadow or ocean.

The world's backdrops differ in their colors from top to bottom (sky, horizon, ground or
sea), whatever a seed's light does to them. The judge reads a picture as the median color of
each of BANDS horizontal bands (medians: the subject covers a minority of any band) and names
the nearest backdrop, by the distance to the world's own pictures of each, scaled by how much
a seed's light spreads them. Its reference is drawn from the world at first use (seeds the
checks never use); it never sees a model's output. `python -m bench.readme_prompts` checks
it on world pictures with their subject before it judges a model.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from engine.prompt import BACKGROUNDS
from engine.world import background

BANDS = 8
_SIDE = 64  # reference pictures: band medians do not depend on the size
_REFERENCE_SEEDS = range(50_000, 50_040)


def band_colors(picture: np.ndarray) -> np.ndarray:
    """[BANDS * 3] float32: the median RGB of each horizontal band, top to bottom."""
    bands = np.array_split(picture.astype(np.float32), BANDS, axis=0)
    return np.concatenate([np.median(b.reshape(-1, 3), axis=0) for b in bands])


@lru_cache(maxsize=1)
def _reference() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [N, F], backdrop index per row [N], per-feature scale [F])."""
    rows, labels = [], []
    for k, name in enumerate(BACKGROUNDS):
        for seed in _REFERENCE_SEEDS:
            rows.append(band_colors(background(name, _SIDE, _SIDE, seed)))
            labels.append(k)
    features = np.stack(rows)
    spread = np.stack([features[np.array(labels) == k].std(axis=0) for k in range(len(BACKGROUNDS))])
    return features, np.array(labels), np.maximum(spread.mean(axis=0), 4.0)


def classify(pictures: list[np.ndarray]) -> list[str]:
    """The backdrop each RGB uint8 picture shows (nearest reference picture, scaled distance)."""
    features, labels, scale = _reference()
    names = []
    for picture in pictures:
        distance = (((features - band_colors(picture)) / scale) ** 2).sum(axis=1)
        names.append(BACKGROUNDS[int(labels[np.argmin(distance)])])
    return names
