"""A tiny randomly initialised Whisper for tests: this package's, av-train's and other projects'.

Two layers of width 64 run a forward pass in milliseconds on a CPU, so fusion, generation and save / load can be
checked against exact invariants without any downloaded weights. ``init_std=0.3`` (Whisper's is 0.02) keeps a
random model's greedy output from being one repeated token.
"""

from __future__ import annotations

import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

TINY_WHISPER = {
    "d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
    "decoder_attention_heads": 4, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "num_mel_bins": 80,
    "vocab_size": 96, "max_source_positions": 100, "max_target_positions": 40, "pad_token_id": 0, "bos_token_id": 1,
    "eos_token_id": 2, "decoder_start_token_id": 1, "init_std": 0.3,
}
# the token ids of the real English-only tokenizer (tiny.en), for tiny models that use it
ENGLISH_TOKENS = {"vocab_size": 51864, "pad_token_id": 50256, "bos_token_id": 50256, "eos_token_id": 50256,
                  "decoder_start_token_id": 50257}


def tiny_whisper_config(**overrides) -> WhisperConfig:
    """`TINY_WHISPER` with ``overrides`` (any WhisperConfig argument)."""
    return WhisperConfig(**{**TINY_WHISPER, **overrides})


def tiny_whisper(seed: int | None = 0, **overrides) -> WhisperForConditionalGeneration:
    """A random tiny Whisper (train mode, as constructed); ``seed`` seeds torch first (None: leave it as it is)."""
    if seed is not None:
        torch.manual_seed(seed)
    return WhisperForConditionalGeneration(tiny_whisper_config(**overrides))


def open_gates(model, value: float = 0.7) -> None:
    """Set every fused block's gates of an `AVWhisperForConditionalGeneration` open (attention +value, dense
    -value), so that the video visibly changes the output in a test."""
    with torch.no_grad():
        for block in model.gated_xattn_blocks:
            block.attn_gate.fill_(value)
            block.ff_gate.fill_(-value)
