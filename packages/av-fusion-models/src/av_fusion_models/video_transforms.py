"""Lip-ROI video helpers (AV-HuBERT conventions): grey 96x96 ROIs, 88x88 crops, fixed normalisation.

All helpers take frames with the spatial dims last ([..., H, W], e.g. [T, H, W] or [B, T, H, W]).
"""

from __future__ import annotations

import numpy as np
import torch

VIDEO_MEAN = 0.421
VIDEO_STD = 0.165
CROP_SIZE = 88


def _as_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    return frames if torch.is_tensor(frames) else torch.from_numpy(np.ascontiguousarray(frames))


def normalize_video(frames: np.ndarray | torch.Tensor, mean: float = VIDEO_MEAN, std: float = VIDEO_STD) -> torch.Tensor:
    """uint8 grey frames [..., H, W] -> float32 (x / 255 - mean) / std (float inputs are taken as 0..255)."""
    x = _as_tensor(frames).to(torch.float32)
    return (x / 255.0 - mean) / std


def center_crop(frames: np.ndarray | torch.Tensor, size: int = CROP_SIZE) -> torch.Tensor:
    """Central `size` x `size` crop of [..., H, W] (96 -> 88: offset 4)."""
    x = _as_tensor(frames)
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"frames {h}x{w} are smaller than the crop {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def random_crop(frames: np.ndarray | torch.Tensor, rng: np.random.Generator, size: int = CROP_SIZE) -> torch.Tensor:
    """One random `size` x `size` crop, the same for all frames of the clip (training augmentation).

    Draws the top row, then the left column, from ``rng`` (so a seeded generator gives a reproducible crop).
    """
    x = _as_tensor(frames)
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"frames {h}x{w} are smaller than the crop {size}")
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return x[..., top : top + size, left : left + size]


def random_horizontal_flip(frames: np.ndarray | torch.Tensor, rng: np.random.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror the whole clip left-right with probability p (one draw from ``rng``)."""
    x = _as_tensor(frames)
    if rng.random() < p:
        return x.flip(-1)
    return x
