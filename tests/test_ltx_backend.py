"""The ltx-video backend (LTX-Video through diffusers) with tiny random components built in code
and saved as a pipeline folder, loaded as a user's downloaded folder is. Nothing is downloaded.

The contract every backend keeps (shapes, state serialisation, identical overlaps, same seed
same frames, any order) is checked for this one too by tests/test_backend_contract.py; these
tests add what is particular to it: keyframes at their frame indices, the weights folder's
errors, and renders through the real command line on Ray actors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers", reason="the ltx-video backend needs pip install 'lvp[diffusers]'")
pytest.importorskip("transformers", reason="the ltx-video backend needs pip install 'lvp[diffusers]'")

import av  # noqa: E402
import torch  # noqa: E402

from engine.errors import InputError  # noqa: E402
from engine.models.base import BackendConfig, check_backend, create_backend  # noqa: E402
from engine.models.ltx import LtxBackend  # noqa: E402
from engine.models.ltx.pipeline import _crop, _latent, _resize  # noqa: E402
from engine.models.ltx.weights import SETTINGS_FILE  # noqa: E402
from engine.stages import KeyframeStage, SegmentKeyframes, SegmentStage  # noqa: E402
from memory.replay import ReplayMemory  # noqa: E402
from tests.conftest import make_spec, make_timeline  # noqa: E402

PROMPT = "a pink star dancing on a night background"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    config = LtxBackend.test_config(tmp_path_factory.mktemp("ltx"))
    assert config.weights is not None
    return config.weights


def keyframes_for(backend, tmp_path: Path, duration: float = 7.0
                  ) -> tuple[object, list[SegmentKeyframes]]:
    spec = make_spec(tmp_path, prompt=PROMPT, duration=duration, fps=8, width=64, height=48,
                     overlap=4, model="ltx-video")
    timeline = make_timeline(spec)
    with ReplayMemory(tmp_path / "memory") as memory:
        stage = KeyframeStage(timeline, backend, memory)
        return timeline, [stage.run_segment(k) for k in range(timeline.num_segments)]


def keyframe_pictures(model, plan, keys: SegmentKeyframes) -> dict[int, np.ndarray]:
    """Frame index in the segment -> what the VAE makes of that keyframe's latent at the
    segment's size: the picture a hard-conditioned keyframe must reappear as."""
    width, height = model.size(plan.width, plan.height)
    pictures = {}
    for keyframe in keys.around():
        index = round(keyframe.t * plan.fps) - plan.frame_start
        if 0 <= index < plan.num_frames:
            latent = _latent(keyframe, width, height, model)
            decoded = model.decode(latent, torch.Generator().manual_seed(0))[:1]
            pictures[index] = _crop(decoded, plan.width, plan.height)[0].astype(np.float32)
    return pictures


def test_keyframes_reappear_at_their_frame_indices(weights, tmp_path):
    backend = create_backend("ltx-video", BackendConfig(weights=weights))
    timeline, keys = keyframes_for(backend, tmp_path)
    stage = SegmentStage(backend)
    checked = 0
    for k, segment_keys in enumerate(keys):
        plan = timeline.segment(k)
        frames = stage.render(plan, segment_keys).frames.astype(np.float32)
        for index, picture in keyframe_pictures(stage.model.model, plan, segment_keys).items():
            error = np.abs(frames - picture).mean(axis=(1, 2, 3))
            others = np.delete(error, index)
            # Exactly the keyframe (the tiny settings add no noise to hard conditions), and
            # no other frame is: the index is the keyframe's, not a neighbour's.
            assert error[index] < 0.5, f"segment {k}: keyframe frame {index} is off by {error[index]:.1f}"
            assert others.min() > 5.0, f"segment {k}: frame {np.argmin(others)} copies a keyframe too"
            checked += 1
    assert checked >= 2 * timeline.num_segments  # both ends of every segment, context included


def test_keyframes_stay_closest_with_conditioning_noise(weights, tmp_path):
    """With LTX's own noise on hard conditions (0.15) a keyframe's frame is no longer exact, but
    it is still the frame of the segment closest to the keyframe."""
    noisy = tmp_path / "noisy"
    shutil.copytree(weights, noisy)
    settings = json.loads((noisy / SETTINGS_FILE).read_text())
    (noisy / SETTINGS_FILE).write_text(json.dumps({**settings, "cond_noise": 0.15}))
    backend = create_backend("ltx-video", BackendConfig(weights=noisy))
    timeline, keys = keyframes_for(backend, tmp_path / "render", duration=3.0)
    stage = SegmentStage(backend)
    plan = timeline.segment(0)
    frames = stage.render(plan, keys[0]).frames.astype(np.float32)
    pictures = keyframe_pictures(stage.model.model, plan, keys[0])
    assert len(pictures) >= 3
    for index, picture in pictures.items():
        error = np.abs(frames - picture).mean(axis=(1, 2, 3))
        assert int(np.argmin(error)) == index
        assert 0.5 < error[index] < 0.8 * np.median(error)


def test_segments_have_the_plan_shape_at_sizes_the_vae_does_not_take(weights, tmp_path):
    """66x50 is not divisible by the VAE's 4: rendered at 68x52 and cropped, every frame there."""
    backend = create_backend("ltx-video", BackendConfig(weights=weights))
    spec = make_spec(tmp_path, prompt=PROMPT, duration=2.0, fps=8, width=66, height=50, overlap=4,
                     model="ltx-video")
    timeline = make_timeline(spec)
    with ReplayMemory(tmp_path / "memory") as memory:
        keys = KeyframeStage(timeline, backend, memory).run_segment(0)
    frames = SegmentStage(backend).render(timeline.segment(0), keys).frames
    assert frames.shape == (16, 50, 66, 3) and frames.dtype == np.uint8
    assert frames.std(axis=(1, 2, 3)).min() > 1.0  # every frame is a picture


def test_first_keyframe_of_an_image_job_is_the_picture(weights, tmp_path):
    backend = create_backend("ltx-video", BackendConfig(weights=weights))
    spec = make_spec(tmp_path, prompt=PROMPT, duration=2.0, fps=8, width=64, height=64,
                     model="ltx-video")
    timeline = make_timeline(spec)
    model = backend.keyframe_model()
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[16:48, 16:48] = (250, 40, 200)
    plain = model.next_keyframe(timeline.keyframe_plan(0, 0.0), (), _empty_memory())
    with_image = model.next_keyframe(timeline.keyframe_plan(0, 0.0, picture), (), _empty_memory())
    state = with_image.state
    reference = model.model.encode(_resize(picture, state.width, state.height)[None])[0]
    own = torch.from_numpy(state.latent.astype(np.float32))
    drawn = torch.from_numpy(plain.state.latent.astype(np.float32))
    # The tiny VAE is random, so compare latents: the keyframe is the picture's (float16 storage
    # aside), not what the prompt alone draws.
    assert (own - reference).abs().max() < 1e-2
    assert (drawn - reference).abs().mean() > 0.1


def _empty_memory():
    from engine.models.base import MemoryView

    return MemoryView()


# -- the weights folder ------------------------------------------------------------------------

def broken_folders(weights: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (folder, what the error must name)."""
    cases: dict[str, tuple[Path, str]] = {"missing folder": (root / "nowhere", "nowhere")}

    def copy(name: str) -> Path:
        return Path(shutil.copytree(weights, root / name))

    no_index = copy("no-index")
    (no_index / "model_index.json").unlink()
    cases["no model_index.json"] = (no_index, "model_index.json")
    no_vae = copy("no-vae")
    shutil.rmtree(no_vae / "vae")
    cases["no component"] = (no_vae, "vae/")
    no_file = copy("no-weights-file")
    for path in (no_file / "transformer").glob("*.safetensors"):
        path.unlink()
    cases["no weights file"] = (no_file, "in transformer/")
    return cases


def test_a_bad_weights_folder_is_a_one_line_input_error(weights, tmp_path):
    for name, (folder, named) in broken_folders(weights, tmp_path).items():
        with pytest.raises(InputError) as caught:
            check_backend("ltx-video", BackendConfig(weights=folder))
        message = str(caught.value)
        assert named in message and "\n" not in message, f"{name}: {message}"
    with pytest.raises(InputError, match="--weights FOLDER"):
        check_backend("ltx-video", BackendConfig())
    check_backend("ltx-video", BackendConfig(weights=weights))  # the complete folder passes


def test_choosing_and_checking_the_backend_imports_neither_torch_nor_diffusers(weights):
    code = ("import sys; from engine.models.base import check_backend, BackendConfig; "
            f"check_backend('ltx-video', BackendConfig(weights={str(weights)!r})); "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.subprocess
def test_the_command_line_refuses_bad_weights_folders_in_one_line(weights, tmp_path):
    for name, (folder, named) in broken_folders(weights, tmp_path).items():
        run = subprocess.run([sys.executable, "-m", "cli", "render", "--model", "ltx-video",
                              "--weights", str(folder), "--prompt", PROMPT, "--duration", "2",
                              "--size", "64x64", "--out", str(tmp_path / "never.mp4")],
                             capture_output=True, text=True, timeout=120)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and named in lines[0], f"{name}: {run.stderr}"
        assert not (tmp_path / "never.mp4").exists()


# -- the real command line on Ray actors --------------------------------------------------------

def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_lvp_render_on_ray_actors_is_the_same_video_with_one_or_two_workers(weights, tmp_path):
    videos = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.mp4"
        run = subprocess.run(
            [sys.executable, "-m", "cli", "render", "--model", "ltx-video", "--weights", str(weights),
             "--prompt", PROMPT, "--duration", "6", "--fps", "8", "--size", "64x64", "--seed", "5",
             "--executor", "ray", "--workers", str(workers), "--quiet", "--out", str(out)],
            capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        videos[workers] = decode(out)
    assert videos[1].shape == (48, 64, 64, 3)
    assert videos[1].std() > 1.0
    assert np.array_equal(videos[1], videos[2])
