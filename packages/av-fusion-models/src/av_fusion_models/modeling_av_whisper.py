"""Audio-visual Whisper (Whisper-Flamingo): Whisper + video front-end + gated cross-attention.

Layout of `AVWhisperForConditionalGeneration` (parameter name prefixes):

    whisper                                  the HF WhisperForConditionalGeneration, weights shared
      model.encoder.layers.{i}.layer         original WhisperEncoderLayer   } when fusion in the encoder
      model.encoder.layers.{i}.xattn         GatedCrossAttentionBlock       }
      model.decoder.layers.{i}.layer         original WhisperDecoderLayer   } when fusion in the decoder
      model.decoder.layers.{i}.xattn         GatedCrossAttentionBlock       }
    video_encoder                            ResNetVideoEncoder (absent for "precomputed" / "none")
    video_proj                               Linear(video_dim -> d_model)
    router                                   FusionRouter (soft_fusion_routing only)
    reliability                              AVReliabilityScorer (video_reliability only)

Data flow (B batch, T_a mel frames, T_v video frames, L tokens, D = d_model):

    video [B, T_v, 88, 88] -> video_encoder -> [B, T_v, video_dim] -> video_proj -> [B, T_v, D]
        (-> router: route_probs [B, 3], encoder_scale [B], decoder_scale [B])
        (-> reliability scorer, with the audio: r [B] in (0, 1), multiplying every fused block's output)
        -> + sinusoidal positions (frame t at encoder position t * 50 / fps) -> video states [B, T_v, D]
    input_features [B, n_mels, T_a] -> conv1, conv2 -> + positions[:T_a / 2]
        -> per layer: [GatedXAttn(audio -> video)] -> WhisperEncoderLayer -> LN -> [B, T_a / 2, D]
    decoder_input_ids [B, L] -> embeddings
        -> per layer: [GatedXAttn(text -> video)] -> WhisperDecoderLayer (self-attn, audio cross-attn, FFN)
        -> LN -> proj_out -> logits [B, L, vocab]

The video states reach the wrapped layers as keyword arguments (`av_video_states`,
`av_video_padding_mask`, `av_fusion_scale`) that Whisper's encoder/decoder forward pass through
to their layers unchanged; the wrappers pop them before calling the original layer. Generation
is the greedy / beam search of `generation` over this model's decoder step (HF's `WhisperDecoder` and
its `EncoderDecoderCache`; see `decoder_step` and `generate` in generation_mixin.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import WhisperForConditionalGeneration
from transformers.models.whisper.modeling_whisper import shift_tokens_right
from transformers.utils import ModelOutput

from .avhubert import AVHubertLoadReport, AVHubertVideoEncoder, load_avhubert_checkpoint
from .configuration import AVWhisperConfig
from .features import SILENCE_LOG_MEL, mel_frames_for_video
from .fused_layers import FusionState, GatedXAttnDecoderLayer, GatedXAttnEncoderLayer, GatedXAttnLayer
from .gated_xattn import GatedCrossAttentionBlock
from .generation_mixin import AVWhisperGenerationMixin
from .modality_dropout import draw_modalities, freeze_frames, swap_video, swap_video_stretched
from .reliability import AVReliabilityScorer, agreement_loss, sync_loss
from .router import FusionRouter
from .video_faults import apply_training_faults
from .video_transforms import VIDEO_MEAN, VIDEO_STD
from .video_frontend import ENCODER_FRAME_RATE, build_video_encoder, encoder_frames, sinusoidal_positions

CONFIG_NAME = "config.json"
WHISPER_CONFIG_NAME = "whisper_config.json"
WEIGHTS_NAME = "model.safetensors"

@dataclass
class AVWhisperOutput(ModelOutput):
    """
    loss: mean token cross-entropy over labels != -100 (when labels are given)
    logits: [B, L, vocab] (None with return_logits=False)
    route_probs: [B, 3] P(encoder only), P(decoder only), P(both) (soft routing with video only)
    route_logits: [B, 3]
    encoder_scale, decoder_scale: [B] per-sample fusion scales (soft routing only)
    video_reliability: [B] the reliability scale applied to each sample's video (video_reliability only)
    reliability_loss: the scorer's agreement + sync losses (training with faults; included in `loss`, weighted)
    encoder_last_hidden_state: [B, T_a / 2, D]
    cache: the decoder's EncoderDecoderCache (use_cache=True only)
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    route_probs: torch.Tensor | None = None
    route_logits: torch.Tensor | None = None
    encoder_scale: torch.Tensor | None = None
    decoder_scale: torch.Tensor | None = None
    video_reliability: torch.Tensor | None = None
    reliability_loss: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    cache: object | None = None


class AVWhisperForConditionalGeneration(AVWhisperGenerationMixin, nn.Module):
    """Whisper with Whisper-Flamingo gated cross-attention to lip video (see the module docstring).

    Build it with `from_whisper` (wraps an existing Whisper in place: its weights are shared, not
    copied) or `from_pretrained` (a directory written by `save_pretrained`).
    """

    def __init__(self, config: AVWhisperConfig, whisper: WhisperForConditionalGeneration):
        super().__init__()
        self.config = config
        self.whisper = whisper
        wcfg = whisper.config
        d_model = wcfg.d_model
        self.video_encoder_frozen = False
        self.video_encoder_load_report: AVHubertLoadReport | None = None

        self.video_encoder = build_video_encoder(config)
        self.video_proj = nn.Linear(config.resolved_video_dim, d_model) if config.uses_video else None
        self.router = None
        if config.soft_fusion_routing:
            self.router = FusionRouter(
                n_mels=wcfg.num_mel_bins, video_dim=d_model, hidden_dim=config.routing_hidden_dim,
                dropout=config.routing_dropout, use_level=config.routing_use_level,
                num_levels=config.num_levels, level_embed_dim=config.level_embed_dim,
            )
        self.reliability = None
        if config.video_reliability:
            self.reliability = AVReliabilityScorer(d_model, config.reliability_hidden_dim)
        self._wrap_layers()

        param = next(whisper.parameters())
        for module in (self.video_encoder, self.video_proj, self.router, self.reliability):
            if module is not None:
                module.to(device=param.device, dtype=param.dtype)

    # ---------------------------------------------------------------------------- building
    def _new_block(self, heads: int) -> GatedCrossAttentionBlock:
        cfg = self.config
        param = next(self.whisper.parameters())
        block = GatedCrossAttentionBlock(
            self.whisper.config.d_model,
            cfg.xattn_heads or heads,
            ffn_mult=cfg.xattn_ffn_mult,
            dropout=cfg.xattn_dropout,
            learned_gates=not cfg.router_emits_gates,
            gate_init=cfg.xattn_gate_init,
        )
        return block.to(device=param.device, dtype=param.dtype)

    def _wrap_layers(self) -> None:
        wcfg = self.whisper.config
        encoder, decoder = self.whisper.model.encoder, self.whisper.model.decoder
        for layers in (encoder.layers, decoder.layers):
            if any(isinstance(layer, GatedXAttnLayer) for layer in layers):
                raise ValueError("this Whisper is already wrapped by an AVWhisperForConditionalGeneration")
        if self.config.fuse_encoder:
            for i, layer in enumerate(encoder.layers):
                encoder.layers[i] = GatedXAttnEncoderLayer(layer, self._new_block(wcfg.encoder_attention_heads))
        if self.config.fuse_decoder:
            for i, layer in enumerate(decoder.layers):
                decoder.layers[i] = GatedXAttnDecoderLayer(layer, self._new_block(wcfg.decoder_attention_heads))

    @classmethod
    def from_whisper(
        cls, whisper: WhisperForConditionalGeneration | str | os.PathLike, config: AVWhisperConfig | None = None, **kwargs
    ) -> AVWhisperForConditionalGeneration:
        """Wrap a Whisper model (instance, local path or hub name such as "openai/whisper-tiny.en";
        `kwargs` go to `WhisperForConditionalGeneration.from_pretrained`, e.g. `local_files_only=True`).

        An instance is modified in place (its layers are wrapped) and its weights are shared. With
        `config.video_encoder="avhubert"` and `config.avhubert_checkpoint` set, the official AV-HuBERT
        checkpoint is loaded into the video encoder (strictly; the report is kept in
        `model.video_encoder_load_report`).
        """
        if not isinstance(whisper, WhisperForConditionalGeneration):
            whisper = WhisperForConditionalGeneration.from_pretrained(whisper, **kwargs)
        elif kwargs:
            raise TypeError(f"unexpected arguments for a model instance: {sorted(kwargs)}")
        model = cls(config or AVWhisperConfig(), whisper)
        cfg = model.config
        if cfg.video_encoder == "avhubert" and cfg.avhubert_checkpoint and model.video_encoder is not None:
            model.video_encoder_load_report = load_avhubert_checkpoint(model.video_encoder, cfg.avhubert_checkpoint)
            model.video_encoder.to(device=model.device, dtype=model.dtype)
        return model

    # --------------------------------------------------------------------------- utilities
    @property
    def device(self) -> torch.device:
        return next(self.whisper.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.whisper.parameters()).dtype

    @property
    def gated_xattn_blocks(self) -> list[GatedCrossAttentionBlock]:
        return [m for m in self.modules() if isinstance(m, GatedCrossAttentionBlock)]

    def gate_values(self) -> dict[str, dict[str, float]]:
        """tanh of every learned gate, by block: {"encoder.0": {"attn": a, "ff": f}, "decoder.3": {...}}.

        The fraction of each fused branch that reaches the residual stream (before a router's scale);
        empty when the blocks have no learned gates (`router_emits_gates`) or there is no fusion.
        """
        out = {}
        for side, stack in (("encoder", self.whisper.model.encoder), ("decoder", self.whisper.model.decoder)):
            for i, layer in enumerate(stack.layers):
                if isinstance(layer, GatedXAttnLayer) and layer.xattn.learned_gates:
                    out[f"{side}.{i}"] = {
                        "attn": float(torch.tanh(layer.xattn.attn_gate.detach().float())),
                        "ff": float(torch.tanh(layer.xattn.ff_gate.detach().float())),
                    }
        return out

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.video_encoder_frozen and self.video_encoder is not None:
            self.video_encoder.eval()  # frozen front-end: keep BatchNorm statistics fixed
        return self

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Checkpoint Whisper's layers and the gated cross-attention blocks (activation checkpointing)."""
        if hasattr(self.whisper, "activation_checkpointing_enable"):
            self.whisper.activation_checkpointing_enable(activation_checkpointing_kwargs=gradient_checkpointing_kwargs)
        else:  # transformers < 5.x naming
            self.whisper.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def gradient_checkpointing_disable(self) -> None:
        if hasattr(self.whisper, "activation_checkpointing_disable"):
            self.whisper.activation_checkpointing_disable()
        else:
            self.whisper.gradient_checkpointing_disable()

    activation_checkpointing_enable = gradient_checkpointing_enable
    activation_checkpointing_disable = gradient_checkpointing_disable

    def whisper_state_dict(self) -> dict[str, torch.Tensor]:
        """Whisper's own weights under their original (unwrapped) names, fusion blocks left out:
        loadable into a plain `WhisperForConditionalGeneration`."""
        out = {}
        for name, tensor in self.whisper.state_dict().items():
            if ".xattn." in name:
                continue
            out[name.replace(".layer.", ".", 1) if ".layers." in name else name] = tensor
        return out

    # ------------------------------------------------------------------------------ video
    def encode_video(
        self, video: torch.Tensor, video_padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Shapes:
            video              [B, T_v, H, W] normalised frames ([B, T_v, video_dim] for "precomputed")
            video_padding_mask [B, T_v] bool, True = padding
        Returns:
            projected video [B, T_v, D] (no positions; padding frames zeroed), padding mask [B, T_v]
        """
        if self.video_proj is None:
            raise ValueError("fusion_location='none': this model has no video branch")
        bsz, t_v = video.shape[:2]
        if video_padding_mask is None:
            video_padding_mask = torch.zeros(bsz, t_v, dtype=torch.bool, device=video.device)
        video_padding_mask = video_padding_mask.to(device=video.device, dtype=torch.bool)
        if self.video_encoder is None:  # precomputed features [B, T_v, video_dim]
            feats = video.to(self.dtype).masked_fill(video_padding_mask[..., None], 0.0)
        else:  # padding zeroed (the 3D conv zero-pads in time); resized, the clip's mean frame removed if configured
            frames = encoder_frames(video.to(self.dtype), video_padding_mask, self.config.video_clip_norm,
                                    self.config.video_frame_size)
            if isinstance(self.video_encoder, AVHubertVideoEncoder):
                feats = self.video_encoder(frames, video_padding_mask)  # its transformer masks the padding
            else:
                feats = self.video_encoder(frames)  # [B, T_v, video_dim]
        projected = self.video_proj(feats)  # [B, T_v, D]
        projected = projected.masked_fill(video_padding_mask[..., None], 0.0)
        return projected, video_padding_mask

    def video_positions(self, num_frames: int, device=None, dtype=None) -> torch.Tensor:
        """[T_v, D]: Whisper's sinusoid at the encoder position of each video frame."""
        step = ENCODER_FRAME_RATE / self.config.video_fps
        pos = torch.arange(num_frames, device=device, dtype=torch.float32) * step
        return sinusoidal_positions(pos, self.whisper.config.d_model).to(dtype=dtype)

    def silent_audio(
        self, video: torch.Tensor | None, video_padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio of a lip-reading model: digital silence as long as the video.

        Shapes:
            video [B, T_v, ...]; video_padding_mask [B, T_v] bool, True = padding
        Returns:
            input_features [B, n_mels, T_a] (all SILENCE_LOG_MEL; T_a = 3000 without cut_encoder_positions),
            input_lengths [B] long (each sample's own silence length)
        """
        if video is None:
            raise ValueError("a video_only (lip-reading) model needs the video")
        bsz, t_v = video.shape[:2]
        frames = torch.full((bsz,), t_v, dtype=torch.long)
        if video_padding_mask is not None:
            frames = (~video_padding_mask.to(torch.bool)).sum(dim=1).cpu()
        enc = self.whisper.model.encoder
        full = enc.config.max_source_positions * enc.conv1.stride[0] * enc.conv2.stride[0]
        lengths = torch.tensor([min(full, mel_frames_for_video(int(n), self.config.video_fps)) for n in frames])
        t_a = int(lengths.max()) if self.config.cut_encoder_positions else full
        n_mels = self.whisper.config.num_mel_bins
        feats = torch.full((bsz, n_mels, t_a), SILENCE_LOG_MEL, dtype=self.dtype, device=self.device)
        return feats, lengths.to(self.device)

    def prepare_fusion(
        self,
        input_features: torch.Tensor | None,
        video: torch.Tensor | None = None,
        video_padding_mask: torch.Tensor | None = None,
        levels: torch.Tensor | None = None,
        input_lengths: torch.Tensor | None = None,
        modality_dropout: bool | None = None,
    ) -> FusionState:
        """Video encoder + projection + router + modality dropout, once per batch.

        A `video_only` model (lip reading) replaces `input_features` (which may be None) by silence.
        """
        if modality_dropout is None:
            modality_dropout = self.training
        if self.config.video_only:
            input_features, input_lengths = self.silent_audio(video, video_padding_mask)
        elif input_features is None:
            raise ValueError("input_features (log-mel audio) is required unless the model is video_only")
        input_features = input_features.to(device=self.device, dtype=self.dtype)
        if video is None or not self.config.uses_video:
            return FusionState(input_features=input_features)
        video = video.to(self.device)
        # modality dropout and lip-video faults (modality_dropout.py): one outcome per sample, at most
        draw = draw_modalities(self.config, video.shape[0], self.device) if modality_dropout else None
        if draw is not None:
            video = freeze_frames(video, draw.frozen_video)
            if draw.faults is not None:
                frames = torch.full((video.shape[0],), video.shape[1]) if video_padding_mask is None else \
                    (~video_padding_mask.to(torch.bool)).sum(1).cpu()
                video = apply_training_faults(video, frames, draw.faults, black_value=-VIDEO_MEAN / VIDEO_STD)
        projected, mask = self.encode_video(video, video_padding_mask)
        if draw is not None:
            if self.config.reliability_content_negatives:  # the fault's wrong lips stretched, as evaluation's
                projected = swap_video_stretched(projected, mask, draw.wrong_fault)
                projected, mask = swap_video(projected, mask, draw.wrong_video)
            else:
                projected, mask = swap_video(projected, mask, draw.all_wrong)
            mask = mask | draw.drop_video[:, None]
            input_features = torch.where(
                draw.drop_audio[:, None, None].to(input_features.device),
                torch.full_like(input_features, SILENCE_LOG_MEL),
                input_features,
            )
        route = None
        if self.router is not None:
            audio_mask = None
            if input_lengths is not None:
                t_a = input_features.shape[-1]
                audio_mask = torch.arange(t_a, device=input_features.device)[None, :] >= input_lengths.to(
                    input_features.device
                )[:, None]
            route = self.router(input_features, projected, mask, levels=levels, audio_padding_mask=audio_mask)
        states = projected
        if self.config.video_positional:
            states = states + self.video_positions(states.shape[1], states.device, states.dtype)[None]
        return FusionState(input_features=input_features, video_states=states, video_padding_mask=mask, route=route,
                           projected_video=projected, input_lengths=input_lengths, draw=draw)

    # ------------------------------------------------------------------------------ audio
    def encode(self, input_features: torch.Tensor, fusion: FusionState | None = None) -> torch.Tensor:
        """Whisper encoder (with fusion blocks) on mel inputs of any length when `cut_encoder_positions`.

        Shapes:
            input_features [B, n_mels, T_a]
        Returns:
            [B, ceil(T_a / 2), D]
        """
        enc = self.whisper.model.encoder
        full = enc.config.max_source_positions * enc.conv1.stride[0] * enc.conv2.stride[0]
        t_a = input_features.shape[-1]
        if self.config.cut_encoder_positions:
            if t_a > full:
                raise ValueError(f"mel input of {t_a} frames exceeds Whisper's {full}")
        elif t_a != full:
            raise ValueError(
                f"Whisper expects {full} mel frames, got {t_a} (pad to 30 s, or set cut_encoder_positions=True)"
            )
        x = self.encoder_stem(input_features)  # [B, T_enc, D]
        if self.reliability is not None and fusion is not None and self.config.fuse_encoder:
            self.score_reliability(fusion, x)  # the fused layers below need r before they run: from the stem
        x = x + enc.embed_positions.weight[: x.shape[1]]
        x = F.dropout(x, p=enc.dropout, training=self.training)
        kwargs = fusion.kwargs("encoder") if (fusion is not None and self.config.fuse_encoder) else {}
        for layer in enc.layers:
            if self.training and enc.layerdrop > 0.0 and torch.rand([]) < enc.layerdrop:
                continue
            x = layer(x, None, **kwargs)
        return enc.layer_norm(x)

    def encoder_states(self, fusion: FusionState) -> torch.Tensor:
        """`encode` of a prepared batch (`prepare_fusion`) -> [B, T_enc, D]. A lip reader without encoder fusion
        hears the same silence in every row: it is encoded once and repeated (same values and gradients, 1/B of
        the cost), unless training with dropout in Whisper would give each row its own mask."""
        feats, w = fusion.input_features, self.whisper.config
        stochastic = self.training and max(w.dropout, w.attention_dropout, w.activation_dropout) > 0
        if self.config.video_only and not self.config.fuse_encoder and feats.shape[0] > 1 and not stochastic:
            return self.encode(feats[:1], fusion).expand(feats.shape[0], -1, -1)
        hidden = self.encode(feats, fusion)  # with encoder fusion, `encode` scores the reliability from its stem
        if self.reliability is not None and not self.config.fuse_encoder:  # the encoder heard the audio alone
            self.score_reliability(fusion, hidden)
        return hidden

    def encoder_stem(self, input_features: torch.Tensor) -> torch.Tensor:
        """Whisper's convolutional stem: input_features [B, n_mels, T_a] -> [B, ceil(T_a / 2), D] (no positions)."""
        enc = self.whisper.model.encoder
        x = F.gelu(enc.conv1(input_features.to(device=enc.conv1.weight.device, dtype=enc.conv1.weight.dtype)))
        return F.gelu(enc.conv2(x)).permute(0, 2, 1)

    def score_reliability(self, fusion: FusionState, audio_states: torch.Tensor) -> None:
        """Set ``fusion.reliability`` from the audio [B, T_enc, D] (50 Hz) and the projected video (reliability.py).
        A sample whose audio was dropped in training (the lips alone) keeps its video at full weight."""
        if fusion.projected_video is None:
            return
        audio_mask = None
        if fusion.input_lengths is not None:
            enc_len = (fusion.input_lengths.to(audio_states.device) + 1) // 2
            audio_mask = torch.arange(audio_states.shape[1], device=audio_states.device)[None] >= enc_len[:, None]
        out = self.reliability(audio_states, audio_mask, fusion.projected_video, fusion.video_padding_mask,
                               audio_ratio=round(ENCODER_FRAME_RATE / self.config.video_fps),
                               content_negatives=self.config.reliability_content_negatives)
        r = out.reliability
        if not self.training and self.config.reliability_cutoff > 0:
            r = torch.where(r < self.config.reliability_cutoff, torch.zeros_like(r), r)
        if fusion.draw is not None:
            r = torch.where(fusion.draw.drop_audio.to(r.device), torch.ones_like(r), r)
        fusion.reliability, fusion.reliability_out = r, out

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        fusion_kwargs: dict | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        cache=None,
        use_cache: bool = False,
    ):
        """decoder_input_ids [B, L], encoder_hidden_states [B, T_enc, D] -> (hidden [B, L, D], cache)"""
        out = self.whisper.model.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            cache=cache,
            use_cache=use_cache,
            **(fusion_kwargs or {}),
        )
        return out.last_hidden_state, out.cache

    # ---------------------------------------------------------------------------- forward
    def forward(
        self,
        input_features: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        video_padding_mask: torch.Tensor | None = None,
        levels: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        input_lengths: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        use_cache: bool = False,
        return_logits: bool = True,
    ) -> AVWhisperOutput:
        """
        Shapes:
            input_features     [B, n_mels, T_a]  log-mel (T_a <= 3000; exactly 3000 unless cut_encoder_positions);
                               ignored (may be None) for a video_only model, which hears silence
            decoder_input_ids  [B, L] long (if None: labels shifted right, as in HF Whisper)
            labels             [B, L] long, -100 = ignored
            video              [B, T_v, 88, 88] normalised frames ([B, T_v, video_dim] for "precomputed")
            video_padding_mask [B, T_v] bool, True = padding
            levels             [B] long (routing_use_level only)
            input_lengths      [B] long valid mel frames; only used to exclude padding from the router's
                               audio statistics (without it they include the batch padding)
            return_logits      False: the loss only (logits None), projecting only the labelled positions
        Returns:
            AVWhisperOutput (loss, logits [B, L, vocab], route_probs [B, 3], encoder_scale [B], decoder_scale [B], ...)
        """
        wcfg = self.whisper.config
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids or labels")
            decoder_input_ids = shift_tokens_right(labels, wcfg.pad_token_id, wcfg.decoder_start_token_id)
        fusion = self.prepare_fusion(input_features, video, video_padding_mask, levels, input_lengths)
        encoder_hidden = self.encoder_states(fusion)
        dec_kwargs = fusion.kwargs("decoder") if self.config.fuse_decoder else {}
        hidden, cache = self.decode(
            decoder_input_ids, encoder_hidden, dec_kwargs, decoder_attention_mask, use_cache=use_cache
        )
        # Without return_logits only the positions that carry a label are projected (padding is about 40 % of a
        # batch of isolated words); cross_entropy averages over exactly these positions either way.
        labels = None if labels is None else labels.to(hidden.device)
        keep = None if labels is None or return_logits else labels != -100
        logits = self.whisper.proj_out(hidden if keep is None else hidden[keep])  # [B, L, vocab] or [N, vocab]
        loss = rel_loss = None
        if labels is not None:
            target = labels if keep is None else labels[keep]
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                                   ignore_index=-100, label_smoothing=label_smoothing)
            if fusion.reliability_out is not None and fusion.draw is not None:
                agree = fusion.draw.agree
                rel_loss = agreement_loss(fusion.reliability_out.logit, agree)
                in_sync = sync_loss(fusion.reliability_out, torch.nan_to_num(agree, nan=0.0) == 1.0)
                if in_sync is not None:
                    rel_loss = in_sync if rel_loss is None else rel_loss + in_sync
                if rel_loss is not None:
                    loss = loss + self.config.reliability_loss_weight * rel_loss
        route = fusion.route
        return AVWhisperOutput(
            loss=loss,
            logits=logits if keep is None else None,
            route_probs=None if route is None else route.route_probs,
            route_logits=None if route is None else route.logits,
            encoder_scale=None if route is None else route.encoder_scale,
            decoder_scale=None if route is None else route.decoder_scale,
            video_reliability=fusion.video_reliability,
            reliability_loss=rel_loss,
            encoder_last_hidden_state=encoder_hidden,
            cache=cache,
        )

    # ------------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write config.json (AVWhisperConfig), whisper_config.json and model.safetensors."""
        from safetensors.torch import save_model

        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.config.to_json_file(path / CONFIG_NAME)
        self.whisper.config.to_json_file(path / WHISPER_CONFIG_NAME)
        save_model(self, str(path / WEIGHTS_NAME), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
        **kwargs,
    ) -> AVWhisperForConditionalGeneration:
        """Rebuild from a `save_pretrained` directory (safetensors only, no pickle), or a Hugging Face Hub id; also
        what Transformers' Auto classes call (their keyword arguments are read by `auto.resolve_folder`)."""
        from transformers.initialization import no_init_weights

        from .auto import resolve_folder
        from .folder_checks import REEXPORT, ModelFolderError, load_weights, read_json, whisper_config

        path, device, dtype = resolve_folder(directory, device, dtype, kwargs)
        try:
            config = AVWhisperConfig.from_dict(read_json(path / CONFIG_NAME))
        except (TypeError, ValueError) as e:  # a field out of range or of the wrong kind
            raise ModelFolderError(f"{path / CONFIG_NAME}: {e}; {REEXPORT}") from None
        w_config = whisper_config(path / WHISPER_CONFIG_NAME)
        with no_init_weights():  # every tensor is overwritten by the checkpoint below (strict)
            whisper = WhisperForConditionalGeneration(w_config)
            model = cls(config, whisper)
        whisper.tie_weights()  # skipped with the weight init above; proj_out shares embed_tokens again
        load_weights(model, path / WEIGHTS_NAME)
        if device is not None or dtype is not None:
            model.to(device=device, dtype=dtype)
        model.eval()
        return model
