"""Additive noise for training and for robustness evaluation: white noise and babble at an SNR.

The SNR is 10 log10(P_speech / P_noise) with both powers measured over the whole clip. Babble is
the sum of other talkers' utterances, each scaled to unit power and read from a random start
(looped to the clip's length): speech-like noise, which masks speech far more than white noise
at the same SNR because it shares speech's spectrum and modulation.
"""

from __future__ import annotations

import math

import numpy as np


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def add_white_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` relative to the clip's power."""
    p = power(audio) + 1e-10
    noise = rng.standard_normal(audio.shape).astype(np.float32)
    return audio + noise * np.float32(math.sqrt(p / (10 ** (snr_db / 10))))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled so that 10 log10(P_speech / P_noise) = snr_db (same length arrays)."""
    if speech.shape != noise.shape:
        raise ValueError(f"speech {speech.shape} and noise {noise.shape} differ in length")
    p_noise = power(noise)
    if p_noise == 0.0:
        raise ValueError("the noise is silent: cannot scale it to an SNR")
    gain = np.sqrt(power(speech) / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (speech + gain * noise).astype(np.float32)


def _fit(x: np.ndarray, n: int, offset: int) -> np.ndarray:
    """``x`` looped to length ``n`` starting at ``offset``."""
    return np.resize(np.roll(x, -offset), n) if x.size else np.zeros(n, np.float32)


def babble(others: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of the other utterances, each at unit power and from a random start, looped to ``n``."""
    out = np.zeros(n, np.float64)
    for x in others:
        p = power(x)
        if p > 0:
            out += _fit(x, n, int(rng.integers(0, max(1, x.size)))) / np.sqrt(p)
    return out.astype(np.float32)


def pick_others(n_items: int, index: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct indices in [0, n_items) other than ``index`` (fewer when there are not enough)."""
    others = n_items - 1
    picks = rng.choice(others, size=min(k, others), replace=False)
    return picks + (picks >= index)  # i >= index stands for i + 1: skips ``index`` without an O(N) list
