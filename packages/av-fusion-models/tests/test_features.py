"""log_mel / pad_log_mel_batch against Whisper's own 30-s features; video normalisation helpers."""

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from av_fusion_models import (
    SILENCE_LOG_MEL,
    center_crop,
    log_mel,
    normalize_video,
    num_log_mel_frames,
    pad_log_mel_batch,
    random_crop,
    random_horizontal_flip,
)

FE = WhisperFeatureExtractor(feature_size=80)


def clip(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * np.hanning(n) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def whisper_features(audio):
    return FE(audio, sampling_rate=16000, return_tensors="np").input_features[0]  # [80, 3000]


@pytest.mark.parametrize("n", [16000, 12345])
def test_log_mel_equals_whisper_prefix(n):
    audio = clip(n)
    feats = log_mel(audio)
    t = feats.shape[-1]
    assert t % 2 == 0 and t == num_log_mel_frames(n)
    assert t >= n // 160 and t <= n // 160 + 4
    ref = whisper_features(audio)
    assert np.abs(feats.numpy() - ref[:, :t]).max() < 2e-4
    # everything after the clip in Whisper's features is the pad value
    assert np.allclose(ref[:, t:], max(float(feats.max()) - 2.0, SILENCE_LOG_MEL), atol=2e-4)


def test_padded_batch_equals_zero_padded_audio():
    clips = [clip(8000, 1), clip(13000, 2), clip(3300, 3)]
    feats = [log_mel(torch.from_numpy(c)) for c in clips]  # tensors are accepted too
    batch, lengths = pad_log_mel_batch(feats)
    assert batch.shape == (3, 80, int(lengths.max())) and batch.shape[-1] % 2 == 0
    assert lengths.tolist() == [f.shape[-1] for f in feats]
    for i, c in enumerate(clips):
        ref = whisper_features(c)[:, : batch.shape[-1]]
        assert np.abs(batch[i].numpy() - ref).max() < 2e-4
    full, _ = pad_log_mel_batch(feats, pad_to=3000)
    assert full.shape[-1] == 3000


def test_frame_counts_and_silence():
    for n in (1, 159, 160, 320, 16000, 16160, 479_999, 480_000):
        t = num_log_mel_frames(n)
        assert t % 2 == 0 and 2 <= t <= 3000
    assert num_log_mel_frames(480_000) == 3000
    silence = log_mel(np.zeros(4000, dtype=np.float32))
    assert torch.all(silence == SILENCE_LOG_MEL)
    assert log_mel(clip(4000), 128).shape[0] == 128
    assert log_mel(clip(4000), FE).shape == log_mel(clip(4000)).shape


def test_video_helpers():
    frames = np.full((3, 96, 96), 255, dtype=np.uint8)
    frames[:, 4:92, 4:92] = 0
    x = normalize_video(frames)
    assert x.dtype == torch.float32
    assert torch.allclose(x[0, 0, 0], torch.tensor((1 - 0.421) / 0.165))
    crop = center_crop(x)
    assert crop.shape == (3, 88, 88)
    assert torch.allclose(crop, torch.full_like(crop, (0 - 0.421) / 0.165))
    ramp = (torch.arange(96)[:, None] * 1000 + torch.arange(96)[None, :]).expand(2, 96, 96)  # row * 1000 + col
    crop = random_crop(ramp, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    top, left = int(rng.integers(0, 9)), int(rng.integers(0, 9))  # the same draws, in the same order
    assert crop.shape == (2, 88, 88) and int(crop[0, 0, 0]) == top * 1000 + left
    flipped = random_horizontal_flip(ramp, np.random.default_rng(1), p=1.0)
    assert torch.equal(flipped, ramp.flip(-1))
    assert torch.equal(random_horizontal_flip(ramp, np.random.default_rng(1), p=0.0), ramp)
    with pytest.raises(ValueError):
        center_crop(torch.zeros(3, 80, 80))
