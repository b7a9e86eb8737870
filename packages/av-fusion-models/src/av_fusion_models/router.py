"""FusionRouter: a per-sample soft choice between encoder-only, decoder-only and both-sides fusion.

    audio  [B, n_mels, T_a] --mean, std over time--> [B, 2 n_mels] --LN, Linear, GELU, Dropout--> [B, H]
    video  [B, T_v, D]      --masked mean, std-->    [B, 2 D]      --LN, Linear, GELU, Dropout--> [B, H]
    concat [B, 2H] (+ level embedding [B, E])  --Linear, GELU, Dropout, Linear--> logits [B, 3]
    route_probs = softmax(logits) = (P(encoder only), P(decoder only), P(both))
    encoder_scale = P(enc) + P(both),  decoder_scale = P(dec) + P(both)      (each in [0, 1])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

ROUTES = ("encoder_only", "decoder_only", "both")


@dataclass
class RouterOutput:
    logits: torch.Tensor  # [B, 3]
    route_probs: torch.Tensor  # [B, 3]
    encoder_scale: torch.Tensor  # [B]
    decoder_scale: torch.Tensor  # [B]


def masked_mean_std(
    x: torch.Tensor, padding_mask: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """Mean and (population) std over time of the non-padding steps.

    x [B, T, C], padding_mask [B, T] bool (True = padding) -> [B, 2C]. A sample with no valid
    step gets zeros.
    """
    if padding_mask is None:
        valid = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    else:
        valid = (~padding_mask.to(torch.bool)).to(x.dtype)
    weight = valid[..., None]  # [B, T, 1]
    count = weight.sum(dim=1).clamp_min(1.0)  # [B, 1]
    mean = (x * weight).sum(dim=1) / count  # [B, C]
    var = (((x - mean[:, None]) ** 2) * weight).sum(dim=1) / count
    std = torch.sqrt(var + eps)
    has_any = (valid.sum(dim=1, keepdim=True) > 0).to(x.dtype)  # [B, 1]
    return torch.cat([mean, std], dim=-1) * has_any


class FusionRouter(nn.Module):
    """Per-sample soft routing of video fusion between Whisper's encoder and decoder."""

    def __init__(
        self,
        n_mels: int,
        video_dim: int,
        hidden_dim: int = 256,
        dropout: float = 0.1,
        use_level: bool = False,
        num_levels: int = 4,
        level_embed_dim: int = 16,
    ):
        super().__init__()
        self.use_level = use_level
        self.audio_proj = nn.Sequential(
            nn.LayerNorm(2 * n_mels), nn.Linear(2 * n_mels, hidden_dim), nn.GELU(), nn.Dropout(dropout)
        )
        self.video_proj_router = nn.Sequential(
            nn.LayerNorm(2 * video_dim), nn.Linear(2 * video_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout)
        )
        self.level_embed = nn.Embedding(num_levels, level_embed_dim) if use_level else None
        in_dim = 2 * hidden_dim + (level_embed_dim if use_level else 0)
        self.classifier = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, len(ROUTES))
        )

    def forward(
        self,
        input_features: torch.Tensor,
        video_states: torch.Tensor,
        video_padding_mask: torch.Tensor | None = None,
        levels: torch.Tensor | None = None,
        audio_padding_mask: torch.Tensor | None = None,
    ) -> RouterOutput:
        """
        Shapes:
            input_features     [B, n_mels, T_a]  raw log-mel
            video_states       [B, T_v, D]       projected video (before positions)
            video_padding_mask [B, T_v]          bool, True = padding
            levels             [B]               long in [0, num_levels) (only with use_level)
            audio_padding_mask [B, T_a]          bool, True = padding mel frame; optional. Without it
                                                 the statistics include the batch's padding frames.
        Returns:
            RouterOutput(logits [B, 3], route_probs [B, 3], encoder_scale [B], decoder_scale [B])
        """
        audio = masked_mean_std(input_features.transpose(1, 2), audio_padding_mask)  # [B, 2 n_mels]
        video = masked_mean_std(video_states, video_padding_mask)  # [B, 2 D]
        parts = [self.audio_proj(audio), self.video_proj_router(video.to(audio.dtype))]
        if self.use_level:
            if levels is None:
                raise ValueError("this FusionRouter uses levels (routing_use_level=True); pass levels [B]")
            parts.append(self.level_embed(levels.to(device=audio.device, dtype=torch.long)))
        logits = self.classifier(torch.cat(parts, dim=-1))  # [B, 3]
        probs = F.softmax(logits.float(), dim=-1).to(logits.dtype)
        return RouterOutput(
            logits=logits,
            route_probs=probs,
            encoder_scale=probs[:, 0] + probs[:, 2],
            decoder_scale=probs[:, 1] + probs[:, 2],
        )
