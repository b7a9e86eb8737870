"""Configuration of the audio-visual Whisper model (Whisper-Flamingo style gated cross-attention).

`AVWhisperConfig` only describes what is *added* to Whisper (video front-end, fusion blocks,
router, modality dropout). The Whisper configuration itself stays a `transformers.WhisperConfig`
and is saved next to it (see `AVWhisperForConditionalGeneration.save_pretrained`).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from os import PathLike
from typing import Any

FUSION_LOCATIONS = ("none", "encoder", "decoder", "both")
# "resnet": AV-HuBERT-shaped 3D-conv + ResNet-18 front-end trained from pixels.
# "precomputed": no video module; `video` is already a feature sequence [B, T_v, video_dim]
#                (e.g. AV-HuBERT features extracted offline).
# "avhubert":    pure-PyTorch port of AV-HuBERT's video path (ResNet front-end + transformer), loadable
#                from the official fairseq checkpoints (`avhubert_checkpoint`).
VIDEO_ENCODERS = ("resnet", "precomputed", "avhubert")
AVHUBERT_SIZES = ("base", "large", "tiny")
# what the video encoder sees of each clip (AVWhisperConfig.video_clip_norm)
VIDEO_CLIP_NORMS = ("none", "mean")
MODEL_TYPE = "av_whisper"


@dataclass
class AVWhisperConfig:
    """Everything the audio-visual wrapper adds on top of a Whisper checkpoint.

    Args:
        fusion_location: where gated cross-attention to video is inserted: `"none"` (audio-only
            Whisper, video ignored), `"encoder"` (before every encoder layer, audio frames attend to
            video), `"decoder"` (before every decoder layer's self-attention, text attends to video,
            as in Whisper-Flamingo) or `"both"`.
        video_encoder: video front-end, one of `VIDEO_ENCODERS`.
        resnet_width: base channel width `w` of the ResNet-18 trunk (stages w, 2w, 4w, 8w).
            64 is the standard (AV-HuBERT / lip-reading) size, 16 or less for CPU demos.
        resnet_relu_type: `"prelu"` (AV-HuBERT) or `"relu"`.
        video_dim: feature size of the video encoder output; derived (8 * resnet_width) when None.
            Required for `video_encoder="precomputed"`.
        video_fps: video frame rate. Used to place video frames on Whisper's 50 Hz encoder time
            axis for the sinusoidal video positions (frame t -> position t * 50 / video_fps).
        xattn_heads: heads of the gated cross-attention; defaults to Whisper's attention heads
            (encoder heads for encoder blocks, decoder heads for decoder blocks).
        xattn_ffn_mult: hidden size of the gated block's feed-forward = mult * d_model.
        xattn_dropout: dropout inside the gated block (attention probabilities and FFN output).
        xattn_gate_init: initial value g0 of every learned gate (the block adds tanh(g0) times its
            output). 0 (default) makes the fused model exactly Whisper at initialisation, but then the
            video path receives no gradient until the gates move; a small non-zero value (e.g. 0.1)
            lets a video encoder trained from scratch learn from the first step.
        video_only: lip reading. The model never listens: its audio input is always digital silence
            of the video's duration (`input_features` may be omitted), the same input a sample with
            dropped audio gets in audio-visual training, so a lip-reading checkpoint has exactly the
            audio-visual model's parameters and can initialise it. Needs video fusion.
        video_positional: add sinusoidal positions to the projected video features.
        video_clip_norm: what the video encoder sees of each clip. `"none"`: the normalised frames.
            `"mean"`: each frame minus the clip's mean frame over its valid frames, so the encoder sees
            what moves (lips, jaw) and not what stays (the speaker's face, skin, lighting, a fixed
            offset of the crop). Not applied to `"precomputed"` features.
        video_frame_size: side, in pixels, the frames are resized to (area averaging) before the video
            encoder; None keeps them as they come (88 x 88 lip ROIs). 44 costs the ResNet a quarter of
            its work per frame; whether the lips are still read is for the data to say
            (docs/LIP_READING.md). Not applied to `"precomputed"` features.
        soft_fusion_routing: learn a per-sample FusionRouter that scales the encoder / decoder
            fusion. Forces fusion blocks in both encoder and decoder (whatever `fusion_location`
            says, except `"none"`, which is an error).
        routing_hidden_dim, routing_dropout: router MLP size and dropout.
        routing_use_level: also feed an embedding of the speaker's severity level to the router.
        router_emits_gates: ablation of the routing design (docs/GATING_AND_ROUTING.md). When True the
            fusion blocks have no learned gates and the router's encoder / decoder scale IS the gate of
            every block on that side. The model is then no longer plain Whisper at initialisation.
            Needs `soft_fusion_routing`.
        num_levels, level_embed_dim: size of the router's severity-level embedding table.
        cut_encoder_positions: accept log-mel inputs shorter than 30 s (any even length up to
            2 * max_source_positions); the positional table is cut to the input length. When False,
            inputs must be exactly 3000 frames, as in Hugging Face's WhisperEncoder.
        video_dropout, audio_dropout: per-sample modality dropout probabilities (training mode
            only). A sample never loses both modalities.
        video_frozen_prob, video_mismatch_prob: per-sample lip-video faults in training mode only
            (modality_dropout.py): the clip's first frame held (a face that does not move), or the lips of
            another sample of the batch. Their audio is kept, so the model learns to fall back on it.
            The five probabilities (with `video_fault_prob`) are of exclusive outcomes: their sum must be <= 1.
        video_fault_prob: probability (training mode only) that a sample's lip video gets one fault drawn
            uniformly from `video_fault_classes` (video_faults.py: wrong lips, a still face, an offset of
            80-480 ms, the lower 30-80 % occluded, blur, 3-8x held frames, 30-100 % black), its audio kept.
        video_fault_classes: the classes `video_fault_prob` draws from (None: all of `TRAINING_FAULTS`).
        video_reliability: an `AVReliabilityScorer` (reliability.py) scores per clip whether the lips agree with
            the sound; its r in (0, 1) multiplies every fused block's output, so wrong or useless lips are
            switched off and the model falls back on the audio.
        reliability_hidden_dim: width of the scorer.
        reliability_loss_weight: weight of the scorer's agreement loss (binary cross-entropy against the fault
            labels) added to the recognition loss in training.
        reliability_content_negatives: train the scorer on what the lips say, not only when: the faults' wrong lips
            are stretched to the clip's length (their timing then agrees) and the other clips' lips at lag 0 are
            negatives of its contrastive loss (docs/GATING_AND_ROUTING.md 6, point 4).
        reliability_cutoff: at inference, a clip whose r is below this value gets r = 0 (the audio alone,
            exactly); 0 keeps r as it is.
        reliability_audio_margin: at inference, the audio check (audio_check.py): the words are decoded with the
            lips and from the audio alone, and where the audio alone prefers its own word to the lips' by more than
            this many nats (summed log-probability), the lips are overruled: the audio's word is kept and the clip
            is reported with reliability 0. 0 turns the check off. A model without `video_reliability` then
            reports 1 for the clips whose lips were used, 0 for the overruled ones.
        avhubert_size: `"base"` (768-d, 12 layers), `"large"` (1024-d, 24 layers) or `"tiny"`
            (random-init test size) for `video_encoder="avhubert"`.
        avhubert_checkpoint: path of an official AV-HuBERT fairseq checkpoint (self-supervised or
            fine-tuned); loaded (safely, no code executed) by `AVWhisperForConditionalGeneration.from_whisper`,
            not by `from_pretrained` (whose safetensors already hold the weights).
        avhubert_layers: keep only the first n AV-HuBERT transformer layers (None: all).
    """

    fusion_location: str = "decoder"
    video_encoder: str = "resnet"
    resnet_width: int = 64
    resnet_relu_type: str = "prelu"
    video_dim: int | None = None
    video_fps: float = 25.0
    xattn_heads: int | None = None
    xattn_ffn_mult: int = 4
    xattn_dropout: float = 0.0
    xattn_gate_init: float = 0.0
    video_only: bool = False
    video_positional: bool = True
    video_clip_norm: str = "none"
    video_frame_size: int | None = None
    soft_fusion_routing: bool = False
    routing_hidden_dim: int = 256
    routing_dropout: float = 0.1
    routing_use_level: bool = False
    router_emits_gates: bool = False
    num_levels: int = 4
    level_embed_dim: int = 16
    cut_encoder_positions: bool = True
    video_dropout: float = 0.0
    audio_dropout: float = 0.0
    video_frozen_prob: float = 0.0
    video_mismatch_prob: float = 0.0
    video_fault_prob: float = 0.0
    video_fault_classes: list[str] | None = None
    video_reliability: bool = False
    reliability_hidden_dim: int = 128
    reliability_loss_weight: float = 1.0
    reliability_cutoff: float = 0.0
    reliability_content_negatives: bool = False
    reliability_audio_margin: float = 0.0
    avhubert_size: str = "base"
    avhubert_checkpoint: str | None = None
    avhubert_layers: int | None = None

    def __post_init__(self) -> None:
        if self.fusion_location not in FUSION_LOCATIONS:
            raise ValueError(f"fusion_location must be one of {FUSION_LOCATIONS}, got {self.fusion_location!r}")
        if self.avhubert_size not in AVHUBERT_SIZES:
            raise ValueError(f"avhubert_size must be one of {AVHUBERT_SIZES}, got {self.avhubert_size!r}")
        if self.avhubert_layers is not None and self.avhubert_layers < 0:
            raise ValueError("avhubert_layers must be >= 0 (or None for all layers)")
        if self.video_encoder == "avhubert" and self.video_dim is not None and self.video_dim != self._avhubert_dim():
            raise ValueError(
                f"video_dim={self.video_dim} does not match AV-HuBERT {self.avhubert_size}'s output size "
                f"{self._avhubert_dim()}; leave video_dim=None"
            )
        if self.video_encoder not in VIDEO_ENCODERS:
            raise ValueError(f"video_encoder must be one of {VIDEO_ENCODERS}, got {self.video_encoder!r}")
        if self.video_clip_norm not in VIDEO_CLIP_NORMS:
            raise ValueError(f"video_clip_norm must be one of {VIDEO_CLIP_NORMS}, got {self.video_clip_norm!r}")
        if self.video_frame_size is not None and self.video_frame_size < 8:
            raise ValueError(f"video_frame_size must be >= 8 pixels (or None to keep the frames), got {self.video_frame_size}")
        if self.resnet_relu_type not in ("prelu", "relu"):
            raise ValueError(f"resnet_relu_type must be 'prelu' or 'relu', got {self.resnet_relu_type!r}")
        if self.resnet_width < 1:
            raise ValueError("resnet_width must be >= 1")
        if self.video_encoder == "resnet" and self.video_dim is not None and self.video_dim != 8 * self.resnet_width:
            raise ValueError(
                f"video_dim={self.video_dim} does not match the ResNet output size 8 * resnet_width = "
                f"{8 * self.resnet_width}; leave video_dim=None"
            )
        if self.video_encoder == "precomputed" and self.video_dim is None and self.fusion_location != "none":
            raise ValueError("video_encoder='precomputed' needs an explicit video_dim")
        if self.video_only and self.fusion_location == "none":
            raise ValueError("video_only (lip reading) needs video fusion; fusion_location='none' contradicts it")
        if self.router_emits_gates and not self.soft_fusion_routing:
            raise ValueError("router_emits_gates needs soft_fusion_routing=True (the router supplies the gates)")
        if self.soft_fusion_routing and self.fusion_location == "none":
            raise ValueError("soft_fusion_routing needs video fusion; fusion_location='none' contradicts it")
        for name in ("video_dropout", "audio_dropout", "video_frozen_prob", "video_mismatch_prob", "video_fault_prob",
                     "xattn_dropout", "routing_dropout", "reliability_cutoff"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if sum(self.modality_probs) > 1.0 + 1e-9:
            raise ValueError("video_dropout + audio_dropout + video_frozen_prob + video_mismatch_prob + video_fault_prob "
                             "must be <= 1 (exclusive outcomes per sample: a sample never loses both modalities)")
        if self.video_fault_classes is not None:
            from .video_faults import TRAINING_FAULTS

            self.video_fault_classes = list(self.video_fault_classes)
            bad = [c for c in self.video_fault_classes if c not in TRAINING_FAULTS]
            if bad or not self.video_fault_classes:
                raise ValueError(f"video_fault_classes must be a non-empty list of {list(TRAINING_FAULTS)}, got "
                                 f"{self.video_fault_classes}")
        if self.video_fault_prob > 0 and self.video_encoder == "precomputed":
            raise ValueError("video_fault_prob needs lip frames: precomputed video features cannot be occluded, "
                             "blurred or blacked out; set video_fault_prob: 0 or use a pixel video encoder")
        if self.video_reliability and (self.video_only or not self.uses_video):
            raise ValueError("video_reliability needs audio and video: it scores whether the lips agree with the sound")
        if self.reliability_audio_margin < 0 or self.reliability_audio_margin != self.reliability_audio_margin:
            raise ValueError(f"reliability_audio_margin must be >= 0 nats (0: off), got {self.reliability_audio_margin}")
        if self.reliability_audio_margin > 0 and (self.video_only or not self.uses_video):
            raise ValueError("reliability_audio_margin needs audio and video: the audio checks the lips' word")
        if self.reliability_hidden_dim < 1 or self.reliability_loss_weight < 0:
            raise ValueError("reliability_hidden_dim must be >= 1 and reliability_loss_weight >= 0")
        if self.xattn_ffn_mult < 1:
            raise ValueError("xattn_ffn_mult must be >= 1")
        if self.num_levels < 1 or self.level_embed_dim < 1:
            raise ValueError("num_levels and level_embed_dim must be >= 1")

    # ------------------------------------------------------------------ derived
    @property
    def modality_probs(self) -> tuple[float, float, float, float, float]:
        """The per-sample probabilities of the exclusive training outcomes (modality_dropout.py), in draw order."""
        return (self.video_dropout, self.audio_dropout, self.video_frozen_prob, self.video_mismatch_prob,
                self.video_fault_prob)

    @property
    def uses_video(self) -> bool:
        return self.fusion_location != "none"

    @property
    def fuse_encoder(self) -> bool:
        """Gated cross-attention blocks are inserted before the encoder layers."""
        return self.fusion_location in ("encoder", "both") or (self.soft_fusion_routing and self.uses_video)

    @property
    def fuse_decoder(self) -> bool:
        """Gated cross-attention blocks are inserted before the decoder layers."""
        return self.fusion_location in ("decoder", "both") or (self.soft_fusion_routing and self.uses_video)

    @property
    def resolved_video_dim(self) -> int:
        if self.video_dim is not None:
            return self.video_dim
        if self.video_encoder == "resnet":
            return 8 * self.resnet_width
        if self.video_encoder == "avhubert":
            return self._avhubert_dim()
        raise ValueError("video_dim is unknown for this video encoder")

    def avhubert_config(self):
        """The `AVHubertConfig` of the AV-HuBERT video encoder this config describes."""
        from .avhubert import AVHubertConfig

        overrides = {} if self.avhubert_layers is None else {"layers": self.avhubert_layers}
        return AVHubertConfig.preset(self.avhubert_size, **overrides)

    def _avhubert_dim(self) -> int:
        return {"base": 768, "large": 1024, "tiny": 64}[self.avhubert_size]

    # ------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model_type"] = MODEL_TYPE
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AVWhisperConfig:
        data = dict(data)
        model_type = data.pop("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(f"not an {MODEL_TYPE} config (model_type={model_type!r})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            warnings.warn(f"AVWhisperConfig: ignoring unknown keys {unknown}", stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | PathLike) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_json_string())

    @classmethod
    def from_json_file(cls, path: str | PathLike) -> AVWhisperConfig:
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))
