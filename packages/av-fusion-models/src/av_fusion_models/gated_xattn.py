"""Gated cross-attention block of Whisper-Flamingo (after Flamingo's GATED XATTN-DENSE).

    x <- x + s * tanh(attn_gate) * XAttn(LN(x), video)
    x <- x + s * tanh(ff_gate)   * FFN(LN(x))

`attn_gate` and `ff_gate` are scalars initialised to `gate_init` (default 0), so a freshly inserted
block is the identity and the wrapped Whisper behaves exactly as before. With gates at 0 the video
path gets no gradient at all (d out / d XAttn = tanh(0) = 0) until the gates move; a non-zero
`gate_init` lets a video front-end trained from scratch learn from the first step
(docs/LIP_READING.md). `s` is an optional per-sample scale
(the FusionRouter's encoder/decoder scale); a sample whose video frames are all padding gets
`s = 0` (no video, no contribution).

`learned_gates=False` builds the block without `attn_gate` / `ff_gate`: its output is then scaled by `s`
alone, i.e. the caller's per-sample value IS the gate. This is the "router emits the gates" ablation of
docs/GATING_AND_ROUTING.md; such a block is not the identity at initialisation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers.modeling_layers import GradientCheckpointingLayer


class GatedCrossAttentionBlock(GradientCheckpointingLayer):
    """Tanh-gated cross-attention + feed-forward from a query stream (audio frames or text tokens)
    to the projected video states.

    It is a `GradientCheckpointingLayer`: `WhisperForConditionalGeneration.gradient_checkpointing_enable()`
    checkpoints it too. All tensors are therefore passed positionally.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ffn_mult: int = 4,
        dropout: float = 0.0,
        learned_gates: bool = True,
        gate_init: float = 0.0,
    ):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout

        # cross-attention branch
        self.attn_layer_norm = nn.LayerNorm(d_model)
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.attn_gate = nn.Parameter(torch.full((), float(gate_init))) if learned_gates else None

        # dense (feed-forward) branch
        self.ff_layer_norm = nn.LayerNorm(d_model)
        self.ff_in = nn.Linear(d_model, ffn_mult * d_model)
        self.ff_out = nn.Linear(ffn_mult * d_model, d_model)
        self.ff_gate = nn.Parameter(torch.full((), float(gate_init))) if learned_gates else None

    @property
    def learned_gates(self) -> bool:
        """The block has its own tanh gates (False: the caller's per-sample scale is the gate)."""
        return self.attn_gate is not None

    def cross_attention(
        self, hidden_states: torch.Tensor, video_states: torch.Tensor, key_padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """hidden_states [B, T_q, D] (already layer-normed), video_states [B, T_v, D],
        key_padding_mask [B, T_v] bool (True = padding, never all True) -> [B, T_q, D]"""
        bsz, t_q, _ = hidden_states.shape
        t_v = video_states.shape[1]
        q = self.q_proj(hidden_states).view(bsz, t_q, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(video_states).view(bsz, t_v, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(video_states).view(bsz, t_v, self.num_heads, self.head_dim).transpose(1, 2)
        attn_mask = None
        if key_padding_mask is not None:
            attn_mask = (~key_padding_mask)[:, None, None, :]  # [B, 1, 1, T_v], True = attend
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # [B, H, T_q, head_dim]
        out = out.transpose(1, 2).reshape(bsz, t_q, self.d_model)
        return self.out_proj(out)

    def forward(
        self,
        hidden_states: torch.Tensor,
        video_states: torch.Tensor,
        video_padding_mask: torch.Tensor | None = None,
        sample_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Shapes:
            hidden_states      [B, T_q, D]  queries: audio frames (encoder) or text tokens (decoder)
            video_states       [B, T_v, D]  projected video features (keys / values)
            video_padding_mask [B, T_v]     bool, True = padding frame; optional
            sample_scale       [B]          per-sample multiplier of the block's output (router); optional
        Returns:
            [B, T_q, D]
        """
        residual = hidden_states
        scale = None
        key_padding_mask = None
        if video_padding_mask is not None:
            video_padding_mask = video_padding_mask.to(torch.bool)
            no_video = video_padding_mask.all(dim=1)  # [B]
            # rows without any valid frame would give NaN attention: unmask them, zero them via the scale
            key_padding_mask = video_padding_mask & ~no_video[:, None]
            scale = (~no_video).to(hidden_states.dtype)
        if sample_scale is not None:
            sample_scale = sample_scale.to(hidden_states.dtype)
            scale = sample_scale if scale is None else scale * sample_scale
        # gate and per-sample scale folded into one [B or 1, 1, 1] coefficient, applied with the residual
        # add in one fused pass (addcmul) over the [B, T_q, D] output
        if self.learned_gates:
            attn_coef = torch.tanh(self.attn_gate).to(hidden_states.dtype).reshape(1, 1, 1)
            ff_coef = torch.tanh(self.ff_gate).to(hidden_states.dtype).reshape(1, 1, 1)
            if scale is not None:
                attn_coef = attn_coef * scale[:, None, None]
                ff_coef = ff_coef * scale[:, None, None]
        else:
            attn_coef = ff_coef = (
                torch.ones((1, 1, 1), dtype=hidden_states.dtype, device=hidden_states.device)
                if scale is None
                else scale[:, None, None]
            )

        attn = self.cross_attention(self.attn_layer_norm(hidden_states), video_states, key_padding_mask)
        hidden_states = torch.addcmul(residual, attn, attn_coef)

        ff = self.ff_out(F.gelu(self.ff_in(self.ff_layer_norm(hidden_states))))
        ff = F.dropout(ff, p=self.dropout, training=self.training)
        return torch.addcmul(hidden_states, ff, ff_coef)
