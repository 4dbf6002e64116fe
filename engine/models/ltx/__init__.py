"""The `ltx-video` backend: LTX-Video (Lightricks, open weights) through diffusers' components,
for GPU users. This file stays torch- and diffusers-free: the command line checks the weights
folder before any work starts without importing either; `pip install 'lvp[diffusers]'` brings
them. How the two stages use the model: engine/models/ltx/pipeline.py.
"""

from __future__ import annotations

import importlib.util
import unittest
from pathlib import Path

from engine.errors import InputError
from engine.models.base import Backend, BackendConfig, Capabilities, KeyframeModel, SegmentModel
from engine.models.ltx.state import LtxState
from engine.models.ltx.weights import check_folder


class LtxBackend(Backend):
    name = "ltx-video"
    # Stage 1 is the same model at a low resolution: on a GPU too (a GPU slot of its own).
    capabilities = Capabilities(strict_prompts=False, reads_memory=True, reads_image=True,
                                needs_weights=True, keyframes_on_gpu=True)
    state_type = LtxState

    @classmethod
    def check(cls, config: BackendConfig) -> None:
        check_folder(config.weights)
        if importlib.util.find_spec("diffusers") is None:
            raise InputError("the ltx-video model needs diffusers: pip install 'lvp[diffusers]' "
                             "(and a CUDA build of torch for a GPU, see README)")

    @classmethod
    def test_config(cls, folder: Path) -> BackendConfig:
        if importlib.util.find_spec("diffusers") is None or importlib.util.find_spec("transformers") is None:
            # The contract tests run over every registered backend; without the extra this one
            # is reported as skipped with the reason (pytest treats SkipTest as a skip).
            raise unittest.SkipTest("ltx-video needs the diffusers extra: pip install 'lvp[diffusers]'")
        from engine.models.ltx.testing import save_tiny_pipeline

        return BackendConfig(weights=save_tiny_pipeline(folder / "ltx-tiny"))

    def keyframe_model(self) -> KeyframeModel:
        from engine.models.ltx.pipeline import LtxKeyframeModel

        return LtxKeyframeModel(self.config)

    def segment_model(self) -> SegmentModel:
        from engine.models.ltx.pipeline import LtxSegmentModel

        return LtxSegmentModel(self.config)
