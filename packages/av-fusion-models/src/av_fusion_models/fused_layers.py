"""The fused layers of audio-visual Whisper and the per-batch fusion state that reaches them.

A fused layer is an original Whisper encoder / decoder layer preceded by a gated cross-attention to the
video (Whisper-Flamingo). The video states reach it as keyword arguments (`av_video_states`,
`av_video_padding_mask`, `av_fusion_scale`) that HF's encoder / decoder forward pass through to their
layers unchanged; the wrapper pops them before calling the original layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .gated_xattn import GatedCrossAttentionBlock
from .router import RouterOutput

# keyword arguments carried through HF's encoder / decoder forward to the fused layers
_KW_VIDEO = "av_video_states"
_KW_MASK = "av_video_padding_mask"
_KW_SCALE = "av_fusion_scale"


class GatedXAttnLayer(nn.Module):
    """Base of the fused layers: the original layer plus its gated cross-attention block."""

    def __init__(self, layer: nn.Module, xattn: GatedCrossAttentionBlock):
        super().__init__()
        self.layer = layer
        self.xattn = xattn

    def _fuse(self, hidden_states: torch.Tensor, kwargs: dict) -> torch.Tensor:
        video_states = kwargs.pop(_KW_VIDEO, None)
        video_padding_mask = kwargs.pop(_KW_MASK, None)
        scale = kwargs.pop(_KW_SCALE, None)
        if video_states is None:
            return hidden_states
        return self.xattn(hidden_states, video_states, video_padding_mask, scale)


class GatedXAttnEncoderLayer(GatedXAttnLayer):
    """WhisperEncoderLayer preceded by a gated cross-attention from audio frames to video."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs):
        """hidden_states [B, T_enc, D]; video kwargs: states [B, T_v, D], mask [B, T_v], scale [B] -> [B, T_enc, D]"""
        hidden_states = self._fuse(hidden_states, kwargs)
        return self.layer(hidden_states, attention_mask, *args, **kwargs)


class GatedXAttnDecoderLayer(GatedXAttnLayer):
    """WhisperDecoderLayer preceded (before its self-attention) by a gated cross-attention from text to video."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs):
        """hidden_states [B, L, D]; video kwargs: states [B, T_v, D], mask [B, T_v], scale [B] -> [B, L, D]"""
        hidden_states = self._fuse(hidden_states, kwargs)
        return self.layer(hidden_states, attention_mask, *args, **kwargs)


@dataclass
class FusionState:
    """Per-batch fusion inputs computed once (and reused at every decoding step)."""

    input_features: torch.Tensor  # [B, n_mels, T_a] after audio dropout
    video_states: torch.Tensor | None = None  # [B, T_v, D]
    video_padding_mask: torch.Tensor | None = None  # [B, T_v] bool
    route: RouterOutput | None = None
    projected_video: torch.Tensor | None = None  # [B, T_v, D] before positions (the reliability scorer's input)
    input_lengths: torch.Tensor | None = None  # [B] valid mel frames, when known
    draw: object | None = None  # the training draw (modality_dropout.ModalityDraw), None at inference
    reliability: torch.Tensor | None = None  # [B] the reliability scale of each sample's video (reliability.py)
    reliability_out: object | None = None  # the scorer's whole output (reliability.ReliabilityOutput)

    @property
    def video_reliability(self) -> torch.Tensor | None:
        """[B] the scale the reliability scorer applied to each sample's video (0 for a sample without video)."""
        if self.reliability is None or self.video_padding_mask is None:
            return self.reliability
        return self.reliability * (~self.video_padding_mask.all(dim=1)).to(self.reliability.dtype)

    def kwargs(self, side: str, repeat: int = 1) -> dict:
        if self.video_states is None:
            return {}
        scale = None
        if self.route is not None:
            scale = self.route.encoder_scale if side == "encoder" else self.route.decoder_scale
        if self.reliability is not None:
            scale = self.reliability if scale is None else scale * self.reliability
        out = {_KW_VIDEO: self.video_states, _KW_MASK: self.video_padding_mask, _KW_SCALE: scale}
        if repeat > 1:
            out = {k: (None if v is None else v.repeat_interleave(repeat, dim=0)) for k, v in out.items()}
        return out
