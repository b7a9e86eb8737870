"""The video front-end of audio-visual Whisper: which encoder reads the lips, and where video frames sit on
Whisper's time axis."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .avhubert import AVHubertVideoEncoder
from .configuration import VIDEO_CLIP_NORMS, AVWhisperConfig
from .video_resnet import ResNetVideoEncoder

# Whisper's encoder runs at 50 frames / s (100 mel frames / s, conv2 stride 2).
ENCODER_FRAME_RATE = 50.0

def sinusoidal_positions(positions: torch.Tensor, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoid table (sin | cos halves) at real-valued positions. positions [T] -> [T, channels]"""
    if channels % 2 != 0:
        raise ValueError(f"channels must be even, got {channels}")
    half = channels // 2
    log_increment = math.log(max_timescale) / (half - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(half, device=positions.device, dtype=torch.float32))
    scaled = positions.to(torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)


def encoder_frames(
    video: torch.Tensor, padding_mask: torch.Tensor, clip_norm: str = "none", frame_size: int | None = None
) -> torch.Tensor:
    """The frames a video encoder sees (`AVWhisperConfig.video_clip_norm`, `.video_frame_size`); padding
    frames are zero.

    Padding is zeroed because the 3D conv zero-pads in time: valid frames then see exactly what they would
    see without the padding. ``frame_size`` resizes every frame to that side by area averaging (each output
    pixel is the mean of the input pixels it covers: a 2x reduction is a 2 x 2 average). ``"mean"``
    subtracts each clip's mean frame over its valid frames only, so a clip's input does not depend on how
    much padding its batch gave it.

    Shapes:
        video [B, T_v, H, W] float; padding_mask [B, T_v] bool, True = padding
    Returns:
        [B, T_v, H', W'] (H' = W' = frame_size, or H, W when None)
    """
    pad = padding_mask.view(*padding_mask.shape, *([1] * (video.dim() - 2)))  # [B, T_v, 1, 1]
    video = video.masked_fill(pad, 0.0)
    if frame_size is not None and tuple(video.shape[-2:]) != (frame_size, frame_size):
        # the time axis rides as channels: each frame is resized on its own
        video = F.interpolate(video, size=(frame_size, frame_size), mode="area")
    if clip_norm == "mean":
        # summed in at least float32: a bf16 sum over a clip's frames would lose the mean's low bits
        acc = torch.promote_types(video.dtype, torch.float32)
        count = (~pad).sum(dim=1, keepdim=True).clamp_min(1).to(acc)  # [B, 1, 1, 1] valid frames
        mean = (video.sum(dim=1, keepdim=True, dtype=acc) / count).to(video.dtype)  # [B, 1, H, W]
        video = (video - mean).masked_fill(pad, 0.0)
    elif clip_norm not in VIDEO_CLIP_NORMS:
        raise ValueError(f"video_clip_norm must be one of {VIDEO_CLIP_NORMS}, got {clip_norm!r}")
    return video


def build_video_encoder(config: AVWhisperConfig) -> nn.Module | None:
    """The video front-end named by `config.video_encoder` (None: features come precomputed)."""
    if not config.uses_video or config.video_encoder == "precomputed":
        return None
    if config.video_encoder == "resnet":
        return ResNetVideoEncoder(width=config.resnet_width, relu_type=config.resnet_relu_type)
    if config.video_encoder == "avhubert":
        return AVHubertVideoEncoder(config.avhubert_config())
    raise NotImplementedError(f"video encoder {config.video_encoder!r}")
