"""The bundled learned model (`tiny`). This file stays torch-free: the command line checks
the weights exist before any work starts without paying torch's import time."""

from __future__ import annotations

from pathlib import Path

from engine.errors import InputError
from engine.models.base import Backend, BackendConfig, Capabilities, KeyframeModel, SegmentModel
from engine.models.tiny.state import TinyState

WEIGHTS = Path(__file__).parent / "weights" / "tiny.safetensors"


def weights_path(config: BackendConfig) -> Path:
    return Path(config.weights) if config.weights is not None else WEIGHTS


class TinyBackend(Backend):
    name = "tiny"
    capabilities = Capabilities(needs_weights=True)
    state_type = TinyState

    @classmethod
    def check(cls, config: BackendConfig) -> None:
        if (config.device, config.dtype) != ("cpu", "float32"):
            raise InputError(f"the tiny model runs on cpu in float32, not {config.device} "
                             f"{config.dtype}")
        path = weights_path(config)
        if not path.is_file():
            raise InputError(f"tiny model weights not found: {path} (make them with `lvp train`)")

    @classmethod
    def test_config(cls, folder: Path) -> BackendConfig:
        from engine.models.tiny.pipeline import save_random_weights

        return BackendConfig(weights=save_random_weights(folder / "tiny-random.safetensors"))

    def keyframe_model(self) -> KeyframeModel:
        from engine.models.tiny.pipeline import TinyKeyframeModel

        return TinyKeyframeModel(weights_path(self.config))

    def segment_model(self) -> SegmentModel:
        from engine.models.tiny.pipeline import TinySegmentModel

        return TinySegmentModel(weights_path(self.config))

