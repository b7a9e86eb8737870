"""Whisper log-mel features of short clips, without padding every clip to 30 s.

Whisper's feature extractor zero-pads the audio to 30 s and then computes

    L = log10(max(mel_power, 1e-10));  L = max(L, max(L) - 8);  x = (L + 4) / 4

`log_mel` returns the first T frames of exactly that (same STFT, same zero padding after the
clip, same clip-wide maximum), where T covers every frame whose window touches the clip, rounded
up to an even number. Every later frame of Whisper's 30-s features sees only zeros, so its value
is the clamp floor `max(x.max() - 2, -1.5)` of that clip. `pad_log_mel_batch` pads with exactly
that value, so a batch padded to its longest clip equals Whisper's features of the zero-padded
audio (frames [:T_max]).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.nn import functional as F

SAMPLING_RATE = 16_000
# log-mel of digital silence: (log10(1e-10) + 4) / 4
SILENCE_LOG_MEL = -1.5


@lru_cache(maxsize=8)
def _default_feature_extractor(n_mels: int):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=n_mels)


def _extractor_params(feature_extractor_or_n_mels) -> tuple[torch.Tensor, int, int, int]:
    fe = feature_extractor_or_n_mels
    if isinstance(fe, (int, np.integer)):
        fe = _default_feature_extractor(int(fe))
    mel_filters = torch.as_tensor(np.asarray(fe.mel_filters), dtype=torch.float32)  # [n_freq, n_mels]
    n_samples = int(getattr(fe, "n_samples", 30 * SAMPLING_RATE))
    return mel_filters, int(fe.n_fft), int(fe.hop_length), n_samples


def num_log_mel_frames(num_samples: int, n_fft: int = 400, hop_length: int = 160, max_frames: int | None = 3000) -> int:
    """Frames `log_mel` returns for a clip of `num_samples` samples: every frame whose (centred)
    window touches the clip, rounded up to even; capped at `max_frames` (Whisper's 3000) for clips
    that fit in 30 s."""
    half = n_fft // 2
    t = max(0, (num_samples - 1 + half)) // hop_length + 1 if num_samples > 0 else 2
    t += t % 2
    if max_frames is not None and num_samples <= max_frames * hop_length:
        t = min(t, max_frames)
    return max(t, 2)


def log_mel(audio_16k: np.ndarray | torch.Tensor, feature_extractor_or_n_mels=80) -> torch.Tensor:
    """Whisper's log-mel of one 16 kHz clip, not padded to 30 s.

    Args:
        audio_16k: mono waveform [N] (float, 16 kHz).
        feature_extractor_or_n_mels: a `WhisperFeatureExtractor` (its mel filters, n_fft, hop) or
            the number of mel bins (80 for Whisper <= v2, 128 for large-v3).
    Returns:
        float32 [n_mels, T], T even (see `num_log_mel_frames`).
    """
    mel_filters, n_fft, hop, n_samples = _extractor_params(feature_extractor_or_n_mels)
    wav = torch.as_tensor(np.asarray(audio_16k) if not torch.is_tensor(audio_16k) else audio_16k)
    wav = wav.detach().to(torch.float32).cpu().reshape(-1)
    n = wav.numel()
    t = num_log_mel_frames(n, n_fft, hop, max_frames=n_samples // hop)
    # Zeros after the clip, as Whisper's padding to 30 s; long enough that frames [0, T) never
    # reach torch.stft's reflect padding on the right.
    total = max(n, hop * t + n_fft)
    wav = F.pad(wav, (0, total - n))
    window = torch.hann_window(n_fft)
    stft = torch.stft(wav, n_fft, hop, window=window, return_complex=True)  # [n_freq, frames]
    power = stft[:, :t].abs() ** 2
    mel = mel_filters.T @ power  # [n_mels, T]
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def silence_log_mel(num_frames: int, n_mels: int = 80) -> torch.Tensor:
    """Whisper's log-mel of digital silence, [n_mels, T] with T = num_frames rounded up to even.

    Every value is `SILENCE_LOG_MEL`, which is also the padding value after a silent clip, so a
    batch of silences padded to its longest is one silence of that length. This is the audio of a
    lip-reading (video-only) model and of a sample whose audio is dropped (modality dropout).
    """
    t = max(2, int(num_frames) + int(num_frames) % 2)
    return torch.full((n_mels, t), SILENCE_LOG_MEL, dtype=torch.float32)


def mel_frames_for_video(num_video_frames: int, video_fps: float, mel_frame_rate: float = SAMPLING_RATE / 160) -> int:
    """Log-mel frames (100 per second) that cover `num_video_frames` frames at `video_fps`, rounded up to even."""
    t = int(-(-num_video_frames * mel_frame_rate // video_fps))
    return max(2, t + t % 2)


def log_mel_pad_value(features: torch.Tensor) -> float:
    """Value of a frame of pure zero-padding after the clip whose log-mel is `features` [n_mels, T]."""
    return max(float(features.max()) - 2.0, SILENCE_LOG_MEL)


def pad_log_mel_batch(
    features: list[torch.Tensor], pad_to: int | None = None, pad_to_multiple_of: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad per-clip log-mels to a batch as if each clip's audio had been zero-padded.

    Args:
        features: list of [n_mels, T_i] (from `log_mel`).
        pad_to: minimum batch length (e.g. 3000 to reproduce Whisper's 30-s input exactly).
        pad_to_multiple_of: round the batch length up to a multiple of this (2: Whisper's conv stride).
    Returns:
        (batch [B, n_mels, T_max] float32, lengths [B] long)
    """
    if not features:
        raise ValueError("empty batch")
    n_mels = features[0].shape[0]
    lengths = torch.tensor([f.shape[-1] for f in features], dtype=torch.long)
    t_max = int(lengths.max())
    if pad_to is not None:
        t_max = max(t_max, pad_to)
    if pad_to_multiple_of > 1:
        t_max = -(-t_max // pad_to_multiple_of) * pad_to_multiple_of
    out = torch.empty(len(features), n_mels, t_max, dtype=torch.float32)
    for i, f in enumerate(features):
        f = torch.as_tensor(f, dtype=torch.float32)
        if f.shape[0] != n_mels:
            raise ValueError(f"clip {i} has {f.shape[0]} mel bins, expected {n_mels}")
        out[i, :, : f.shape[-1]] = f
        out[i, :, f.shape[-1] :] = log_mel_pad_value(f)
    return out, lengths
