"""Transformers' Auto classes load audio-visual Whisper folders once `av_fusion_models` is imported (no remote code).

    import av_fusion_models  # registers "av_whisper" with AutoConfig, AutoModel and AutoModelForSpeechSeq2Seq
    from transformers import AutoModelForSpeechSeq2Seq
    model = AutoModelForSpeechSeq2Seq.from_pretrained("path/or/hub-id")  # an AVWhisperForConditionalGeneration

An exported folder's config.json says ``"model_type": "av_whisper"``; `AVWhisperAutoConfig` is how Transformers reads
it (the AVWhisperConfig fields as attributes), and the model class is ours, loaded by our strict loader
(`AVWhisperForConditionalGeneration.from_pretrained`: every tensor present, none extra, each of its shape, or one
line naming the file). `resolve_folder` turns what the Auto classes pass (a folder or a Hub id, and their keyword
arguments) into a local folder: a Hub id is downloaded once into the Hugging Face cache (JSON, text and safetensors
files only: nothing that executes).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSpeechSeq2Seq, PreTrainedConfig

from .configuration import MODEL_TYPE, AVWhisperConfig

# what Transformers' Auto classes and their users pass to a model's from_pretrained, taken here
_HUB = ("cache_dir", "force_download", "local_files_only", "proxies", "token", "revision", "subfolder")
_IGNORED = ("config", "trust_remote_code", "adapter_kwargs", "code_revision", "_from_auto", "_commit_hash",
            "use_safetensors", "low_cpu_mem_usage", "attn_implementation")
_FOLDER_FILES = ["*.json", "*.txt", "*.md", "*.yaml", "*.safetensors"]


class AVWhisperAutoConfig(PreTrainedConfig):
    """config.json of an audio-visual Whisper folder as Transformers' AutoConfig reads it. The model itself is built
    from `to_av_config()` (the validated dataclass) and the folder's whisper_config.json."""

    model_type = MODEL_TYPE

    def to_av_config(self) -> AVWhisperConfig:
        names = AVWhisperConfig.__dataclass_fields__
        return AVWhisperConfig.from_dict({k: v for k, v in self.to_dict().items() if k in names})


def resolve_folder(name_or_path, device, dtype, kwargs: dict) -> tuple[Path, object, torch.dtype | None]:
    """(local folder, device, dtype) from what `from_pretrained` was given (see the module docstring)."""
    unknown = sorted(set(kwargs) - set(_HUB) - set(_IGNORED) - {"dtype", "torch_dtype", "device_map"})
    if unknown:
        raise TypeError(f"AVWhisperForConditionalGeneration.from_pretrained() got unsupported arguments {unknown}")
    dtype = dtype or kwargs.get("dtype") or kwargs.get("torch_dtype")
    if dtype == "auto":
        dtype = None  # the weights' own (float32 as exported)
    elif isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise TypeError(f"dtype {dtype!r} is not a torch dtype (e.g. 'float32', 'bfloat16', or 'auto')")
        dtype = getattr(torch, dtype)
    device_map = kwargs.get("device_map")
    if device is None and isinstance(device_map, (str, torch.device)) and device_map != "auto":
        device = device_map
    path = Path(name_or_path)
    if not path.is_dir():
        path = _download(str(name_or_path), {k: kwargs[k] for k in _HUB if k in kwargs and k != "subfolder"})
    if kwargs.get("subfolder"):
        path = path / kwargs["subfolder"]
    return path, device, dtype


def _download(repo_id: str, hub: dict) -> Path:
    if Path(repo_id).exists() or repo_id.count("/") != 1:
        raise FileNotFoundError(f"{repo_id}: no such model folder (give an exported folder, or a Hugging Face Hub "
                                "model id such as user/model)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=_FOLDER_FILES, **hub))
    except LocalEntryNotFoundError:
        raise FileNotFoundError(f"{repo_id}: not in the Hugging Face cache and the Hub cannot be reached (offline); "
                                "download it once with network, or give a local folder") from None
    except HfHubHTTPError as e:
        raise FileNotFoundError(f"{repo_id}: cannot be fetched from the Hugging Face Hub ({e})") from None


def register(model_class: type) -> None:
    """Make ``"av_whisper"`` folders loadable as ``model_class`` (AVWhisperForConditionalGeneration: the package's
    __init__ passes it) through AutoConfig, AutoModel and AutoModelForSpeechSeq2Seq."""
    model_class.config_class = AVWhisperAutoConfig  # (what the Auto classes check)
    AutoConfig.register(MODEL_TYPE, AVWhisperAutoConfig, exist_ok=True)
    AutoModel.register(AVWhisperAutoConfig, model_class, exist_ok=True)
    AutoModelForSpeechSeq2Seq.register(AVWhisperAutoConfig, model_class, exist_ok=True)
