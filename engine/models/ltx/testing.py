"""Tiny random LTX-Video components built in code and saved as a pipeline folder (diffusers'
own tests build the same kind): the test suite loads them exactly as a user's downloaded
folder is loaded, and nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

from engine.models.ltx.weights import SETTINGS_FILE

# Words the tiny tokenizer knows (others become <unk>): enough for the tests' prompts.
WORDS = ("a", "an", "the", "red", "green", "blue", "pink", "yellow", "white", "black", "circle",
         "square", "star", "triangle", "dancing", "bouncing", "spinning", "drifting", "on", "over",
         "in", "night", "day", "sunset", "ocean", "forest", "background", "sky")
# Settings for the tiny components: 2 steps, no guidance pass, small Stage 1 frames, and no
# noise on hard-conditioned latents, so a keyframe's frame in a segment is exactly what the VAE
# makes of its latent (the tests measure that; they set the noise back where they need it).
TINY_SETTINGS = {"steps": 2, "guidance": 1.0, "keyframe_short_side": 32, "max_sequence_length": 16,
                 "cond_noise": 0.0}


def tiny_tokenizer(max_length: int | None = None):  # -> transformers.T5TokenizerFast
    """A T5 (Unigram) tokenizer over WORDS, built in code (bench/ltx_gpu.py gives it the real
    128-token length: the padded length, not the vocabulary, sets the encoder's work)."""
    from transformers import T5TokenizerFast

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab = specials + [("\u2581" + w, -1.0 - i / 100) for i, w in enumerate(WORDS)]
    return T5TokenizerFast(vocab=vocab, extra_ids=0,
                           model_max_length=max_length or TINY_SETTINGS["max_sequence_length"])


def save_tiny_pipeline(folder: Path, seed: int = 0) -> Path:
    """Write (once) a complete LTX-Video pipeline folder of tiny random components to `folder`:
    latents of 8 channels, the VAE compresses 4x in space and time, a one-layer transformer,
    a two-layer T5 encoder."""
    if (folder / "model_index.json").is_file():
        return folder
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4,
        attention_head_dim=8, cross_attention_dim=32, num_layers=1, caption_channels=32)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4,
        timestep_conditioning=False, patch_size=1, patch_size_t=1, encoder_causal=True,
        # A causal decoder (LTX-Video's is not): each frame depends only on the latents up to
        # it, so a clip's frame 0 is exactly what the VAE makes of the keyframe's latent, which
        # the tests can measure whatever the random weights.
        decoder_causal=True)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8))
    pipe = LTXConditionPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                                text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer)
    partial = folder.with_name(folder.name + ".partial")
    pipe.save_pretrained(str(partial))
    (partial / SETTINGS_FILE).write_text(json.dumps(TINY_SETTINGS, indent=2) + "\n")
    partial.rename(folder)  # complete or absent: a folder half written is never taken for weights
    return folder
