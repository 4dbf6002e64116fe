"""LTX-Video's components loaded from a weights folder, and our sampler over them.

Why not `LTXConditionPipeline.__call__`: it takes conditions as pictures only (each one is
encoded again on every call, where a keyframe's state already holds its latent), wants sizes
divisible by 32 whatever the VAE, and draws its noise on the target device (so a GPU and a CPU
would draw different videos from one seed). The sampler below follows the same recipe:
- a condition at frame 0 replaces the first latent frame(s) in place ("hard": the transformer
  sees them at timestep 0 and they are never denoised, only lightly re-noised while sampling);
- a condition at any other frame index joins the sequence as extra tokens whose positions
  (RoPE coordinates) are that frame's time, the keyframe conditioning LTX-Video 0.9.5 and later
  were trained with; they are dropped from the result;
- flow-matching Euler steps on LTX's linear-quadratic sigma schedule, each token at its own
  timestep, and classifier-free guidance when `guidance > 1`.
Noise comes from a CPU torch.Generator and is then moved to the device.

Shapes: latents [B, C, F, h, w] with F = (frames - 1) / t + 1, h = H / s, w = W / s, where t and
s are the VAE's temporal and spatial compression (8 and 32 for LTX-Video); tokens [B, F*h*w, C]
(the transformer's patch size is 1).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from engine.models.base import BackendConfig
from engine.models.ltx.weights import check_folder

log = logging.getLogger("lvp.ltx")

COMPILE_ENV = "LVP_LTX_COMPILE"  # "1": torch.compile the transformer (worth it for long jobs)
DEVICE_ENV = "LVP_LTX_DEVICE"  # overrides the device (e.g. "cpu" on a machine with a GPU)


def resolve_device(config: BackendConfig) -> tuple[torch.device, torch.dtype]:
    """The device Ray gave this actor (a segment actor with --gpus-per-worker sees its GPU as
    cuda:0), else the config's; bfloat16 on a GPU unless the config asks for another dtype."""
    name = os.environ.get(DEVICE_ENV) or config.device
    if name == "cpu" and DEVICE_ENV not in os.environ and torch.cuda.is_available():
        name = "cuda"
    device = torch.device(name)
    dtype_name = config.dtype
    if device.type == "cuda" and dtype_name == "float32":
        dtype_name = "bfloat16"
    return device, getattr(torch, dtype_name)


def generator(seed: int, stage: int, index: int) -> torch.Generator:
    """A CPU generator seeded by (job seed, stage, index): the draws do not depend on the worker,
    the device, or the order segments are rendered in."""
    state = np.random.SeedSequence([seed, stage, index]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


@dataclass(frozen=True)
class Text:
    """One prompt encoded: embeddings [1, L, D] and attention mask [1, L]; the empty prompt's
    beside them when guidance needs it."""

    embeds: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class Condition:
    latent: torch.Tensor  # [1, C, f, h, w] normalised latent
    frame: int  # pixel frame index in the clip
    strength: float = 1.0


class Ltx:
    """The loaded components of one weights folder on one device (one per process)."""

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype) -> None:
        from diffusers import LTXConditionPipeline

        self.settings = check_folder(folder)
        self.device, self.dtype = device, dtype
        # The components as a user's folder holds them; the pipeline object only loads them.
        pipe = LTXConditionPipeline.from_pretrained(str(folder), dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        self.tokenizer = pipe.tokenizer
        self.text_encoder = pipe.text_encoder.to(device).eval()
        self.transformer = pipe.transformer.to(device).eval()
        self.vae = pipe.vae.to(device).eval()
        self.spatial = int(self.vae.spatial_compression_ratio)
        self.temporal = int(self.vae.temporal_compression_ratio)
        self.channels = int(self.transformer.config.in_channels)
        self.mean = self.vae.latents_mean.view(1, -1, 1, 1, 1).float().cpu()
        self.std = self.vae.latents_std.view(1, -1, 1, 1, 1).float().cpu()
        self.scale = float(self.vae.config.scaling_factor)
        if os.environ.get(COMPILE_ENV) == "1":
            self.transformer = torch.compile(self.transformer)
        self._text: dict[str, Text] = {}
        self._empty: Text | None = None

    # -- text ------------------------------------------------------------------------------

    @torch.inference_mode()
    def _encode_text(self, prompt: str) -> Text:
        tokens = self.tokenizer([prompt], padding="max_length", truncation=True,
                                max_length=self.settings.max_sequence_length,
                                add_special_tokens=True, return_tensors="pt")
        mask = tokens.attention_mask.bool().to(self.device)
        embeds = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]
        return Text(embeds.to(self.dtype), mask)

    def text(self, prompt: str) -> Text:
        """Encoded once per prompt (a job has few); bounded for a live job's many."""
        if prompt not in self._text:
            if len(self._text) >= 64:
                self._text.pop(next(iter(self._text)))
            self._text[prompt] = self._encode_text(prompt)
        return self._text[prompt]

    def empty(self) -> Text:
        if self._empty is None:
            self._empty = self._encode_text("")
        return self._empty

    # -- the VAE ---------------------------------------------------------------------------

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The smallest size at or above (width, height) the VAE takes."""
        s = self.spatial
        return -(-width // s) * s, -(-height // s) * s

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """[f, H, W, 3] uint8 -> normalised latent [1, C, (f - 1) / t + 1, H / s, W / s] float32 (CPU).

        The distribution's mode, not a sample: the same pixels always give the same latent."""
        x = torch.from_numpy(frames).to(self.device).permute(3, 0, 1, 2)[None]
        x = x.to(self.dtype) / 127.5 - 1.0
        z = self.vae.encode(x).latent_dist.mode().float().cpu()
        return (z - self.mean) * self.scale / self.std

    @torch.inference_mode()
    def decode(self, latent: torch.Tensor, gen: torch.Generator) -> np.ndarray:
        """Normalised latent [1, C, F, h, w] -> [(F - 1) * t + 1, H, W, 3] uint8."""
        z = latent.float() * self.std / self.scale + self.mean
        timestep = None
        if self.vae.config.timestep_conditioning:
            noise = torch.randn(z.shape, generator=gen)
            z = (1 - self.settings.decode_noise) * z + self.settings.decode_noise * noise
            timestep = torch.tensor([self.settings.decode_timestep], device=self.device, dtype=self.dtype)
        height, width = z.shape[-2] * self.spatial, z.shape[-1] * self.spatial
        if height * width > self.settings.tile_above:
            self.vae.enable_tiling()
        else:
            self.vae.disable_tiling()
        video = self.vae.decode(z.to(self.device, self.dtype), timestep, return_dict=False)[0]
        video = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return video.permute(1, 2, 3, 0).cpu().numpy()

    # -- sampling --------------------------------------------------------------------------

    def _coords(self, frames: int, h: int, w: int, frame_index: int) -> torch.Tensor:
        """[1, 3, frames*h*w] pixel coordinates (frame, y, x) of each latent token: latent frame
        j covers pixel frames up to j*t (frame 0 alone), so its time is max(j*t + 1 - t, 0)."""
        grid = torch.stack(torch.meshgrid(torch.arange(frames), torch.arange(h), torch.arange(w),
                                          indexing="ij")).reshape(1, 3, -1).float()
        t, s = self.temporal, self.spatial
        grid = grid * torch.tensor([t, s, s], dtype=torch.float32)[None, :, None]
        grid[:, 0] = (grid[:, 0] + 1 - t).clamp(min=0) + frame_index
        return grid

    @staticmethod
    def _pack(latent: torch.Tensor) -> torch.Tensor:
        return latent.flatten(2).transpose(1, 2)  # [1, C, F, h, w] -> [1, F*h*w, C]

    @torch.inference_mode()
    def sample(self, text: Text, width: int, height: int, num_frames: int, frame_rate: float,
               conditions: list[Condition], gen: torch.Generator) -> torch.Tensor:
        """A clip's normalised latent [1, C, F, h, w] (CPU, float32)."""
        settings = self.settings
        t = self.temporal
        if (num_frames - 1) % t or width % self.spatial or height % self.spatial:
            raise ValueError(f"ltx-video: {num_frames} frames of {width}x{height} do not fit the VAE "
                             f"({t}n+1 frames, sides divisible by {self.spatial})")
        frames, h, w = (num_frames - 1) // t + 1, height // self.spatial, width // self.spatial
        latent = torch.randn((1, self.channels, frames, h, w), generator=gen)
        frame_mask = torch.zeros(frames)
        extra, extra_coords, extra_mask = [], [], []
        for c in conditions:
            if c.frame == 0:
                f = c.latent.shape[2]
                latent[:, :, :f] = torch.lerp(latent[:, :, :f], c.latent, c.strength)
                frame_mask[:f] = c.strength
            else:
                noise = torch.randn(c.latent.shape, generator=gen)
                extra.append(self._pack(torch.lerp(noise, c.latent, c.strength)))
                extra_coords.append(self._coords(c.latent.shape[2], h, w, c.frame))
                extra_mask.append(torch.full((extra[-1].shape[1],), c.strength))
        tokens = torch.cat([*extra, self._pack(latent)], dim=1)  # [1, S, C]
        mask = torch.cat([*extra_mask, frame_mask.repeat_interleave(h * w)])  # [S]
        coords = torch.cat([*extra_coords, self._coords(frames, h, w, 0)], dim=2)
        coords[:, 0] /= frame_rate  # the transformer's time axis is in seconds
        hard = mask > 1 - 1e-6
        init = tokens.clone()

        guided = settings.guidance > 1.0
        embeds, text_mask = text.embeds, text.mask
        if guided:
            empty = self.empty()
            embeds, text_mask = torch.cat([empty.embeds, embeds]), torch.cat([empty.mask, text_mask])
        rows = 2 if guided else 1
        coords = coords.to(self.device).expand(rows, -1, -1)

        sigmas = [*_linear_quadratic(settings.steps), 0.0]
        for i, sigma in enumerate(sigmas[:-1]):
            if settings.cond_noise > 0:  # as LTX: keeps motion going out of a hard condition
                noisy = init + settings.cond_noise * sigma ** 2 * torch.randn(init.shape, generator=gen)
                tokens = torch.where(hard[None, :, None], noisy, tokens)
            token_sigma = torch.minimum(torch.full_like(mask, sigma), 1 - mask)  # [S]
            x = tokens.to(self.device, self.dtype).expand(rows, -1, -1)
            timestep = (token_sigma * 1000).to(self.device)[None].expand(rows, -1)
            with self.transformer.cache_context("cond_uncond"):
                v = self.transformer(hidden_states=x, encoder_hidden_states=embeds, timestep=timestep,
                                     encoder_attention_mask=text_mask, video_coords=coords,
                                     return_dict=False)[0].float().cpu()
            if guided:
                v = v[:1] + settings.guidance * (v[1:] - v[:1])
            # Tokens still at their own (lower) noise level wait until the schedule reaches it.
            moving = (sigma < 1 - mask + 1e-6)[None, :, None]
            tokens = torch.where(moving, tokens + (sigmas[i + 1] - sigma) * v, tokens)
        body = tokens[:, sum(e.shape[1] for e in extra):]
        return body.transpose(1, 2).reshape(1, self.channels, frames, h, w)

    def memory(self) -> str:
        """Peak memory of this process's work so far, for the log."""
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30
            return f"peak GPU memory {peak:.2f} GiB on {torch.cuda.get_device_name(self.device)}"
        import psutil

        return f"RSS {psutil.Process().memory_info().rss / 2**30:.2f} GiB (cpu)"


def _linear_quadratic(steps: int, threshold: float = 0.025) -> list[float]:
    """LTX-Video's sigma schedule: linear to `threshold` over the first half of the steps, then
    quadratic to 1; returned as descending sigmas from 1.0, one per step."""
    if steps < 2:
        return [1.0]
    linear_steps = steps // 2
    linear = [i * threshold / linear_steps for i in range(linear_steps)]
    diff = linear_steps - threshold * steps
    quadratic_steps = steps - linear_steps
    a = diff / (linear_steps * quadratic_steps ** 2)
    b = threshold / linear_steps - 2 * diff / quadratic_steps ** 2
    c = a * linear_steps ** 2
    quadratic = [a * i * i + b * i + c for i in range(linear_steps, steps)]
    return [1.0 - x for x in linear + quadratic]


@lru_cache(maxsize=1)
def load(folder: str, device: str, dtype: str) -> Ltx:
    """One copy of the components per process (Stage 1 and Stage 2 in one process share it)."""
    return Ltx(Path(folder), torch.device(device), getattr(torch, dtype))


def load_for(config: BackendConfig) -> Ltx:
    device, dtype = resolve_device(config)
    return load(str(config.weights), str(device), str(dtype).removeprefix("torch."))
