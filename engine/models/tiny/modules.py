"""The tiny model's networks, parts before the whole (read top to bottom).

  TextEncoder      prompt tokens        -> tokens [B, L, D], pooled [B, D]
  ImageEncoder     64x64 picture        -> tokens [B, 16, D], pooled [B, D], subject pose [B, 3]
  AudioEncoder     beat envelope window -> rhythm tokens [B, 8, D], pooled [B, D]
  GatedFusion      text x (image, audio) cross-attention, gates from the text
                   -> condition [B, D] and fused prompt tokens [B, L, D]
  PoseFlow         flow-matching MLP: the next keyframe's subject pose
  CanvasUNet       flow-matching U-Net: the next keyframe's 32x32 layered canvas; FiLM from
                   the condition, cross-attention to the fused prompt tokens at 16x16 and 8x8
  Trajectory       Stage 2: the subject's pose at any frame between two keyframes
  Upsampler        canvas layers 32x32 -> 64x64 (learned residual over bilinear)
  SubjectProbe     evaluation only: color and shape classifier for rendered frames
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.tiny.layers import CANVAS_CHANNELS
from engine.models.tiny.physics import MotionLaw
from engine.models.tiny.tokenizer import MAX_TOKENS, PAD, VOCAB_SIZE
from engine.models.tiny.trajectory import KEY_DIM
from engine.prompt import COLORS, SHAPES

HISTORY = 3  # poses of earlier keyframes the pose model sees
IMAGE_SLOT = 6  # reference picture squeezed to 32x32 (RGB) + sprite-sized crop (RGB)
COND_CHANNELS = 2 * CANVAS_CHANNELS + IMAGE_SLOT  # previous canvas, memory anchor, image slot
TRAJ_FEATURES = 2 * KEY_DIM + 4  # both keyframes' pose and motion, u, energy, 2 phase deltas
NUM_COLORS, NUM_SHAPES = len(COLORS), len(SHAPES)  # the attribute and probe heads' classes


@dataclass(frozen=True)
class TinyConfig:
    dim: int = 64  # width of every conditioning token
    text_layers: int = 2
    heads: int = 4
    unet_channels: tuple[int, int, int] = (32, 64, 128)
    pose_hidden: int = 256
    traj_hidden: int = 256
    upsampler_channels: int = 32


def timestep_embedding(tau: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the flow time tau in [0, 1]: [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=tau.device) / half)
    angles = tau[:, None] * 1000.0 * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TextEncoder(nn.Module):
    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, cfg.dim)
        self.position = nn.Parameter(torch.zeros(MAX_TOKENS, cfg.dim))
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pad = ids == PAD  # [B, L]
        x = self.blocks(self.embed(ids) + self.position, src_key_padding_mask=pad)
        x = self.norm(x)  # [B, L, D]
        return x, x[:, 0], pad  # tokens, CLS summary, padding mask


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


class ImageEncoder(nn.Module):
    """A 64x64 picture -> 4x4 grid of tokens, a summary, and where the subject is."""

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.convs = nn.Sequential(_conv_block(3, 32, 2), _conv_block(32, 48, 2),
                                   _conv_block(48, d, 2), _conv_block(d, d, 2))  # 64 -> 4
        self.position = nn.Parameter(torch.zeros(16, d))
        self.pose = nn.Sequential(nn.Flatten(), nn.Linear(16 * d, 128), nn.SiLU(), nn.Linear(128, 3))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat = self.convs(image)  # [B, D, 4, 4]
        tokens = feat.flatten(2).transpose(1, 2) + self.position  # [B, 16, D]
        pose = self.pose(feat)  # [B, 3]: x, y, scale
        return tokens, tokens.mean(1), pose


class AudioEncoder(nn.Module):
    """Beat envelope on a fixed 30/s grid [B, AUDIO_WINDOW] -> rhythm tokens [B, 8, D]."""

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.convs = nn.Sequential(
            nn.Conv1d(1, 32, 5, 1, 2), nn.SiLU(), nn.Conv1d(32, 48, 5, 2, 2), nn.SiLU(),
            nn.Conv1d(48, d, 5, 2, 2), nn.SiLU(), nn.AdaptiveAvgPool1d(8))
        self.position = nn.Parameter(torch.zeros(8, d))

    def forward(self, envelope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.convs(envelope[:, None]).transpose(1, 2) + self.position  # [B, 8, D]
        return tokens, tokens.mean(1)


class GatedFusion(nn.Module):
    """Text tokens attend to image and audio tokens; text-computed gates scale each stream.

    A prompt about a dancing subject can open the audio gate and a prompt that contradicts
    the reference image can close the image gate: the gates are learned per channel from
    the prompt summary. Missing modalities are replaced by learned null tokens.
    """

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.image_attn = nn.MultiheadAttention(d, cfg.heads, batch_first=True)
        self.audio_attn = nn.MultiheadAttention(d, cfg.heads, batch_first=True)
        self.gates = nn.Linear(d, 2 * d)
        self.null_image = nn.Parameter(torch.zeros(1, 1, d))
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))
        self.token_norm = nn.LayerNorm(d)

    def forward(self, text: torch.Tensor, pad: torch.Tensor, summary: torch.Tensor,
                image: torch.Tensor | None, has_image: torch.Tensor,
                audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = text.shape[0]
        null = self.null_image.expand(b, 16, -1)
        image = null if image is None else torch.where(has_image[:, None, None], image, null)
        from_image, _ = self.image_attn(text, image, image, need_weights=False)
        from_audio, _ = self.audio_attn(text, audio, audio, need_weights=False)
        gates = torch.sigmoid(self.gates(summary))  # [B, 2D]
        g_image, g_audio = gates[:, None].chunk(2, dim=-1)
        fused = text + g_image * from_image + g_audio * from_audio  # [B, L, D]
        keep = (~pad).float()[..., None]
        pooled = (fused * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        # condition [B, D], fused tokens [B, L, D] (the canvas attends to them), gates
        return self.out(pooled), self.token_norm(fused), gates


class PoseFlow(nn.Module):
    """Velocity field for the next keyframe's key (pose, velocity, acceleration; see
    trajectory.py) *as a correction to the motion law's prediction* (physics.py: the last key
    carried one keyframe forward under the prompt's law of motion), given the condition, the
    history of keys and that prediction. A network rolled out on its own whole-pose
    predictions lost energy every keyframe; a law that keeps a motion's energy needs only a
    small correction, and a correction of zero keeps the motion going."""

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        inputs = 2 * KEY_DIM + 32 + cfg.dim + HISTORY * (KEY_DIM + 1) + 2
        h = cfg.pose_hidden
        self.net = nn.Sequential(nn.Linear(inputs, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(),
                                 nn.Linear(h, h), nn.SiLU(), nn.Linear(h, KEY_DIM))

    def forward(self, noisy: torch.Tensor, tau: torch.Tensor, cond: torch.Tensor,
                history: torch.Tensor, beat: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        # noisy [B, KEY_DIM], tau [B], cond [B, D], history [B, HISTORY*(KEY_DIM+1)], beat [B, 2],
        # base [B, KEY_DIM]: the law's prediction, normalised (zeros without a history)
        # The history is read in the same normalised units as the key it predicts: a bounce's
        # phase is in small differences of height and large ones of velocity.
        keys = history.view(len(history), HISTORY, KEY_DIM + 1)
        present = keys[..., KEY_DIM:]
        keys = torch.cat([normalise_pose(keys[..., :KEY_DIM]) * present, present], dim=-1)
        x = torch.cat([noisy, timestep_embedding(tau, 32), cond, keys.flatten(1), beat, base], dim=-1)
        return self.net(x)


class FiLMResBlock(nn.Module):
    def __init__(self, channels: int, emb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.film = nn.Linear(emb, 2 * channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb)[..., None, None].chunk(2, dim=1)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h) * (1.0 + scale) + shift
        return x + self.conv2(F.silu(h))


class CrossAttention(nn.Module):
    """Every canvas position reads the prompt's tokens: where words become a drawn shape.

    FiLM alone gives the U-Net one global scale and shift per channel; drawing a star rather
    than a square needs each position to know which shape it belongs to (measured: FiLM-only
    weights drew the prompt's shape at chance while the condition encoded it at 96%).
    """

    def __init__(self, channels: int, side: int, dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.position = nn.Parameter(torch.randn(1, side * side, channels) * 0.02)
        self.attn = nn.MultiheadAttention(channels, heads, kdim=dim, vdim=dim, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)  # starts as the identity

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        query = self.norm(x).flatten(2).transpose(1, 2) + self.position  # [B, h*w, c]
        out, _ = self.attn(query, tokens, tokens, key_padding_mask=pad, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class CanvasUNet(nn.Module):
    """Velocity field for a 32x32 canvas; earlier canvases come in as extra channels."""

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.unet_channels
        emb = 128
        self.embed = nn.Sequential(nn.Linear(cfg.dim + 32 + 3, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.stem = nn.Conv2d(CANVAS_CHANNELS + COND_CHANNELS, c1, 3, 1, 1)
        self.enc1 = FiLMResBlock(c1, emb)
        self.down1 = nn.Conv2d(c1, c2, 3, 2, 1)  # 32 -> 16
        self.enc2 = FiLMResBlock(c2, emb)
        self.attn_enc2 = CrossAttention(c2, 16, cfg.dim, cfg.heads)
        self.down2 = nn.Conv2d(c2, c3, 3, 2, 1)  # 16 -> 8
        self.mid1 = FiLMResBlock(c3, emb)
        self.attn_mid = CrossAttention(c3, 8, cfg.dim, cfg.heads)
        self.mid2 = FiLMResBlock(c3, emb)
        self.up2 = nn.ConvTranspose2d(c3, c2, 4, 2, 1)  # 8 -> 16
        self.dec2 = FiLMResBlock(c2, emb)
        self.attn_dec2 = CrossAttention(c2, 16, cfg.dim, cfg.heads)
        self.merge2 = nn.Conv2d(2 * c2, c2, 1)
        self.up1 = nn.ConvTranspose2d(c2, c1, 4, 2, 1)  # 16 -> 32
        self.merge1 = nn.Conv2d(2 * c1, c1, 1)
        self.dec1 = FiLMResBlock(c1, emb)
        self.head = nn.Sequential(nn.GroupNorm(8, c1), nn.SiLU(), nn.Conv2d(c1, CANVAS_CHANNELS, 3, 1, 1))

    def forward(self, noisy: torch.Tensor, tau: torch.Tensor, cond: torch.Tensor,
                tokens: torch.Tensor, pad: torch.Tensor, context: torch.Tensor,
                flags: torch.Tensor) -> torch.Tensor:
        # noisy [B, 7, 32, 32], tau [B], cond [B, D], tokens [B, L, D], pad [B, L],
        # context [B, 20, 32, 32], flags [B, 3]
        emb = self.embed(torch.cat([cond, timestep_embedding(tau, 32), flags], dim=-1))
        h1 = self.enc1(self.stem(torch.cat([noisy, context], dim=1)), emb)  # [B, c1, 32, 32]
        h2 = self.attn_enc2(self.enc2(self.down1(h1), emb), tokens, pad)  # [B, c2, 16, 16]
        h = self.attn_mid(self.mid1(self.down2(h2), emb), tokens, pad)  # [B, c3, 8, 8]
        h = self.mid2(h, emb)
        h = self.dec2(self.merge2(torch.cat([self.up2(h), h2], dim=1)), emb)
        h = self.attn_dec2(h, tokens, pad)
        h = self.dec1(self.merge1(torch.cat([self.up1(h), h1], dim=1)), emb)
        return self.head(h)


class Trajectory(nn.Module):
    """Pose at any frame: a learned correction to the physical path between two keyframes
    (trajectory.physical_path).

    Output is [dx, dy, dscale, dangle] added to that path, so the audio can make the subject
    hop and swell between keyframes.
    """

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        h = cfg.traj_hidden
        self.net = nn.Sequential(nn.Linear(TRAJ_FEATURES + cfg.dim, h), nn.SiLU(), nn.Linear(h, h),
                                 nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, 4))

    def forward(self, features: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([features, cond], dim=-1))


class Upsampler(nn.Module):
    """4-channel layer 32x32 -> 64x64: bilinear plus a learned residual that restores edges."""

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        c = cfg.upsampler_channels
        self.net = nn.Sequential(nn.Conv2d(4, c, 3, 1, 1), nn.SiLU(), nn.Conv2d(c, c, 3, 1, 1),
                                 nn.SiLU(), nn.Conv2d(c, c, 3, 1, 1), nn.SiLU(), nn.Conv2d(c, 4, 3, 1, 1))

    def forward(self, layer: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(layer, scale_factor=2, mode="bilinear", align_corners=False)
        return up + self.net(up)


class SubjectProbe(nn.Module):
    """Evaluation classifier (trained on world renders): which color and shape is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(_conv_block(3, 32, 1), _conv_block(32, 48, 2),
                                   _conv_block(48, 64, 2), _conv_block(64, 96, 2),
                                   nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.color = nn.Linear(96, NUM_COLORS)
        self.shape = nn.Linear(96, NUM_SHAPES)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.convs(image)
        return self.color(feat), self.shape(feat)


class TinyVideoModel(nn.Module):
    """Every part in one module, so one safetensors file holds the whole model."""

    def __init__(self, cfg: TinyConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or TinyConfig()
        self.text = TextEncoder(cfg)
        self.image = ImageEncoder(cfg)
        self.audio = AudioEncoder(cfg)
        self.fusion = GatedFusion(cfg)
        self.pose = PoseFlow(cfg)
        self.canvas = CanvasUNet(cfg)
        self.trajectory = Trajectory(cfg)
        self.upsampler = Upsampler(cfg)
        self.probe = SubjectProbe()
        self.text_projection = nn.Linear(cfg.dim, cfg.dim)  # contrastive heads
        self.image_projection = nn.Linear(cfg.dim, cfg.dim)
        # Training only: the condition must name the subject's color and shape (supervised
        # by the world's parse of the prompt), so the canvas gets a semantic signal early.
        self.attributes = nn.Linear(cfg.dim, NUM_COLORS + NUM_SHAPES)
        # The law of motion's numbers (physics.py): fitted to the world's clips by training.
        self.law = MotionLaw()

    def condition_tokens(self, ids: torch.Tensor, image: torch.Tensor | None,
                         has_image: torch.Tensor, envelope: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fused prompt + reference image + audio: condition [B, D], tokens [B, L, D], padding."""
        image_tokens = self.image(image)[0] if image is not None else None
        return self.fuse(self.text(ids), image_tokens, has_image, envelope)

    def fuse(self, text: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
             image_tokens: torch.Tensor | None, has_image: torch.Tensor, envelope: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`condition_tokens` from an already encoded prompt and picture (Stage 1 caches them:
        only the audio window changes from one keyframe to the next)."""
        tokens, summary, pad = text
        audio_tokens, _ = self.audio(envelope)
        cond, fused, _ = self.fusion(tokens, pad, summary, image_tokens, has_image, audio_tokens)
        return cond, fused, pad

    def condition(self, ids: torch.Tensor, image: torch.Tensor | None, has_image: torch.Tensor,
                  envelope: torch.Tensor) -> torch.Tensor:
        """Fused prompt + reference image + audio condition [B, D]."""
        return self.condition_tokens(ids, image, has_image, envelope)[0]

    def alignment(self, ids: torch.Tensor, picture: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of prompts and pictures [B_text, B_picture]: prompt adherence."""
        _, summary, _ = self.text(ids)
        _, pooled, _ = self.image(picture)
        t = F.normalize(self.text_projection(summary), dim=-1)
        v = F.normalize(self.image_projection(pooled), dim=-1)
        return t @ v.T


# Keys are normalised for the flow model so every coordinate spreads over about [-1, 1]:
# pose (x, y, scale, cos, sin), velocity and acceleration of (x, y, scale, angle).
POSE_CENTER = (0.5, 0.5, 1.0, 0.0, 0.0) + (0.0,) * 8
POSE_SPREAD = (3.0, 3.0, 3.0, 1.0, 1.0) + (3.0, 1.0, 1.0, 0.5) + (1.0, 0.4, 0.2, 0.3)
TRAJ_SPREAD = (5.0, 5.0, 5.0, 1.0)  # residual [dx, dy, dscale, dangle] scaling


def normalise_pose(pose: torch.Tensor) -> torch.Tensor:
    return (pose - pose.new_tensor(POSE_CENTER)) * pose.new_tensor(POSE_SPREAD)


def denormalise_pose(z: torch.Tensor) -> torch.Tensor:
    return z / z.new_tensor(POSE_SPREAD) + z.new_tensor(POSE_CENTER)


POSE_SAMPLING_STEPS = 8
# Poses are sampled from narrowed noise: the world's motion is nearly determined by the last
# poses, and full-width samples spaced keyframes unevenly (the speed jumped every second).
# Seam ratio on smooth-motion clips, mean of 3: 1.33 at 0.5, 1.19 at 0.25, 1.15 at 0.1.
POSE_TEMPERATURE = 0.25


# The flow's variable is the correction to the law's prediction, in normalised units times
# this gain once there is a history (the correction is small; the first key is the whole pose).
RESIDUAL_GAIN = 16.0


def pose_base(law: MotionLaw, history: torch.Tensor, motion: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The law's prediction of the next key, normalised [B, KEY_DIM] (zeros, the centre of the
    pose prior, where there is no history), and the flow's gain [B, 1]."""
    keys = history.view(len(history), HISTORY, KEY_DIM + 1)
    present = keys[:, -1, KEY_DIM:] > 0
    if not present.any():
        return torch.zeros_like(keys[:, -1, :KEY_DIM]), torch.ones_like(present, dtype=keys.dtype)
    base = normalise_pose(law.extrapolate(keys[:, -1, :KEY_DIM], motion)) * present
    return base, torch.where(present, RESIDUAL_GAIN, 1.0)


def pose_target(key: torch.Tensor, base: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """A key [B, KEY_DIM] as the flow's variable: its correction to the law's prediction."""
    return (normalise_pose(key) - base) * gain


def sample_pose(model: TinyVideoModel, noise: torch.Tensor, cond: torch.Tensor,
                history: torch.Tensor, beat: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """Integrate the pose flow from `noise` [B, KEY_DIM] (Euler): the next key [B, KEY_DIM],
    the law's prediction for `motion` [B] (class indices, physics.py) plus the sampled
    correction, tidied the way a keyframe stores it (unit cos/sin, scale at least 0.2).
    Inference and the training rollout share it, so the model learns from the poses it will
    really be fed back."""
    base, gain = pose_base(model.law, history, motion)
    z = noise
    for i in range(POSE_SAMPLING_STEPS):
        tau = torch.full((len(z),), i / POSE_SAMPLING_STEPS)
        z = z + model.pose(z, tau, cond, history, beat, base) / POSE_SAMPLING_STEPS
    pose = denormalise_pose(base + z / gain)
    turn = F.normalize(pose[:, 3:5], dim=-1)
    pose = torch.cat([pose[:, :2], pose[:, 2:3].clamp(min=0.2), turn, pose[:, 5:]], dim=-1)
    # A first key (no history) starts on its motion's own size; later ones follow the law.
    first = gain[:, 0] == 1.0
    if first.any():
        pose = torch.where(first[:, None], model.law.settle(pose, motion), pose)
        # Where a drifting subject starts: the x noise's own quantile, spread evenly along the
        # wrap (even only while a first key's noise is standard normal, as every caller draws it).
        along = 0.5 * (1.0 + torch.erf(noise[:, 0] / math.sqrt(2.0)))
        pose = torch.where(first[:, None], model.law.place_on_wrap(pose, motion, along), pose)
    pose = model.law.tidy(pose, motion, first)
    # What the world keeps still, the law alone sets (no sampled correction, no motion).
    law = torch.where(first[:, None], pose, denormalise_pose(base))
    return model.law.keep_still(pose, law, motion)
