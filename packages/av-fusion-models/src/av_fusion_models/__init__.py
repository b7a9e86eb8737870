"""Whisper-Flamingo style audio-visual fusion for Whisper (pure PyTorch + Hugging Face Transformers)."""

__version__ = "0.1.0"

from .auto import AVWhisperAutoConfig, register as _register_auto_classes
from .avhubert import (
    AVHubertConfig,
    AVHubertLoadReport,
    AVHubertVideoEncoder,
    load_avhubert_checkpoint,
    read_avhubert_state_dict,
)
from .configuration import AVHUBERT_SIZES, FUSION_LOCATIONS, VIDEO_ENCODERS, AVWhisperConfig
from .constrained import TokenTrie, word_target_text
from .features import (
    SILENCE_LOG_MEL,
    log_mel,
    log_mel_pad_value,
    mel_frames_for_video,
    num_log_mel_frames,
    pad_log_mel_batch,
    silence_log_mel,
)
from .freezing import (
    count_parameters,
    freeze_video_encoder,
    freeze_whisper,
    router_train_only,
    trainable_parameter_names,
    unfreeze_all,
    unfreeze_mlp_layers,
)
from .gated_xattn import GatedCrossAttentionBlock
from .inference import Recognition, rank_vocabulary, recognize, recognize_inputs
from .fused_layers import GatedXAttnDecoderLayer, GatedXAttnEncoderLayer
from .generation import EnsembleStep, ModelStep, beam_search, greedy_search
from .modeling_av_whisper import AVWhisperForConditionalGeneration, AVWhisperOutput
from .video_frontend import build_video_encoder, sinusoidal_positions
from .processing_av_whisper import AVWhisperProcessor, InputError, join_char_level
from .router import ROUTES, FusionRouter, RouterOutput, masked_mean_std
from .safe_checkpoint import OpaqueObject, UnsafeCheckpointError, load_untrusted_checkpoint
from .video_resnet import ResNetVideoEncoder
from .video_transforms import (
    VIDEO_MEAN,
    VIDEO_STD,
    center_crop,
    normalize_video,
    random_crop,
    random_horizontal_flip,
)

_register_auto_classes(AVWhisperForConditionalGeneration)  # AutoConfig / AutoModel / AutoModelForSpeechSeq2Seq load "av_whisper" folders (auto.py)

__all__ = [
    "__version__",
    "AVWhisperAutoConfig",
    "AVHUBERT_SIZES",
    "AVHubertConfig",
    "AVHubertLoadReport",
    "AVHubertVideoEncoder",
    "OpaqueObject",
    "TokenTrie",
    "UnsafeCheckpointError",
    "load_avhubert_checkpoint",
    "load_untrusted_checkpoint",
    "read_avhubert_state_dict",
    "word_target_text",
    "AVWhisperConfig",
    "AVWhisperForConditionalGeneration",
    "AVWhisperOutput",
    "AVWhisperProcessor",
    "InputError",
    "ModelStep",
    "Recognition",
    "join_char_level",
    "rank_vocabulary",
    "recognize",
    "recognize_inputs",
    "EnsembleStep",
    "FUSION_LOCATIONS",
    "FusionRouter",
    "GatedCrossAttentionBlock",
    "GatedXAttnDecoderLayer",
    "GatedXAttnEncoderLayer",
    "ROUTES",
    "ResNetVideoEncoder",
    "RouterOutput",
    "SILENCE_LOG_MEL",
    "VIDEO_ENCODERS",
    "VIDEO_MEAN",
    "VIDEO_STD",
    "beam_search",
    "build_video_encoder",
    "center_crop",
    "count_parameters",
    "freeze_video_encoder",
    "freeze_whisper",
    "greedy_search",
    "log_mel",
    "log_mel_pad_value",
    "masked_mean_std",
    "mel_frames_for_video",
    "normalize_video",
    "num_log_mel_frames",
    "pad_log_mel_batch",
    "random_crop",
    "random_horizontal_flip",
    "router_train_only",
    "silence_log_mel",
    "sinusoidal_positions",
    "trainable_parameter_names",
    "unfreeze_all",
    "unfreeze_mlp_layers",
]
