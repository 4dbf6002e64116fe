"""How well `lvp eval`'s judge reads ground truth, beside the probe it replaced.

    python -m bench.judge_accuracy

The eval's adherence numbers can be no better than the classifier that reads them. This
draws 600 world pictures (every color, shape and backdrop; subject size 0.6-1.2 and any
angle, the range the world's motions and the model produce; a seed the judge's training
never used) and reports color and shape accuracy on them as drawn and blurred (the model's
frames are softer than the world's drawings), for the judge (evaluation/judge.py) and for the
subject probe trained jointly with the tiny model (what `lvp eval` used before the judge).
"""

from __future__ import annotations

import cv2
import numpy as np

from evaluation.judge import Judge, validation_pictures


class JointProbe(Judge):
    """The tiny model's own subject probe (shipped in its weights, trained beside it)."""

    def __init__(self) -> None:  # same input and outputs as the judge, other weights
        import torch

        from engine.models.tiny import WEIGHTS
        from engine.models.tiny.pipeline import load_model

        self.torch = torch
        self.model = load_model(WEIGHTS).probe


def main() -> None:
    pictures, truth = validation_pictures(600, 99)
    print(f"{'classifier':<14}{'blur sigma (px at 128x128)':>28}{'color':>8}{'shape':>8}")
    for name, reader in (("judge", Judge()), ("joint probe", JointProbe())):
        for sigma in (0.0, 1.0, 2.0):
            seen = [cv2.GaussianBlur(p, (0, 0), sigma) if sigma else p for p in pictures]
            colors, shapes = reader.classify(seen)
            color = np.mean([c == t[0] for c, t in zip(colors, truth, strict=True)])
            shape = np.mean([s == t[1] for s, t in zip(shapes, truth, strict=True)])
            print(f"{name:<14}{sigma:>28g}{color:>8.3f}{shape:>8.3f}")


if __name__ == "__main__":
    main()
